package api

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/slipwayhq/slipway/fsm"
)

// SNIEndpoint is Heroku's sni-endpoint resource: a certificate and key the
// routers serve, chosen by SNI, for the domains it covers.
type SNIEndpoint struct {
	App              Ref       `json:"app"`
	CertificateChain string    `json:"certificate_chain"`
	CreatedAt        time.Time `json:"created_at"`
	DisplayName      *string   `json:"display_name"`
	// Domains are the ids of the app's domains the certificate covers.
	Domains   []string  `json:"domains"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	SSLCert   SSLCert   `json:"ssl_cert"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SSLCert describes an SNI endpoint's certificate.
type SSLCert struct {
	CASigned    bool      `json:"ca_signed?"`
	CertDomains []string  `json:"cert_domains"`
	ExpiresAt   time.Time `json:"expires_at"`
	ID          string    `json:"id"`
	Issuer      string    `json:"issuer"`
	SelfSigned  bool      `json:"self_signed?"`
	StartsAt    time.Time `json:"starts_at"`
	Subject     string    `json:"subject"`
}

// SNIEndpointRequest is POST and PATCH /apps/{app}/sni-endpoints.
type SNIEndpointRequest struct {
	CertificateChain string `json:"certificate_chain"`
	PrivateKey       string `json:"private_key"`
}

// maxPEM bounds a certificate chain or key.
const maxPEM = 64 << 10

// parsedCertificate is a validated certificate chain and key.
type parsedCertificate struct {
	chain, key string
	leaf       *x509.Certificate
	hostnames  []string
}

// parseCertificate checks an uploaded certificate chain and key: valid
// PEM, a key that matches the leaf certificate, not expired, with DNS
// names. Each failure says what is wrong.
func parseCertificate(chainPEM, keyPEM string, now time.Time) (*parsedCertificate, error) {
	chainPEM, keyPEM = strings.TrimSpace(chainPEM), strings.TrimSpace(keyPEM)
	switch {
	case chainPEM == "":
		return nil, invalidParams("certificate_chain can't be blank.")
	case keyPEM == "":
		return nil, invalidParams("private_key can't be blank.")
	case len(chainPEM) > maxPEM || len(keyPEM) > maxPEM:
		return nil, invalidParams("certificate_chain and private_key must each be under %d bytes.", maxPEM)
	}
	var certs []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, invalidParams("certificate_chain must hold only CERTIFICATE PEM blocks, not %s.", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, invalidParams("certificate_chain holds an invalid certificate: %v.", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, invalidParams("certificate_chain is not a PEM-encoded certificate (-----BEGIN CERTIFICATE-----).")
	}
	kb, _ := pem.Decode([]byte(keyPEM))
	if kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") {
		return nil, invalidParams("private_key is not a PEM-encoded private key (-----BEGIN PRIVATE KEY-----).")
	}
	if _, err := tls.X509KeyPair([]byte(chainPEM), []byte(keyPEM)); err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, invalidParams("private_key does not match the certificate.")
		}
		return nil, invalidParams("private_key cannot be used with this certificate: %v.", err)
	}
	leaf := certs[0]
	if now.After(leaf.NotAfter) {
		return nil, invalidParams("The certificate expired on %s.", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Add(time.Hour).Before(leaf.NotBefore) {
		return nil, invalidParams("The certificate is not valid before %s.", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	seen := map[string]bool{}
	var hosts []string
	for _, n := range leaf.DNSNames {
		h := fsm.NormalizeHostname(n)
		if seen[h] || fsm.ValidHostname(h) != nil {
			continue
		}
		seen[h] = true
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, invalidParams("The certificate names no domains (it needs DNS names in its subjectAltName).")
	}
	sort.Strings(hosts)
	return &parsedCertificate{chain: chainPEM + "\n", key: keyPEM + "\n", leaf: leaf, hostnames: hosts}, nil
}

// sniNames are the words SNI endpoint names are made of (Heroku names
// them like tokyo-1050).
var sniNames = [...]string{"tokyo", "kyoto", "osaka", "nagoya", "sapporo", "kobe", "yokohama", "fukuoka", "sendai", "nara", "kanazawa", "hakodate"}

func newSNIName() string {
	return fmt.Sprintf("%s-%d", sniNames[rand.IntN(len(sniNames))], 1000+rand.IntN(99000))
}

func (s *Server) sniEndpointList(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	certs := snap.Certs(a.ID)
	items := make([]pageItem, len(certs))
	for i, c := range certs {
		items[i] = pageItem{keys: map[string]string{"id": c.ID, "name": c.Name}, v: s.renderSNIEndpoint(snap, a, c)}
	}
	return writePage(w, r, items, "id", "name")
}

func (s *Server) sniEndpointInfo(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	c, ok := snap.Cert(a.ID, mux.Vars(r)["sni"])
	if !ok {
		return notFound("SNI endpoint")
	}
	writeJSON(w, http.StatusOK, s.renderSNIEndpoint(snap, a, c))
	return nil
}

func (s *Server) sniEndpointCreate(w http.ResponseWriter, r *http.Request) error {
	_, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	var req SNIEndpointRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	pc, err := parseCertificate(req.CertificateChain, req.PrivateKey, s.opts.Now())
	if err != nil {
		return err
	}
	ct := fsm.Cert{ID: uuid.NewString(), AppID: a.ID, Name: newSNIName(), ChainPEM: pc.chain, KeyPEM: pc.key,
		Hostnames: pc.hostnames, NotAfter: pc.leaf.NotAfter}
	return s.putCert(w, r, a, ct, http.StatusCreated)
}

func (s *Server) sniEndpointUpdate(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	old, ok := snap.Cert(a.ID, mux.Vars(r)["sni"])
	if !ok {
		return notFound("SNI endpoint")
	}
	var req SNIEndpointRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	pc, err := parseCertificate(req.CertificateChain, req.PrivateKey, s.opts.Now())
	if err != nil {
		return err
	}
	ct := fsm.Cert{ID: old.ID, AppID: a.ID, Name: old.Name, ChainPEM: pc.chain, KeyPEM: pc.key,
		Hostnames: pc.hostnames, NotAfter: pc.leaf.NotAfter}
	return s.putCert(w, r, a, ct, http.StatusOK)
}

func (s *Server) putCert(w http.ResponseWriter, r *http.Request, a *fsm.App, ct fsm.Cert, status int) error {
	res, err := s.submit(r, fsm.CmdCertPut, fsm.CertPut{Cert: ct})
	if err != nil {
		return err
	}
	var out fsm.Cert
	if err := res.Decode(&out); err != nil {
		return err
	}
	writeJSON(w, status, s.renderSNIEndpoint(s.b.Snap(), a, &out))
	return nil
}

func (s *Server) sniEndpointDelete(w http.ResponseWriter, r *http.Request) error {
	snap, a, err := s.lookupApp(r)
	if err != nil {
		return err
	}
	c, ok := snap.Cert(a.ID, mux.Vars(r)["sni"])
	if !ok {
		return notFound("SNI endpoint")
	}
	if _, err := s.submit(r, fsm.CmdCertDelete, fsm.CertDelete{AppID: a.ID, CertID: c.ID}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderSNIEndpoint(snap, a, c))
	return nil
}

func (s *Server) renderSNIEndpoint(snap *fsm.Snap, a *fsm.App, c *fsm.Cert) SNIEndpoint {
	out := SNIEndpoint{App: Ref{ID: a.ID, Name: a.Name}, CertificateChain: c.ChainPEM, CreatedAt: c.CreatedAt, ID: c.ID,
		Name: c.Name, UpdatedAt: c.UpdatedAt, Domains: []string{},
		SSLCert: SSLCert{ID: c.ID, CertDomains: append([]string{}, c.Hostnames...), ExpiresAt: c.NotAfter}}
	for _, d := range snap.Domains(a.ID) {
		if certCovers(c.Hostnames, d.Hostname) {
			out.Domains = append(out.Domains, d.ID)
		}
	}
	if chain, err := parseChain(c.ChainPEM); err == nil && len(chain) > 0 {
		leaf := chain[0]
		out.SSLCert.Issuer, out.SSLCert.Subject = dn(leaf.Issuer), dn(leaf.Subject)
		out.SSLCert.StartsAt, out.SSLCert.ExpiresAt = leaf.NotBefore, leaf.NotAfter
		out.SSLCert.SelfSigned = bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
			leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
		inter := x509.NewCertPool()
		for _, ic := range chain[1:] {
			inter.AddCert(ic)
		}
		_, verr := leaf.Verify(x509.VerifyOptions{Intermediates: inter, CurrentTime: s.opts.Now()})
		out.SSLCert.CASigned = verr == nil
	}
	return out
}

func parseChain(p string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(p)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

// certCovers reports whether a certificate for names serves host (a
// wildcard covers one label).
func certCovers(names []string, host string) bool {
	host = fsm.NormalizeHostname(host)
	for _, n := range names {
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == rest && !strings.HasPrefix(host, "*.") {
				return true
			}
		}
	}
	return false
}

// dn prints a distinguished name the way Heroku does: /C=US/O=Org/CN=name.
func dn(n pkix.Name) string {
	var b strings.Builder
	add := func(k string, vs ...string) {
		for _, v := range vs {
			b.WriteString("/" + k + "=" + v)
		}
	}
	add("C", n.Country...)
	add("ST", n.Province...)
	add("L", n.Locality...)
	add("O", n.Organization...)
	add("OU", n.OrganizationalUnit...)
	if n.CommonName != "" {
		add("CN", n.CommonName)
	}
	return b.String()
}
