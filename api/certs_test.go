package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// makeCert returns a self-signed certificate and key (PEM) for names.
func makeCert(t *testing.T, notBefore, notAfter time.Time, names ...string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "test", Organization: []string{"Slipway"}},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: names}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

func certBody(chain, key string) string {
	b, _ := json.Marshal(SNIEndpointRequest{CertificateChain: chain, PrivateKey: key})
	return string(b)
}

func TestSNIEndpoints(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	e.must(201, "POST", "/apps/demo/domains", `{"hostname":"www.example.com","sni_endpoint":null}`)
	e.must(201, "POST", "/apps/demo/domains", `{"hostname":"api.example.org","sni_endpoint":null}`)
	var none []SNIEndpoint
	if e.must(200, "GET", "/apps/demo/sni-endpoints", "").json(&none); len(none) != 0 {
		t.Fatalf("endpoints = %+v", none)
	}
	now := time.Now()
	chain, key := makeCert(t, now.Add(-time.Hour), now.Add(48*time.Hour), "www.example.com", "*.Example.org")
	var ep SNIEndpoint
	e.must(201, "POST", "/apps/demo/sni-endpoints", certBody(chain, key)).json(&ep)
	if ep.Name == "" || ep.App.Name != "demo" || len(ep.Domains) != 2 || !ep.SSLCert.SelfSigned || ep.SSLCert.CASigned ||
		strings.Join(ep.SSLCert.CertDomains, ",") != "*.example.org,www.example.com" || ep.SSLCert.Subject != "/O=Slipway/CN=test" {
		t.Fatalf("endpoint = %+v", ep)
	}
	stored, ok := e.b.f.Snap().Cert(ep.App.ID, ep.Name)
	if !ok || stored.KeyPEM == "" || len(stored.Hostnames) != 2 {
		t.Fatalf("stored cert %+v", stored)
	}
	var list []SNIEndpoint
	if e.must(200, "GET", "/apps/demo/sni-endpoints", "").json(&list); len(list) != 1 || list[0].ID != ep.ID {
		t.Fatalf("list = %+v", list)
	}
	e.must(200, "GET", "/apps/demo/sni-endpoints/"+ep.Name, "")
	e.must(200, "GET", "/apps/demo/sni-endpoints/"+ep.ID, "")
	// heroku domains:add names the endpoint when the app has one.
	e.must(201, "POST", "/apps/demo/domains", `{"hostname":"shop.example.org","sni_endpoint":"`+ep.Name+`"}`)
	e.errID(404, "not_found", "POST", "/apps/demo/domains", `{"hostname":"x.example.org","sni_endpoint":"nope"}`)
	// Domains name the endpoint that covers them (exactly or by wildcard);
	// the default domain has none.
	var doms []Domain
	e.must(200, "GET", "/apps/demo/domains", "").json(&doms)
	for _, d := range doms {
		covered := d.Hostname != "demo.localhost"
		if covered != (d.SNIEndpoint != nil) || (covered && (d.SNIEndpoint.ID != ep.ID || d.SNIEndpoint.Name != ep.Name)) {
			t.Fatalf("domain %s: sni_endpoint %+v", d.Hostname, d.SNIEndpoint)
		}
	}

	// Update replaces the certificate, keeping the name.
	chain2, key2 := makeCert(t, now.Add(-time.Hour), now.Add(96*time.Hour), "www.example.com")
	var up SNIEndpoint
	e.must(200, "PATCH", "/apps/demo/sni-endpoints/"+ep.Name, certBody(chain2, key2)).json(&up)
	if up.ID != ep.ID || up.Name != ep.Name || len(up.SSLCert.CertDomains) != 1 || !up.SSLCert.ExpiresAt.After(ep.SSLCert.ExpiresAt) {
		t.Fatalf("updated = %+v", up)
	}
	e.must(200, "DELETE", "/apps/demo/sni-endpoints/"+ep.Name, "")
	e.errID(404, "not_found", "GET", "/apps/demo/sni-endpoints/"+ep.Name, "")
	e.errID(404, "not_found", "DELETE", "/apps/demo/sni-endpoints/"+ep.Name, "")
}

func TestSNIEndpointRejectsBadCertificates(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	now := time.Now()
	chain, key := makeCert(t, now.Add(-time.Hour), now.Add(time.Hour), "www.example.com")
	_, otherKey := makeCert(t, now.Add(-time.Hour), now.Add(time.Hour), "www.example.com")
	expired, expiredKey := makeCert(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "www.example.com")
	noNames, noNamesKey := makeCert(t, now.Add(-time.Hour), now.Add(time.Hour))
	before := e.state() + strings.Repeat("", 0)
	for _, tc := range []struct{ body, want string }{
		{certBody("", key), "certificate_chain can't be blank"},
		{certBody(chain, ""), "private_key can't be blank"},
		{certBody("not a cert", key), "not a PEM-encoded certificate"},
		{certBody(key, key), "only CERTIFICATE PEM blocks"},
		{certBody(chain, "junk"), "private_key is not a PEM-encoded private key"},
		{certBody(chain, otherKey), "private_key does not match the certificate"},
		{certBody(expired, expiredKey), "The certificate expired on"},
		{certBody(noNames, noNamesKey), "names no domains"},
		{certBody("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", key), "invalid certificate"},
	} {
		er := e.errID(422, "invalid_params", "POST", "/apps/demo/sni-endpoints", tc.body)
		if !strings.Contains(er.Message, tc.want) {
			t.Errorf("message %q, want %q", er.Message, tc.want)
		}
	}
	e.errID(400, "bad_request", "POST", "/apps/demo/sni-endpoints", `{"certificate_chain":1}`)
	e.errID(404, "not_found", "POST", "/apps/nope/sni-endpoints", certBody(chain, key))
	if len(e.b.f.Snap().AllCerts()) != 0 || e.state() != before {
		t.Fatal("a rejected certificate changed the state")
	}
}
