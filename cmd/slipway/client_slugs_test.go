package main

import (
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
)

func TestSlugsCommands(t *testing.T) {
	f := newFakeAPI(t)
	size := int64(3 << 20)
	commit := "60883d9e8947a57e04dc9124f25df004866a2051"
	sum := "SHA256:" + strings.Repeat("ab", 32)
	at := time.Unix(t0Unix, 0).UTC()
	up := api.Slug{ID: "s-uploaded", Size: &size, Commit: &commit, Checksum: &sum, CreatedAt: at, Stack: api.Ref{Name: "host"},
		ProcessTypes: map[string]string{"web": "./server", "worker": "./work"}, Blob: api.SlugBlob{Method: "get", URL: "http://n1/slugs/s-uploaded/blob?sig"}}
	pending := api.Slug{ID: "s-pending", CreatedAt: at.Add(time.Minute), ProcessTypes: map[string]string{"web": "x"},
		Blob: api.SlugBlob{Method: "put", URL: "http://n1/slugs/s-pending/blob?sig"}}
	f.handle("GET /apps/{app}/slugs", 200, []api.Slug{pending, up})
	f.handle("GET /apps/{app}/slugs/{id}", 200, up)

	r := run(t, envFor(f), "", "slugs", "-a", "demo")
	mustSucceed(t, r)
	for _, want := range []string{"=== ⬢demo Slugs", "s-pending   not uploaded", "s-uploaded  3.0 MB", "60883d9", "web, worker", "2026/01/02 03:04:05 +0000"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("slugs output lacks %q:\n%s", want, r.stdout)
		}
	}
	if got := f.find(t, "GET", "/apps/demo/slugs").Header.Get("Range"); got != "created_at ..; max=15, order=desc" {
		t.Errorf("Range = %q", got)
	}

	r = run(t, envFor(f), "", "slugs:info", "s-uploaded", "-a", "demo")
	mustSucceed(t, r)
	for _, want := range []string{"=== Slug s-uploaded", "Blob:", "GET http://n1/slugs/s-uploaded/blob?sig", "Checksum:", sum, "Commit:             " + commit,
		"Process Types:      web: ./server\n                    worker: ./work", "Size:               3.0 MB", "Stack:              host"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("slugs:info output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := run(t, envFor(f), "", "slugs", "-n", "0", "-a", "demo"); r.err == nil {
		t.Error("-n 0 accepted")
	}
}
