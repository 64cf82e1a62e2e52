package api

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/blob"
	"github.com/slipwayhq/slipway/fsm"
)

type slugEnv struct {
	*env
	mem *blob.Memory
	now time.Time
}

func newSlugEnv(t *testing.T, maxBytes int64) *slugEnv {
	e := newEnv(t)
	se := &slugEnv{env: e, mem: blob.NewMemory(), now: time.Now()}
	e.srv = New(e.b, Options{Domain: "localhost", APIURL: "http://127.0.0.1:5000", RouterURL: "http://127.0.0.1:5005",
		Blobs: se.mem, BlobURLKey: []byte("test key"), MaxSlugBytes: maxBytes, Now: func() time.Time { return se.now }})
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	return se
}

// raw sends a request without token or Accept header (what curl does with
// a blob URL).
func (e *slugEnv) raw(method, rawURL string, body []byte) resp {
	u, err := url.Parse(rawURL)
	if err != nil {
		e.t.Fatal(err)
	}
	req := httptest.NewRequest(method, u.RequestURI(), bytes.NewReader(body))
	req.Host = u.Host
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	b, _ := io.ReadAll(w.Result().Body)
	return resp{status: w.Code, hdr: w.Header(), body: b}
}

type tarEntry struct {
	name string
	typ  byte
	link string
	body string
}

