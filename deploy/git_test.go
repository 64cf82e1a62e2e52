package deploy

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"io"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/fsm"
)

func slugFiles(t *testing.T, n *testNode, digest string) map[string]bool {
	t.Helper()
	rc, _, err := n.blobs.Open(t.Context(), digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = true
	}
}

func TestGitPushBuildsAndReleases(t *testing.T) {
	n := newTestNode(t, nil)
	app := n.createApp("hello")
	repo := newLocalRepo(t, goApp("v1"))
	out, err := repo.git("push", n.gitURL("hello", testToken), "main")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	mustContain(t, out, "remote: Building source:", "remote: -----> Go app detected", "remote: -----> Installing .",
		"remote: -----> Discovering process types", "remote:        Default types for buildpack -> web",
		"remote: -----> Compressing...", "remote:        Released v2", "http://hello.localhost:5005/ deployed to Heroku",
		"remote: Verifying deploy... done.", "main -> main")
	snap := n.f.Snap()
	cur := snap.CurrentRelease(app.ID)
	if cur.Version != 2 || cur.Description != "Deploy "+repo.head()[:7] {
		t.Fatalf("current release %+v", cur)
	}
	sl, _ := snap.Slug(cur.SlugID)
	if sl.ProcessTypes["web"] != "bin/hello" || sl.Commit != repo.head() {
		t.Fatalf("slug %+v", sl)
	}
	if files := slugFiles(t, n, sl.BlobDigest); !files["./app/bin/hello"] || !files["./app/main.go"] {
		t.Fatalf("slug files %v", files)
	}
	r := snap.Repo(app.ID)
	if r.Digest == "" || r.Head != repo.head() || r.CacheDigest == "" || r.Lease != nil {
		t.Fatalf("repo record %+v", r)
	}
	builds := snap.Builds(app.ID)
	if len(builds) != 1 || builds[0].Status != fsm.BuildSucceeded || builds[0].OutputDigest == "" || builds[0].SourceVersion != repo.head() {
		t.Fatalf("builds %+v", builds)
	}

	// A second push builds on the first's history, with the cache.
	first := repo.head()
	repo.write(goApp("v2"))
	repo.commit("second")
	out, err = repo.git("push", n.gitURL("hello", testToken), "main")
	if err != nil {
		t.Fatalf("second push: %v\n%s", err, out)
	}
	mustContain(t, out, "Released v3", first[:7]+".."+repo.head()[:7])

	// Non-fast-forward: refused by git unless forced.
	repo.mustGit("reset", "--hard", first)
	repo.write(map[string]string{"README": "diverged"})
	repo.commit("diverged")
	out, err = repo.git("push", n.gitURL("hello", testToken), "main")
	if err == nil || !strings.Contains(out, "rejected") {
		t.Fatalf("non-fast-forward push accepted: %v\n%s", err, out)
	}
	if cur := n.f.Snap().CurrentRelease(app.ID); cur.Version != 3 {
		t.Fatalf("a refused push released v%d", cur.Version)
	}
	out, err = repo.git("push", "--force", n.gitURL("hello", testToken), "main")
	if err != nil {
		t.Fatalf("forced push: %v\n%s", err, out)
	}
	mustContain(t, out, "Released v4", "(forced update)")

	// Other branches are stored, not built.
	repo.mustGit("checkout", "--quiet", "-b", "feature")
	repo.commit("feature work")
	out, err = repo.git("push", n.gitURL("hello", testToken), "feature")
	if err != nil {
		t.Fatalf("branch push: %v\n%s", err, out)
	}
	mustContain(t, out, "not built")
	if len(n.f.Snap().Builds(app.ID)) != 3 {
		t.Fatal("a branch push was built")
	}
	ls := repo.mustGit("ls-remote", n.gitURL("hello", testToken))
	mustContain(t, ls, "refs/heads/feature", "refs/heads/main")

	// Clone gives the history back.
	clone := t.TempDir()
	cr := &localRepo{t: t, dir: clone}
	cr.mustGit("clone", "--quiet", n.gitURL("hello", testToken), "c")
}

func TestGitPushFailingBuildChangesNothing(t *testing.T) {
	n := newTestNode(t, nil)
	app := n.createApp("hello")
	repo := newLocalRepo(t, goApp("v1"))
	if out, err := repo.git("push", n.gitURL("hello", testToken), "main"); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	good := repo.head()
	repo.write(map[string]string{"main.go": "package main\n\nfunc main() { this is not go }\n"})
	repo.commit("broken")
	out, err := repo.git("push", n.gitURL("hello", testToken), "main")
	if err == nil {
		t.Fatalf("a broken build was accepted:\n%s", out)
	}
	mustContain(t, out, "syntax error", "Push rejected, failed to compile Go app", "pre-receive hook declined")
	snap := n.f.Snap()
	if cur := snap.CurrentRelease(app.ID); cur.Version != 2 {
		t.Fatalf("current release v%d after a failed build", cur.Version)
	}
	if r := snap.Repo(app.ID); r.Head != good {
		t.Fatalf("repository moved to %s", r.Head)
	}
	if ls := repo.mustGit("ls-remote", n.gitURL("hello", testToken), "main"); !strings.HasPrefix(ls, good) {
		t.Fatalf("remote main is %s", ls)
	}
	bs := snap.Builds(app.ID)
	if last := bs[len(bs)-1]; last.Status != fsm.BuildFailed || !strings.Contains(last.Message, "Failed to compile") {
		t.Fatalf("failed build %+v", last)
	}
}

func TestGitBadInput(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxPushBytes = 64 << 10 })
	app := n.createApp("hello")
	repo := newLocalRepo(t, map[string]string{"Procfile": "web: ./web\n"})

	out, err := repo.git("push", n.gitURL("nope", testToken), "main")
	if err == nil || !strings.Contains(out, "Couldn't find that app: nope") {
		t.Fatalf("unknown app: %v\n%s", err, out)
	}
	out, err = repo.git("push", n.gitURL("hello", "wrong"), "main")
	if err == nil || !strings.Contains(out, "Invalid credentials") {
		t.Fatalf("wrong token: %v\n%s", err, out)
	}

	// Over the push limit: refused with the limit in the message.
	big := make([]byte, 300<<10)
	_, _ = rand.Read(big)
	repo.write(map[string]string{"big.bin": string(big)})
	repo.commit("big")
	out, err = repo.git("push", n.gitURL("hello", testToken), "main")
	if err == nil || !strings.Contains(out, "larger than the 64.0K limit") {
		t.Fatalf("huge push: %v\n%s", err, out)
	}
	if r := n.f.Snap().Repo(app.ID); r.Digest != "" || len(n.f.Snap().Builds(app.ID)) != 0 {
		t.Fatalf("a refused push left state: %+v", r)
	}

	// Another push holds the lease: refused after the wait, clearly.
	repo.mustGit("reset", "--hard", "HEAD~1")
	if r := n.apply(fsm.CmdRepoLease, fsm.RepoLeaseTake{AppID: app.ID, LeaseID: "8e8a5a4e-3c6e-4a55-8f3c-2f1e6b0e1c11", Holder: "n9", TTL: 5 * 60e9}); r.Err != nil {
		t.Fatal(r.Err)
	}
	out, err = repo.git("push", n.gitURL("hello", testToken), "main")
	if err == nil || !strings.Contains(out, "Another push of hello is in progress (on node n9") || !strings.Contains(out, "Try again") {
		t.Fatalf("concurrent push: %v\n%s", err, out)
	}
}
