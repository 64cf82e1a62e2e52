package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// goAppSource is the small Go web app the deploy tests git push.
const goAppSource = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from %s greeting=%s\n", MESSAGE, os.Getenv("DYNO"), os.Getenv("GREETING"))
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
`

// gitRepo is a local git working copy of the Go app.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newGoAppRepo(t *testing.T, message string) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required")
	}
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.must("init", "--quiet", "--initial-branch=main")
	r.write("go.mod", "module example.com/goapp\n\ngo 1.22\n")
	r.setMessage(message)
	return r
}

func (r *gitRepo) write(name, content string) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) setMessage(m string) {
	r.write("main.go", strings.Replace(goAppSource, "MESSAGE", fmt.Sprintf("%q", m), 1))
	r.commit("message " + m)
}

func (r *gitRepo) commit(msg string) {
	r.must("add", "-A")
	r.must("commit", "--quiet", "--allow-empty", "-m", msg)
}

func (r *gitRepo) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev",
		"GIT_COMMITTER_EMAIL=dev@example.com", "GIT_TERMINAL_PROMPT=0", "HOME="+r.dir, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *gitRepo) must(args ...string) string {
	r.t.Helper()
	out, err := r.git(args...)
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// pushURL is the app's git URL on a node with the token as the password.
func (d *dev) pushURL(node, app, token string) string {
	return strings.Replace(d.node(node).API, "http://", "http://heroku:"+token+"@", 1) + "/" + app + ".git"
}

func expectAll(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Fatalf("output lacks %q:\n%s", p, out)
		}
	}
}

// viaRouter GETs the app's default domain through a node's router.
func (d *dev) viaRouter(node, app string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, d.node(node).Router+"/", nil)
	req.Host = app + ".localhost"
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}

// waitServes waits until the app answers want through the router and its
// web.1 dyno is up.
func (d *dev) waitServes(c *client.Client, app, want string) {
	d.t.Helper()
	eventually(d.t, 90*time.Second, "the app to answer "+want, func() error {
		ds, err := c.Dynos(context.Background(), app)
		if err != nil {
			return err
		}
		up := false
		for _, dy := range ds {
			up = up || (dy.Name == "web.1" && dy.State == "up")
		}
		if !up {
			return fmt.Errorf("web.1 not up: %+v", ds)
		}
		body, err := d.viaRouter("node-2", app)
		if err != nil {
			return err
		}
		if !strings.Contains(body, want) {
			return fmt.Errorf("answered %q", body)
		}
		return nil
	})
}

// directly asks the cluster where web.1 runs and returns what it answers on
// its own port (bypassing the router).
func (d *dev) directly(c *client.Client, app string) string {
	d.t.Helper()
	ds, err := c.Dynos(context.Background(), app)
	if err != nil {
		d.t.Fatal(err)
	}
	for _, dy := range ds {
		if dy.Name != "web.1" || dy.State != "up" {
			continue
		}
		body, err := get("http://" + d.dynoAddr(d.t, app, dy) + "/")
		if err != nil {
			d.t.Fatalf("web.1 on its port: %v", err)
		}
		return body
	}
	d.t.Fatalf("no web.1 up: %+v", ds)
	return ""
}

// TestGitPushDeploy is issue 4's end-to-end test: git push a Go app to one
// node, again through another (on the first's history, with the build
// cache), check releases and rollback with the heroku CLI, a failing
// build, a failing release phase and bad pushes.
func TestGitPushDeploy(t *testing.T) {
	d := startDev(t, 3, "")
	c := d.client("node-1")
	ctx := context.Background()
	if _, err := c.CreateApp(ctx, api.AppCreateRequest{Name: ptrTo("gopush")}); err != nil {
		t.Fatal(err)
	}
	repo := newGoAppRepo(t, "first version")

	// 1. First push: buildpack steps, Released v2, the dyno up, answering.
	out, err := repo.git("push", d.pushURL("node-1", "gopush", d.token), "main")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	expectAll(t, out, `remote: Building source:`, `remote: -----> Go app detected`, `remote: -----> Installing \.`,
		`remote:        Installed bin/goapp`, `remote: -----> Discovering process types`, `remote:        Default types for buildpack -> web`,
		`remote: -----> Compressing\.\.\.`, `remote:        Done: \d`, `remote: -----> Launching\.\.\.`, `remote:        Released v2`,
		`remote:        http://gopush\.localhost:\d+/ deployed to Heroku`, `remote: Verifying deploy\.\.\. done\.`, `\* \[new branch\]\s+main -> main`)
	if strings.Contains(out, "Using the build cache") {
		t.Fatalf("the first build claims a cache:\n%s", out)
	}
	d.waitServes(c, "gopush", "first version from web.1")
	if body := d.directly(c, "gopush"); !strings.Contains(body, "first version") {
		t.Fatalf("dyno answered %q", body)
	}

	// 2. Second push through another node: on the first's history, cached.
	first := strings.TrimSpace(repo.must("rev-parse", "HEAD"))
	repo.setMessage("second version")
	out, err = repo.git("push", d.pushURL("node-3", "gopush", d.token), "main")
	if err != nil {
		t.Fatalf("second push: %v\n%s", err, out)
	}
	expectAll(t, out, `Using the build cache`, `Released v3`, first[:7]+`\.\.[0-9a-f]{7}\s+main -> main`)
	d.waitServes(c, "gopush", "second version from web.1")

	// 3. heroku releases and rollback: the old slug and config come back.
	if _, err := exec.LookPath("heroku"); err == nil || os.Getenv("CI") != "" {
		bin := herokuCLI(t)
		home := t.TempDir()
		env := []string{"HOME=" + home, "HEROKU_HOST=" + d.node("node-2").API, "HEROKU_API_KEY=" + d.token,
			"HEROKU_PARTICLEBOARD_URL=" + d.node("node-2").API, "DISABLE_TELEMETRY=true", "HEROKU_SKIP_NEW_VERSION_CHECK=true",
			"HEROKU_DISABLE_AUTOUPDATE=1", "NO_COLOR=1", "FORCE_COLOR=0"}
		heroku := func(args ...string) string {
			t.Helper()
			out, err := d.run(env, bin, args...)
			if err != nil {
				t.Fatalf("heroku %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return out
		}
		heroku("config:set", "GREETING=hello", "-a", "gopush")
		d.waitServes(c, "gopush", "greeting=hello")
		expectAll(t, heroku("releases", "-a", "gopush"), `Current: v4`, `v4\s+Set GREETING config vars`, `v3\s+Deploy [0-9a-f]{7}`, `v2\s+Deploy `+first[:7])
		expectAll(t, heroku("rollback", "v2", "-a", "gopush"), `Rolling back ⬢?\s?gopush to v2\.\.\. done, v5`)
		d.waitServes(c, "gopush", "first version from web.1 greeting=\n")
		expectAll(t, heroku("releases", "-a", "gopush"), `Current: v5`, `v5\s+Rollback to v2`)
		// A buildpack name makes the CLI ask Heroku's registry: give URLs.
		expectAll(t, heroku("buildpacks:set", "https://github.com/heroku/heroku-buildpack-go", "-a", "gopush"), `Buildpack set\. Next release on ⬢?\s?gopush will use https://github\.com/heroku/heroku-buildpack-go`)
		expectAll(t, heroku("buildpacks", "-a", "gopush"), `https://github\.com/heroku/heroku-buildpack-go`)
		expectAll(t, heroku("buildpacks:clear", "-a", "gopush"), `Buildpacks cleared`)
		expectAll(t, heroku("git:remote", "-a", "gopush"), `set git remote heroku to https://127\.0\.0\.1:\d+/gopush\.git`)
	}
	current := func() int {
		rs, err := c.Releases(ctx, "gopush", client.ListOptions{Field: "version", Max: 1, Order: "desc"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			return r.Version
		}
		return 0
	}
	running := current()

	// 4. A failing build: rejected with the reason; the running release stays.
	repo.write("main.go", "package main\n\nfunc main() { undefinedThing() }\n")
	repo.commit("broken")
	out, err = repo.git("push", d.pushURL("node-2", "gopush", d.token), "main")
	if err == nil {
		t.Fatalf("a broken build was accepted:\n%s", out)
	}
	expectAll(t, out, `undefined: undefinedThing`, `Push rejected, failed to compile Go app`, `pre-receive hook declined`)
	if v := current(); v != running {
		t.Fatalf("a failed build made release v%d", v)
	}
	if body, err := d.viaRouter("node-1", "gopush"); err != nil || !strings.Contains(body, "version from web.1") {
		t.Fatalf("the app stopped answering after a failed build: %v %q", err, body)
	}

	// 5. A failing release phase: the release is failed, the running one stays.
	repo.must("reset", "--quiet", "--hard", "HEAD~1")
	repo.write("Procfile", "web: bin/goapp\nrelease: echo migrating; exit 3\n")
	repo.setMessage("third version")
	out, err = repo.git("push", d.pushURL("node-2", "gopush", d.token), "main")
	if err != nil {
		t.Fatalf("release-phase push: %v\n%s", err, out)
	}
	expectAll(t, out, `Release command declared`, `Running release command`, `Release command failed`)
	rs, err := c.Releases(ctx, "gopush", client.ListOptions{Field: "version", Max: 2, Order: "desc"})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Status != "failed" || rs[0].Current || !rs[1].Current {
		t.Fatalf("releases after a failed release phase: %+v", rs)
	}

	// 6. Bad pushes get clear messages and change nothing.
	out, err = repo.git("push", d.pushURL("node-1", "nosuchapp", d.token), "main")
	if err == nil || !strings.Contains(out, "Couldn't find that app") {
		t.Fatalf("unknown app: %v\n%s", err, out)
	}
	out, err = repo.git("push", d.pushURL("node-1", "gopush", "wrong-token"), "main")
	if err == nil || !strings.Contains(out, "Invalid credentials") {
		t.Fatalf("wrong token: %v\n%s", err, out)
	}
	repo.must("reset", "--quiet", "--hard", first)
	repo.setMessage("diverged")
	out, err = repo.git("push", d.pushURL("node-1", "gopush", d.token), "main")
	if err == nil || !regexp.MustCompile(`\[rejected\]\s+main -> main \((fetch first|non-fast-forward)\)`).MatchString(out) {
		t.Fatalf("non-fast-forward push: %v\n%s", err, out)
	}

	// 7. Builds: listed with their status.
	bs, err := c.Builds(ctx, "gopush", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, b := range bs {
		statuses = append(statuses, b.Status)
	}
	if strings.Join(statuses, ",") != "succeeded,succeeded,failed,succeeded" {
		t.Fatalf("builds: %v", statuses)
	}
	slw, err := d.run(nil, slipwayBin, "builds", "-a", "gopush")
	if err != nil || !strings.Contains(slw, "failed") {
		t.Fatalf("slipway builds: %v\n%s", err, slw)
	}
}

// TestDeployDirectory builds a directory with `slipway deploy` (the Builds
// API and POST /sources), honouring .gitignore.
func TestDeployDirectory(t *testing.T) {
	d := startDev(t, 3, "")
	c := d.client("node-2")
	if _, err := c.CreateApp(context.Background(), api.AppCreateRequest{Name: ptrTo("site")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "public"), 0o755)
	os.WriteFile(filepath.Join(dir, "public", "index.html"), []byte("<h1>static site</h1>\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("do not ship"), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("secret.txt\n"), 0o644)
	out, err := d.run([]string{"SLIPWAY_APP=site"}, slipwayBin, "deploy", dir)
	if err != nil {
		t.Fatalf("slipway deploy: %v\n%s", err, out)
	}
	expectAll(t, out, `Static site app detected`, `Released v2`)
	d.waitServes(c, "site", "static site")
	req, _ := http.NewRequest(http.MethodGet, d.node("node-1").Router+"/secret.txt", nil)
	req.Host = "site.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an ignored file was deployed: %s", resp.Status)
	}
	out, err = d.run([]string{"SLIPWAY_APP=site"}, slipwayBin, "builds:output")
	if err != nil || !strings.Contains(out, "Static site app detected") {
		t.Fatalf("builds:output: %v\n%s", err, out)
	}
}

func ptrTo(s string) *string { return &s }
