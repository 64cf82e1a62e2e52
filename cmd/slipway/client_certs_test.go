package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
)

func TestCerts(t *testing.T) {
	f := newFakeAPI(t)
	ep := api.SNIEndpoint{Name: "tokyo-1050", Domains: []string{"d1"},
		SSLCert: api.SSLCert{CertDomains: []string{"www.example.com"}, SelfSigned: true, ExpiresAt: time.Unix(t0Unix, 0), Subject: "/CN=www.example.com"}}
	f.handle("GET /apps/{app}/sni-endpoints", 200, []api.SNIEndpoint{ep})
	f.handle("POST /apps/{app}/sni-endpoints", 201, ep)
	f.handle("DELETE /apps/{app}/sni-endpoints/{sni}", 200, ep)

	r := run(t, envFor(f), "", "certs", "-a", "demo")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "tokyo-1050") || !strings.Contains(r.stdout, "www.example.com") || !strings.Contains(r.stdout, "False (self-signed)") {
		t.Errorf("certs output:\n%s", r.stdout)
	}

	dir := t.TempDir()
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	os.WriteFile(crt, []byte("CERT PEM"), 0o600)
	os.WriteFile(key, []byte("KEY PEM"), 0o600)
	r = run(t, envFor(f), "", "certs:add", crt, key, "-a", "demo")
	mustSucceed(t, r)
	var body api.SNIEndpointRequest
	if err := json.Unmarshal([]byte(f.find(t, "POST", "/apps/demo/sni-endpoints").Body), &body); err != nil ||
		body.CertificateChain != "CERT PEM" || body.PrivateKey != "KEY PEM" {
		t.Fatalf("upload body %+v %v", body, err)
	}
	if r.stderr != "Adding SSL certificate to ⬢demo... done\n" || !strings.Contains(r.stdout, "tokyo-1050") {
		t.Errorf("certs:add printed %q / %q", r.stderr, r.stdout)
	}
	if r := run(t, envFor(f), "", "certs:add", filepath.Join(dir, "missing"), key, "-a", "demo"); r.err == nil {
		t.Error("certs:add with a missing file succeeded")
	}

	// The only certificate is removed without naming it.
	r = run(t, envFor(f), "", "certs:remove", "-a", "demo")
	mustSucceed(t, r)
	f.find(t, "DELETE", "/apps/demo/sni-endpoints/tokyo-1050")
	if r.stderr != "Removing SSL certificate tokyo-1050 from ⬢demo... done\n" {
		t.Errorf("certs:remove printed %q", r.stderr)
	}
}
