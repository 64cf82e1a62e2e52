package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// tarball makes a tar.gz of files (name → content; a name ending in "@"
// is a symbolic link to its content).
func tarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		h := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(name, "@") {
			h = &tar.Header{Name: strings.TrimSuffix(name, "@"), Linkname: content, Typeflag: tar.TypeSymlink, Mode: 0o777}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, content)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// serve serves blobs by path.
func serve(t *testing.T, files map[string][]byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// apiBuild runs a build through CreateBuild and returns it finished with
// its output.
func (n *testNode) apiBuild(app *fsm.App, url string, bps ...string) (*fsm.Build, string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := n.svc.CreateBuild(ctx, BuildRequest{App: app, User: n.user, URL: url, Buildpacks: bps})
	if err != nil {
		n.t.Fatal(err)
	}
	var out bytes.Buffer
	if err := n.svc.Follow(ctx, b.ID, &out, nil); err != nil {
		n.t.Fatalf("follow: %v\n%s", err, out.String())
	}
	final, err := n.svc.waitBuild(ctx, b.ID)
	if err != nil {
		n.t.Fatal(err)
	}
	return final, out.String()
}

func TestAPIBuilds(t *testing.T) {
	n := newTestNode(t, nil)
	app := n.createApp("web")
	slow := tarball(t, map[string]string{"bin/detect": "#!/bin/sh\necho Slow\n", "bin/compile": "#!/bin/sh\necho compiling slowly\nsleep 60\n"})
	srv := serve(t, map[string][]byte{
		"/static.tgz": tarball(t, map[string]string{"site/public/index.html": "<h1>hi</h1>", "site/.slugignore": "*.psd\n/secret\n",
			"site/logo.psd": "big", "site/secret/key": "k", "site/Procfile": "web: .heroku/static/slipway serve-static --root public\nrelease: true\n"}),
		"/traversal.tgz": tarball(t, map[string]string{"../../etc/evil": "x", "Procfile": "web: x\n"}),
		"/escape.tgz":    tarball(t, map[string]string{"Procfile": "web: x\n", "link@": "../../../etc/passwd"}),
		"/procfile.tgz":  tarball(t, map[string]string{"Procfile": "web: ./server\nworker: ./server work\n", "server": "#!/bin/sh\nsleep 1\n"}),
		"/nothing.tgz":   tarball(t, map[string]string{"README": "hi"}),
		"/slow.tgz":      slow,
	})

	// A static site, with .slugignore applied and a release phase.
	b, out := n.apiBuild(app, srv.URL+"/static.tgz")
	mustContain(t, out, "Fetching source from "+srv.URL+"/static.tgz", "Static site app detected", "Deleting 2 files matching .slugignore patterns",
		"Procfile declares types     -> web, release", "Released v2")
	if b.Status != fsm.BuildSucceeded {
		t.Fatalf("static build %+v\n%s", b, out)
	}
	sl, _ := n.f.Snap().Slug(b.SlugID)
	files := slugFiles(t, n, sl.BlobDigest)
	if !files["./app/public/index.html"] || !files["./app/.heroku/static/slipway"] || files["./app/logo.psd"] || files["./app/secret/key"] {
		t.Fatalf("static slug files %v", files)
	}
	// Its release phase ran (the stand-in supervisor runs "true").
	waitFor(t, func() bool { r, _ := n.f.Snap().Release(app.ID, b.ReleaseID); return r.Status == fsm.ReleaseSucceeded })

	// Path traversal and links out of the tree: refused with the reason.
	b, out = n.apiBuild(app, srv.URL+"/traversal.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(b.Message, `".."`) || !strings.Contains(out, "The source tarball was refused") {
		t.Fatalf("traversal build %+v\n%s", b, out)
	}
	b, out = n.apiBuild(app, srv.URL+"/escape.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "refused") {
		t.Fatalf("escaping link build %+v\n%s", b, out)
	}
	// An unfetchable source.
	b, out = n.apiBuild(app, srv.URL+"/missing.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "404 Not Found") {
		t.Fatalf("missing source %+v\n%s", b, out)
	}
	// Nothing detects.
	b, out = n.apiBuild(app, srv.URL+"/nothing.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "No default language could be detected") {
		t.Fatalf("undetectable build %+v\n%s", b, out)
	}
	// A buildpack URL that cannot be fetched.
	b, out = n.apiBuild(app, srv.URL+"/procfile.tgz", "http://127.0.0.1:1/buildpack.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "Failed to fetch buildpack http://127.0.0.1:1/buildpack.tgz") {
		t.Fatalf("unfetchable buildpack %+v\n%s", b, out)
	}
	b, out = n.apiBuild(app, srv.URL+"/procfile.tgz", "heroku/nodejs")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "is not one shipped with Slipway") {
		t.Fatalf("unknown buildpack %+v\n%s", b, out)
	}
	// None of the failures released anything.
	if cur := n.f.Snap().CurrentRelease(app.ID); cur.Version != 2 {
		t.Fatalf("current v%d", cur.Version)
	}
	// A custom buildpack by tarball URL, and Procfile types.
	srv2 := serve(t, map[string][]byte{"/bp.tgz": tarball(t, map[string]string{
		"bp/bin/detect":  "#!/bin/sh\necho Custom\n",
		"bp/bin/compile": "#!/bin/sh\necho \"compiling in $1 on $STACK\"\necho built > \"$1/built.txt\"\nls \"$3\"\n",
		"bp/bin/release": "#!/bin/sh\necho '---'\necho 'default_process_types:'\necho '  web: ./default-web'\n"})})
	n.apply(fsm.CmdConfigUpdate, fsm.ConfigUpdate{AppID: app.ID, Changes: map[string]*string{"SECRET_NAME": ptr("x")}, ReleaseID: "6f1b7d2a-1f3c-4d5e-8a9b-0c1d2e3f4a5b"})
	b, out = n.apiBuild(app, srv.URL+"/procfile.tgz", srv2.URL+"/bp.tgz")
	mustContain(t, out, "Custom app detected", "on host", "SECRET_NAME", "Procfile declares types     -> web, worker")
	sl, _ = n.f.Snap().Slug(b.SlugID)
	if b.Status != fsm.BuildSucceeded || sl.ProcessTypes["web"] != "./server" || !slugFiles(t, n, sl.BlobDigest)["./app/built.txt"] {
		t.Fatalf("custom buildpack build %+v %+v\n%s", b, sl, out)
	}
}