func makeTgz(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, en := range entries {
		h := &tar.Header{Name: en.name, Typeflag: en.typ, Linkname: en.link, Mode: 0o755}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(en.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, en.body)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "SHA256:" + hex.EncodeToString(s[:])
}

func (e *slugEnv) createSlug(body string) Slug {
	e.t.Helper()
	var sl Slug
	if err := e.must(201, "POST", "/apps/demo/slugs", body).json(&sl); err != nil {
		e.t.Fatal(err)
	}
	return sl
}

func (e *slugEnv) slugState(id string) *fsm.Slug {
	sl, ok := e.b.f.Snap().Slug(id)
	if !ok {
		e.t.Fatalf("no slug %s", id)
	}
	return sl
}

func TestSlugCreateAndUpload(t *testing.T) {
	e := newSlugEnv(t, 0)
	tgz := makeTgz(t, tarEntry{name: "./app/", typ: tar.TypeDir}, tarEntry{name: "./app/server", body: "#!/bin/sh\n"},
		tarEntry{name: "./app/bin", typ: tar.TypeSymlink, link: "/app"})
	sl := e.createSlug(fmt.Sprintf(`{"process_types":{"web":"./server","worker":"./server work"},"commit":"60883d9e8947a57e04dc9124f25df004866a2051","checksum":%q,"stack":"host","buildpack_provided_description":"Go"}`, sha(tgz)))
	if sl.Blob.Method != "put" || !strings.HasPrefix(sl.Blob.URL, "http://example.com/slugs/"+sl.ID+"/blob?") || sl.Size != nil ||
		sl.Checksum == nil || *sl.Checksum != sha(tgz) || sl.Stack.Name != "host" || sl.ProcessTypes["web"] != "./server" ||
		sl.Commit == nil || *sl.BuildpackProvidedDescription != "Go" {
		t.Fatalf("slug = %+v", sl)
	}
	// Not uploaded yet: no release from it.
	e.errID(422, "invalid_params", "POST", "/apps/demo/releases", fmt.Sprintf(`{"slug":%q}`, sl.ID))

	// The URL needs its signature, and works only for its method and slug.
	u, _ := url.Parse(sl.Blob.URL)
	q := u.Query()
	q.Set("signature", "x"+q.Get("signature")[1:])
	forged := *u
	forged.RawQuery = q.Encode()
	if r := e.raw("PUT", forged.String(), tgz); r.status != 403 {
		t.Fatalf("forged URL: %d %s", r.status, r.body)
	}
	if r := e.raw("GET", sl.Blob.URL, nil); r.status != 403 {
		t.Fatalf("PUT URL used for GET: %d %s", r.status, r.body)
	}
	e.now = e.now.Add(time.Second)
	other := e.createSlug(`{"process_types":{"web":"x"}}`)
	if r := e.raw("PUT", strings.Replace(sl.Blob.URL, sl.ID, other.ID, 1), tgz); r.status != 403 {
		t.Fatalf("URL of another slug: %d %s", r.status, r.body)
	}

	// Upload with plain PUT, no Authorization header.
	r := e.raw("PUT", sl.Blob.URL, tgz)
	if r.status != 200 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	var up Slug
	if err := r.json(&up); err != nil || up.Size == nil || *up.Size != int64(len(tgz)) || up.Blob.Method != "get" {
		t.Fatalf("after upload: %+v %v", up, err)
	}
	st := e.slugState(sl.ID)
	if "SHA256:"+strings.TrimPrefix(st.BlobDigest, "sha256:") != sha(tgz) || !e.mem.Has(st.BlobDigest) {
		t.Fatalf("state = %+v", st)
	}
	// Uploading the same tarball again is fine.
	if r := e.raw("PUT", sl.Blob.URL, tgz); r.status != 200 {
		t.Fatalf("re-upload: %d %s", r.status, r.body)
	}
	// GET slug info gives a download URL; it streams the tarball back.
	var info Slug
	e.must(200, "GET", "/apps/demo/slugs/"+sl.ID, "").json(&info)
	if got := e.raw("GET", info.Blob.URL, nil); got.status != 200 || !bytes.Equal(got.body, tgz) {
		t.Fatalf("download: %d, %d bytes", got.status, len(got.body))
	}
	// Release it: the formation follows the slug's process types.
	var rel Release
	e.must(201, "POST", "/apps/demo/releases", fmt.Sprintf(`{"slug":%q,"description":"API deploy"}`, sl.ID)).json(&rel)
	if rel.Slug == nil || rel.Slug.ID != sl.ID || rel.Description != "API deploy" || !rel.Current {
		t.Fatalf("release = %+v", rel)
	}
	var form []Formation
	e.must(200, "GET", "/apps/demo/formation", "").json(&form)
	if len(form) != 2 || form[0].Type != "web" || form[0].Command != "./server" || form[1].Type != "worker" {
		t.Fatalf("formation = %+v", form)
	}
	// The list (a Slipway extension) has both slugs, newest last.
	var list []Slug
	e.must(200, "GET", "/apps/demo/slugs", "").json(&list)
	if len(list) != 2 || list[0].ID != sl.ID || list[1].ID != other.ID {
		t.Fatalf("list = %+v", list)
	}
	// Blob URLs expire.
	e.now = e.now.Add(2 * time.Hour)
	if r := e.raw("GET", info.Blob.URL, nil); r.status != 403 || !strings.Contains(string(r.body), "expired") {
		t.Fatalf("expired URL: %d %s", r.status, r.body)
	}
}

func TestSlugBadInput(t *testing.T) {
	e := newSlugEnv(t, 4096)
	before := e.state()
	for _, c := range []struct {
		status int
		id     string
		body   string
	}{
		{422, "invalid_params", `{}`},
		{422, "invalid_params", `{"process_types":{"bad type!":"x"}}`},
		{422, "invalid_params", `{"process_types":{"web":""}}`},
		{422, "invalid_params", `{"process_types":{"web":"x"},"checksum":"MD5:abc"}`},
		{422, "invalid_params", `{"process_types":{"web":"x"},"checksum":"SHA256:abc"}`},
		{422, "invalid_params", `{"process_types":{"web":"x"},"commit":"` + strings.Repeat("a", 300) + `"}`},
		{404, "not_found", `{"process_types":{"web":"x"},"stack":"heroku-99"}`},
		{400, "bad_request", `{"process_types":{"web":"x"},"bogus":1}`},
		{400, "bad_request", `{"process_types":["web"]}`},
	} {
		e.errID(c.status, c.id, "POST", "/apps/demo/slugs", c.body)
	}
	e.errID(404, "not_found", "POST", "/apps/nope/slugs", `{"process_types":{"web":"x"}}`)
	e.errID(404, "not_found", "GET", "/apps/demo/slugs/"+strings.Repeat("0", 8), "")
	if after := e.state(); after != before || len(e.b.f.Snap().Slugs(e.appID())) != 0 {
		t.Fatalf("rejected requests changed state")
	}

	good := makeTgz(t, tarEntry{name: "app/server", body: "ok"})
	tarballs := []struct {
		name, want string
		data       []byte
	}{
		{"path traversal", `".." path component`, makeTgz(t, tarEntry{name: "app/../../etc/cron.d/evil", body: "* * * * * root sh"})},
		{"absolute path", "absolute path", makeTgz(t, tarEntry{name: "/etc/passwd", body: "root::0:0"})},
		{"symlink escape", "points outside", makeTgz(t, tarEntry{name: "app/etc", typ: tar.TypeSymlink, link: "../../../etc"}, tarEntry{name: "app/etc/passwd", body: "x"})},
		{"absolute symlink", "points outside", makeTgz(t, tarEntry{name: "app/shadow", typ: tar.TypeSymlink, link: "/etc/shadow"})},
		{"hard link out", `".."`, makeTgz(t, tarEntry{name: "app/h", typ: tar.TypeLink, link: "../etc/shadow"})},
		{"device file", "device files", makeTgz(t, tarEntry{name: "app/sda", typ: tar.TypeBlock})},
		{"fifo", "FIFOs", makeTgz(t, tarEntry{name: "app/p", typ: tar.TypeFifo})},
		{"not a tarball", "not a gzip", []byte("#!/bin/sh\necho hi\n")},
	}
	for _, tb := range tarballs {
		t.Run(tb.name, func(t *testing.T) {
			sl := e.createSlug(`{"process_types":{"web":"./server"}}`)
			r := e.raw("PUT", sl.Blob.URL, tb.data)
			var er Error
			if r.status != 422 || r.json(&er) != nil || er.ID != "invalid_params" || !strings.Contains(er.Message, tb.want) {
				t.Fatalf("%s: %d %s", tb.name, r.status, r.body)
			}
			if st := e.slugState(sl.ID); st.BlobDigest != "" || st.Size != 0 {
				t.Fatalf("slug recorded as uploaded: %+v", st)
			}
			if d := e.mem.Digests(); len(d) != 0 {
				t.Fatalf("stored %v", d)
			}
		})
	}
	t.Run("wrong checksum", func(t *testing.T) {
		sl := e.createSlug(fmt.Sprintf(`{"process_types":{"web":"./server"},"checksum":%q}`, sha([]byte("something else"))))
		r := e.raw("PUT", sl.Blob.URL, good)
		if r.status != 422 || !strings.Contains(string(r.body), "checksum mismatch") || !strings.Contains(string(r.body), sha(good)) {
			t.Fatalf("wrong checksum: %d %s", r.status, r.body)
		}
		if st := e.slugState(sl.ID); st.BlobDigest != "" || len(e.mem.Digests()) != 0 {
			t.Fatal("a slug with a wrong checksum was stored")
		}
		e.errID(422, "invalid_params", "POST", "/apps/demo/releases", fmt.Sprintf(`{"slug":%q}`, sl.ID))
	})
	t.Run("too large", func(t *testing.T) {
		sl := e.createSlug(`{"process_types":{"web":"./server"}}`)
		big := makeTgz(t, tarEntry{name: "app/big", body: string(randomish(20000))})
		r := e.raw("PUT", sl.Blob.URL, big)
		if r.status != 413 || !strings.Contains(string(r.body), "too large") {
			t.Fatalf("too large: %d %s", r.status, r.body)
		}
		// Without a Content-Length the limit holds too.
		req := httptest.NewRequest("PUT", strings.TrimPrefix(sl.Blob.URL, "http://example.com"), io.MultiReader(bytes.NewReader(big)))
		req.ContentLength = -1
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, req)
		if w.Code != http.StatusRequestEntityTooLarge || len(e.mem.Digests()) != 0 {
			t.Fatalf("chunked too large: %d %s", w.Code, w.Body)
		}
	})
}

func (e *slugEnv) appID() string {
	a, _ := e.b.f.Snap().App("demo")
	return a.ID
}

// randomish is incompressible filler.
func randomish(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestClusterBlobs(t *testing.T) {
	e := newSlugEnv(t, 0)
	var out []BlobInfo
	e.must(200, "GET", "/cluster/blobs", "").json(&out)
	if out == nil || len(out) != 0 {
		t.Fatalf("blobs = %+v", out)
	}
	dg := "sha256:" + strings.Repeat("ab", 32)
	cmd, _ := fsm.NewCommand(fsm.CmdBlobReplicas, "c1", time.Now(), "", fsm.BlobReplicas{Digest: dg, Size: 5, Kind: "slug", Add: []string{"n1", "n2"}})
	if res, err := e.b.Submit(context.Background(), cmd); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	e.must(200, "GET", "/cluster/blobs", "").json(&out)
	if len(out) != 1 || out[0].Digest != dg || len(out[0].Replicas) != 2 || out[0].Replicas[0].Node != "n1" || out[0].Referenced {
		t.Fatalf("blobs = %+v", out)
	}
}
