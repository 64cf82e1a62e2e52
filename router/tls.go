package router

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// certTable maps SNI names to certificates.
type certTable struct {
	exact map[string]*tls.Certificate
	// wild maps "example.com" to the certificate for "*.example.com".
	wild map[string]*tls.Certificate
}

// parsedCert caches a stored certificate's parsed form.
type parsedCert struct {
	updated time.Time
	cert    *tls.Certificate
}

// buildCerts parses the stored certificates (reusing earlier parses) into
// a lookup table. When several certificates cover a name, the most
// recently updated wins. Certificates that fail to parse are skipped (the
// API checks them before storing).
func (reg *registry) buildCerts(certs []*fsm.Cert) *certTable {
	ct := &certTable{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	sorted := append([]*fsm.Cert(nil), certs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].UpdatedAt.Before(sorted[j].UpdatedAt) })
	seen := map[string]bool{}
	for _, c := range sorted {
		seen[c.ID] = true
		pc := reg.certs[c.ID]
		if pc == nil || !pc.updated.Equal(c.UpdatedAt) {
			pc = &parsedCert{updated: c.UpdatedAt}
			if kp, err := tls.X509KeyPair([]byte(c.ChainPEM), []byte(c.KeyPEM)); err == nil {
				pc.cert = &kp
			}
			reg.certs[c.ID] = pc
		}
		if pc.cert == nil {
			continue
		}
		for _, h := range c.Hostnames {
			h = fsm.NormalizeHostname(h)
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				ct.wild[rest] = pc.cert
			} else {
				ct.exact[h] = pc.cert
			}
		}
	}
	for id := range reg.certs {
		if !seen[id] {
			delete(reg.certs, id)
		}
	}
	return ct
}

// lookup finds the certificate for an SNI name: exact, then a wildcard
// one label up (a TLS wildcard covers one label).
func (ct *certTable) lookup(name string) *tls.Certificate {
	if ct == nil {
		return nil
	}
	h, ok := normalizeHost(name)
	if !ok {
		return nil
	}
	if c := ct.exact[h]; c != nil {
		return c
	}
	if i := strings.IndexByte(h, '.'); i >= 0 {
		return ct.wild[h[i+1:]]
	}
	return nil
}

// getCertificate is the TLS listener's certificate callback: the app's
// certificate for the SNI name, else the router's default.
func (rt *Router) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if t := rt.table.Load(); t != nil && hello.ServerName != "" {
		if c := t.certs.lookup(hello.ServerName); c != nil {
			return c, nil
		}
	}
	return rt.defaultCert, nil
}

// SelfSigned makes a self-signed ECDSA certificate for the cluster
// domain and its wildcard (the router's default certificate).
func SelfSigned(domain string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the default certificate's key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "*." + domain, Organization: []string{"Slipway router (self-signed)"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{domain, "*." + domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the default certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the default certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