func ptr(s string) *string { return &s }

func randomText(n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(rand.Text())
	}
	return b.String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBuildLimits(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.BuildTimeout = 3 * time.Second; c.MaxSlugBytes = 1 << 10 })
	app := n.createApp("web")
	srv := serve(t, map[string][]byte{
		"/app.tgz":  tarball(t, map[string]string{"Procfile": "web: ./server\n", "server": rand.Text() + rand.Text() + rand.Text() + rand.Text() + rand.Text() + rand.Text() + rand.Text() + rand.Text() + strings.Repeat(rand.Text(), 1) + randomText(4096)}),
		"/slow.tgz": tarball(t, map[string]string{"bp/bin/detect": "#!/bin/sh\necho Slow\n", "bp/bin/compile": "#!/bin/sh\necho compiling slowly\nsleep 60\n"}),
	})
	b, out := n.apiBuild(app, srv.URL+"/app.tgz", srv.URL+"/slow.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "compiling slowly") || !strings.Contains(out, "exceeded the 0 minute limit") && !strings.Contains(out, "minute limit") {
		t.Fatalf("slow build %+v\n%s", b, out)
	}
	b, out = n.apiBuild(app, srv.URL+"/app.tgz")
	if b.Status != fsm.BuildFailed || !strings.Contains(out, "Compiled slug size: 1M is too large (max is 1M)") {
		t.Fatalf("big slug %+v\n%s", b, out)
	}
	// Nowhere to build: the reason is shown, and the build fails when its
	// dyno is stopped.
	n.noDynos = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pb, err := n.svc.CreateBuild(ctx, BuildRequest{App: app, User: n.user, URL: srv.URL + "/app.tgz"})
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuf
	go n.svc.Follow(ctx, pb.ID, &buf, nil)
	waitFor(t, func() bool {
		return strings.Contains(buf.String(), "Waiting for a node to build on: no node has 1024 MB free")
	})
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
