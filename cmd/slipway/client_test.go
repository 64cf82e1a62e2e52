package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// request is one request the fake API saw.
type request struct {
	Method string
	Path   string // escaped, as sent
	Header http.Header
	Body   string
}

// fakeAPI is an httptest server with per-test handlers registered on a
// ServeMux ("GET /apps/{app}"), recording every request.
type fakeAPI struct {
	*httptest.Server
	mux  *http.ServeMux
	mu   sync.Mutex
	reqs []request
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{mux: http.NewServeMux()}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{r.Method, r.URL.EscapedPath(), r.Header.Clone(), string(body)})
		f.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if r.Header.Get("Authorization") != "Bearer test-token" {
			reply(w, 401, api.Error{ID: "unauthorized", Message: "Invalid credentials provided."})
			return
		}
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// handle registers a handler that replies status and v as JSON.
func (f *fakeAPI) handle(pattern string, status int, v any) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { reply(w, status, v) })
}

func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// find returns the first request with the method and path, or fails.
func (f *fakeAPI) find(t *testing.T, method, path string) request {
	t.Helper()
	for _, r := range f.requests() {
		if r.Method == method && r.Path == path {
			return r
		}
	}
	t.Fatalf("no %s %s among %v", method, path, f.summary())
	return request{}
}

// summary lists the requests as "METHOD path".
func (f *fakeAPI) summary() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if s, ok := v.(string); ok {
		io.WriteString(w, s)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// result is what one CLI run printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

// run runs the client commands with args against env (which gets
// SLIPWAY_CREDENTIALS_FILE pointing into a temp dir unless it sets it).
func run(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	if _, ok := env["SLIPWAY_CREDENTIALS_FILE"]; !ok {
		env["SLIPWAY_CREDENTIALS_FILE"] = filepath.Join(t.TempDir(), "credentials.json")
	}
	root := &cobra.Command{Use: "slipway", SilenceUsage: true, SilenceErrors: true}
	addClientCommandsWith(root, &clientEnv{
		getenv: func(k string) string { return env[k] },
		loc:    time.UTC,
	})
	var stdout, stderr strings.Builder
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return result{stdout.String(), stderr.String(), err}
}

// envFor is an environment logged in to f.
func envFor(f *fakeAPI) map[string]string {
	return map[string]string{"SLIPWAY_API_URL": f.URL, "SLIPWAY_API_TOKEN": "test-token"}
}

func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("error: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
}

// t0Unix is when the fake releases were made.
const t0Unix = 1767323045 // 2026-01-02T03:04:05Z

// demoApp is the app the fake API serves.
func demoApp() api.App {
	return api.App{Name: "demo", ID: "11111111-1111-1111-1111-111111111111",
		GitURL: "http://git.example.test/demo.git", WebURL: "http://demo.example.test/",
		Owner: api.UserRef{Email: "admin@localhost"}, Region: api.Ref{Name: "us"}, Stack: api.Ref{Name: "host"},
		BuildStack: api.Ref{Name: "host"}}
}

func TestMissingCredentials(t *testing.T) {
	r := run(t, map[string]string{}, "", "apps")
	if r.err == nil {
		t.Fatal("apps succeeded without credentials")
	}
	for _, want := range []string{"SLIPWAY_API_URL", "slipway login"} {
		if !strings.Contains(r.err.Error(), want) {
			t.Errorf("error %q does not mention %q", r.err, want)
		}
	}
}

func TestMissingApp(t *testing.T) {
	f := newFakeAPI(t)
	r := run(t, envFor(f), "", "config")
	if r.err == nil || !strings.Contains(r.err.Error(), "-a APP") || !strings.Contains(r.err.Error(), "SLIPWAY_APP") {
		t.Fatalf("err = %v, want a hint at -a and SLIPWAY_APP", r.err)
	}
	if len(f.requests()) != 0 {
		t.Errorf("requests were made: %v", f.summary())
	}
}

func TestAppFromEnv(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/config-vars", 200, map[string]string{"B": "2", "LONGER_KEY": "x", "A": "one=1"})
	env := envFor(f)
	env["SLIPWAY_APP"] = "demo"
	r := run(t, env, "", "config")
	mustSucceed(t, r)
	want := "=== ⬢demo Config Vars\n\nA:          one=1\nB:          2\nLONGER_KEY: x\n"
	if r.stdout != want {
		t.Errorf("stdout =\n%q\nwant\n%q", r.stdout, want)
	}
	f.find(t, "GET", "/apps/demo/config-vars")
}

func TestConfigSet(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("PATCH /apps/{app}/config-vars", 200, map[string]string{"A": "1", "B": "x=y", "OTHER": "z"})
	f.handle("GET /apps/{app}/releases", 200, []api.Release{{Version: 5}})
	r := run(t, envFor(f), "", "config:set", "A=1", "B=x=y", "-a", "demo")
	mustSucceed(t, r)

	patch := f.find(t, "PATCH", "/apps/demo/config-vars")
	var body map[string]*string
	if err := json.Unmarshal([]byte(patch.Body), &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 || *body["A"] != "1" || *body["B"] != "x=y" {
		t.Errorf("PATCH body = %s", patch.Body)
	}
	rel := f.find(t, "GET", "/apps/demo/releases")
	if got := rel.Header.Get("Range"); got != "version ..; max=1, order=desc" {
		t.Errorf("releases Range = %q", got)
	}
	if want := "Setting A, B and restarting ⬢demo... done, v5\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	if want := "A: 1\nB: x=y\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
}

func TestConfigSetInvalid(t *testing.T) {
	f := newFakeAPI(t)
	for _, arg := range []string{"NOEQUALS", "=value"} {
		r := run(t, envFor(f), "", "config:set", arg, "-a", "demo")
		if r.err == nil || !strings.Contains(r.err.Error(), "KEY=VALUE") {
			t.Errorf("config:set %s: err = %v", arg, r.err)
		}
	}
	if len(f.requests()) != 0 {
		t.Errorf("requests were made: %v", f.summary())
	}
}

func TestConfigUnsetSendsNull(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("PATCH /apps/{app}/config-vars", 200, map[string]string{"KEEP": "1"})
	f.handle("GET /apps/{app}/releases", 200, []api.Release{{Version: 7}})
	r := run(t, envFor(f), "", "config:unset", "A", "B", "-a", "demo")
	mustSucceed(t, r)
	if got := f.find(t, "PATCH", "/apps/demo/config-vars").Body; got != `{"A":null,"B":null}` {
		t.Errorf("body = %s", got)
	}
	if want := "Unsetting A, B and restarting ⬢demo... done, v7\n"; r.stderr != want {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestConfigGet(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/config-vars", 200, map[string]string{"A": "a=b c"})
	r := run(t, envFor(f), "", "config:get", "A", "-a", "demo")
	mustSucceed(t, r)
	if r.stdout != "a=b c\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	r = run(t, envFor(f), "", "config:get", "MISSING", "-a", "demo", "--json")
	mustSucceed(t, r)
	if r.stdout != "null\n" {
		t.Errorf("--json for a missing key = %q", r.stdout)
	}
}

func TestScaleParse(t *testing.T) {
	updates, err := parseScaleArgs([]string{"web=2:Standard-2X", "worker+1", "clock-3", "my-proc_1=0"})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(updates)
	want := `[{"type":"web","quantity":2,"size":"Standard-2X","dyno_size":null},` +
		`{"type":"worker","quantity":"+1","size":null,"dyno_size":null},` +
		`{"type":"clock","quantity":"-3","size":null,"dyno_size":null},` +
		`{"type":"my-proc_1","quantity":0,"size":null,"dyno_size":null}]`
	if string(data) != want {
		t.Errorf("updates =\n%s\nwant\n%s", data, want)
	}
	for _, bad := range []string{"web", "web=", "web=two", "web*2", "web=1:", "=1", "web=1:Basic:x"} {
		if _, err := parseScaleArgs([]string{bad}); err == nil {
			t.Errorf("parseScaleArgs(%q) succeeded", bad)
		}
	}
	if _, err := parseScaleArgs([]string{"web=1", "web+1"}); err == nil {
		t.Error("a type given twice was accepted")
	}
}

func TestScale(t *testing.T) {
	f := newFakeAPI(t)
	f.mux.HandleFunc("PATCH /apps/{app}/formation", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Formation{
			{Type: "web", Quantity: 3, Size: "Basic"},
			{Type: "worker", Quantity: 1, Size: "Standard-2X"},
		})
	})
	r := run(t, envFor(f), "", "ps:scale", "web+2", "worker=1:Standard-2X", "-a", "demo")
	mustSucceed(t, r)
	body := f.find(t, "PATCH", "/apps/demo/formation").Body
	want := `{"updates":[{"type":"web","quantity":"+2","size":null,"dyno_size":null},{"type":"worker","quantity":1,"size":"Standard-2X","dyno_size":null}]}`
	if body != want {
		t.Errorf("body =\n%s\nwant\n%s", body, want)
	}
	if want := "Scaling dynos... done, now running web at 3:Basic, worker at 1:Standard-2X\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

func TestScaleShowsFormation(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/formation", 200, []api.Formation{
		{Type: "worker", Quantity: 0, Size: "Basic"},
		{Type: "web", Quantity: 1, Size: "Basic"},
	})
	r := run(t, envFor(f), "", "scale", "-a", "demo")
	mustSucceed(t, r)
	if r.stdout != "web=1:Basic worker=0:Basic\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	for _, req := range f.requests() {
		if req.Method != "GET" {
			t.Errorf("scale without args sent %s %s", req.Method, req.Path)
		}
	}
}

func TestDestroyNeedsConfirm(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DELETE /apps/{app}", 200, demoApp())
	r := run(t, envFor(f), "", "apps:destroy", "-a", "demo")
	if r.err == nil || !strings.Contains(r.err.Error(), "--confirm demo") {
		t.Errorf("without --confirm: err = %v", r.err)
	}
	r = run(t, envFor(f), "", "destroy", "demo", "--confirm", "other")
	if r.err == nil || !strings.Contains(r.err.Error(), "did not match") {
		t.Errorf("with a wrong --confirm: err = %v", r.err)
	}
	if len(f.requests()) != 0 {
		t.Fatalf("requests were made: %v", f.summary())
	}
	r = run(t, envFor(f), "", "apps:destroy", "demo", "--confirm", "demo")
	mustSucceed(t, r)
	f.find(t, "DELETE", "/apps/demo")
	if r.stderr != "Destroying ⬢demo... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestJSONIsRaw(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}", 200, `{"name":"demo","field_the_cli_does_not_know":{"x":1}}`)
	r := run(t, envFor(f), "", "apps:info", "-a", "demo", "--json")
	mustSucceed(t, r)
	want := "{\n  \"name\": \"demo\",\n  \"field_the_cli_does_not_know\": {\n    \"x\": 1\n  }\n}\n"
	if r.stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestJSONListFollowsPages(t *testing.T) {
	f := newFakeAPI(t)
	f.mux.HandleFunc("GET /apps", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			w.Header().Set("Next-Range", "name ]a..; max=1")
			reply(w, 206, `[{"name":"a"}]`)
			return
		}
		reply(w, 200, `[{"name":"b"}]`)
	})
	r := run(t, envFor(f), "", "apps", "--json")
	mustSucceed(t, r)
	var apps []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &apps); err != nil || len(apps) != 2 {
		t.Fatalf("stdout = %s (%v)", r.stdout, err)
	}
}

func TestAPIErrorReturned(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}", 404, api.Error{ID: "not_found", Message: "Couldn't find that app."})
	r := run(t, envFor(f), "", "info", "-a", "nope")
	var apiErr *client.Error
	if r.err == nil || !strings.HasPrefix(r.err.Error(), "Couldn't find that app.") {
		t.Fatalf("err = %v", r.err)
	}
	if !errors.As(r.err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("err is not a 404 *client.Error: %#v", r.err)
	}
}

func TestAppsCreate(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("POST /apps", 201, demoApp())
	r := run(t, envFor(f), "", "create", "demo", "--region", "us")
	mustSucceed(t, r)
	if got := f.find(t, "POST", "/apps").Body; got != `{"name":"demo","region":"us","stack":null}` {
		t.Errorf("body = %s", got)
	}
	if r.stderr != "Creating ⬢demo... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	if r.stdout != "http://demo.example.test/ | http://git.example.test/demo.git\n" {
		t.Errorf("stdout = %q", r.stdout)
	}

	r = run(t, envFor(f), "", "apps:create")
	mustSucceed(t, r)
	if r.stderr != "Creating app... done, ⬢demo\n" {
		t.Errorf("without a name: stderr = %q", r.stderr)
	}
}

func TestAppsInfo(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}", 200, demoApp())
	f.handle("GET /apps/{app}/formation", 200, []api.Formation{{Type: "web", Quantity: 2}, {Type: "clock", Quantity: 0}})
	r := run(t, envFor(f), "", "apps:info", "-a", "demo")
	mustSucceed(t, r)
	want := `=== ⬢demo

Formation:   clock: 0, web: 2
Git URL:     http://git.example.test/demo.git
Maintenance: off
Owner:       admin@localhost
Region:      us
Stack:       host
Web URL:     http://demo.example.test/
`
	if r.stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestReleases(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/releases", 200, []api.Release{
		{Version: 12, Description: "Deploy abc1234", Status: "pending", User: api.UserRef{Email: "dev@example.com"}, CreatedAt: time.Unix(t0Unix+3600, 0)},
		{Version: 11, Description: "Set A config vars", Status: "succeeded", Current: true, User: api.UserRef{Email: "admin@localhost"}, CreatedAt: time.Unix(t0Unix, 0)},
	})
	r := run(t, envFor(f), "", "releases", "-a", "demo", "-n", "2")
	mustSucceed(t, r)
	if got := f.find(t, "GET", "/apps/demo/releases").Header.Get("Range"); got != "version ..; max=2, order=desc" {
		t.Errorf("Range = %q", got)
	}
	want := `=== ⬢demo Releases - Current: v11

v12  Deploy abc1234 release command executing  dev@example.com  2026/01/02 04:04:05 +0000
v11  Set A config vars                         admin@localhost  2026/01/02 03:04:05 +0000
`
	if r.stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestReleasesInfoDefaultsToCurrent(t *testing.T) {
	f := newFakeAPI(t)
	cur := api.Release{ID: "rel-4", Version: 4, Description: "Rollback to v2", Status: "succeeded", Current: true,
		User: api.UserRef{Email: "admin@localhost"}, CreatedAt: time.Unix(t0Unix, 0)}
	f.handle("GET /apps/{app}/releases", 200, []api.Release{{ID: "rel-5", Version: 5, Status: "failed"}, cur})
	f.handle("GET /apps/{app}/releases/{rel}/config-vars", 200, map[string]string{"A": "1"})
	r := run(t, envFor(f), "", "releases:info", "-a", "demo")
	mustSucceed(t, r)
	f.find(t, "GET", "/apps/demo/releases/rel-4/config-vars")
	want := `=== Release v4

By:      admin@localhost
Change:  Rollback to v2
Current: yes
Status:  succeeded
When:    2026/01/02 03:04:05 +0000

=== v4 Config vars

A: 1
`
	if r.stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestRollbackDefaultTarget(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/releases", 200, []api.Release{
		{ID: "r7", Version: 7, Status: "failed", EligibleForRollback: false},
		{ID: "r6", Version: 6, EligibleForRollback: true, Current: true},
		{ID: "r5", Version: 5, EligibleForRollback: false},
		{ID: "r4", Version: 4, EligibleForRollback: true},
		{ID: "r3", Version: 3, EligibleForRollback: true},
	})
	f.handle("POST /apps/{app}/releases", 201, api.Release{ID: "r8", Version: 8})
	r := run(t, envFor(f), "", "rollback", "-a", "demo")
	mustSucceed(t, r)
	if got := f.find(t, "GET", "/apps/demo/releases").Header.Get("Range"); got != "version ..; max=10, order=desc" {
		t.Errorf("Range = %q", got)
	}
	if got := f.find(t, "POST", "/apps/demo/releases").Body; got != `{"release":"r4"}` {
		t.Errorf("body = %s", got)
	}
	if !strings.HasPrefix(r.stderr, "Rolling back ⬢demo to v4... done, v8\n") {
		t.Errorf("stderr = %q", r.stderr)
	}
	if !strings.Contains(r.stderr, "slipway rollback v7 -a demo") {
		t.Errorf("stderr lacks the undo hint: %q", r.stderr)
	}
}

func TestRollbackExplicitVersion(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/releases/{rel}", 200, api.Release{ID: "r3", Version: 3})
	f.handle("POST /apps/{app}/releases", 201, api.Release{ID: "r9", Version: 9})
	r := run(t, envFor(f), "", "rollback", "v3", "-a", "demo")
	mustSucceed(t, r)
	f.find(t, "GET", "/apps/demo/releases/3")
	if got := f.find(t, "POST", "/apps/demo/releases").Body; got != `{"release":"r3"}` {
		t.Errorf("body = %s", got)
	}
}

func TestRollbackNothingToRollBackTo(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/releases", 200, []api.Release{{ID: "r1", Version: 1, EligibleForRollback: true}})
	r := run(t, envFor(f), "", "rollback", "-a", "demo")
	if r.err == nil || !strings.Contains(r.err.Error(), "no release to roll back to") {
		t.Errorf("err = %v", r.err)
	}
}

func TestDomains(t *testing.T) {
	f := newFakeAPI(t)
	cname := "demo.example.test"
	f.handle("POST /apps/{app}/domains", 201, api.Domain{Hostname: "www.example.com", Kind: "custom", CName: &cname})
	f.handle("DELETE /apps/{app}/domains/{domain}", 200, api.Domain{Hostname: "www.example.com"})
	f.handle("GET /apps/{app}/domains", 200, []api.Domain{
		{Hostname: "www.example.com", Kind: "custom", CName: &cname, Status: "none"},
		{Hostname: "demo.example.test", Kind: "heroku", Status: "none"},
	})

	r := run(t, envFor(f), "", "domains:add", "www.example.com", "-a", "demo")
	mustSucceed(t, r)
	if got := f.find(t, "POST", "/apps/demo/domains").Body; got != `{"hostname":"www.example.com","sni_endpoint":null}` {
		t.Errorf("body = %s", got)
	}
	if r.stderr != "Adding www.example.com to ⬢demo... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	if !strings.Contains(r.stdout, "DNS Target demo.example.test") {
		t.Errorf("stdout = %q", r.stdout)
	}

	r = run(t, envFor(f), "", "domains:remove", "www.example.com", "-a", "demo")
	mustSucceed(t, r)
	f.find(t, "DELETE", "/apps/demo/domains/www.example.com")
	if r.stderr != "Removing www.example.com from ⬢demo... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}

	r = run(t, envFor(f), "", "domains", "-a", "demo")
	mustSucceed(t, r)
	want := `=== ⬢demo Default Domain

demo.example.test

=== ⬢demo Custom Domains

DOMAIN NAME      DNS TARGET         STATUS
www.example.com  demo.example.test  none
`
	if r.stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestFeatures(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /apps/{app}/features", 200, []api.AppFeature{
		{Name: "runtime-dyno-metadata", Description: "Dyno metadata.", Enabled: true},
		{Name: "log-runtime-metrics", Description: "Metrics."},
	})
	f.handle("PATCH /apps/{app}/features/{name}", 200, api.AppFeature{Name: "log-runtime-metrics", Enabled: true})
	r := run(t, envFor(f), "", "labs", "-a", "demo")
	mustSucceed(t, r)
	want := `=== App Features (⬢demo)

[ ] log-runtime-metrics    Metrics.
[+] runtime-dyno-metadata  Dyno metadata.
`
	if r.stdout != want {
		t.Errorf("stdout =\n%s\nwant\n%s", r.stdout, want)
	}
	r = run(t, envFor(f), "", "features:enable", "log-runtime-metrics", "-a", "demo")
	mustSucceed(t, r)
	if got := f.find(t, "PATCH", "/apps/demo/features/log-runtime-metrics").Body; got != `{"enabled":true}` {
		t.Errorf("body = %s", got)
	}
	if r.stderr != "Enabling log-runtime-metrics for ⬢demo... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	r = run(t, envFor(f), "", "labs:disable", "log-runtime-metrics", "-a", "demo")
	mustSucceed(t, r)
	if reqs := f.requests(); reqs[len(reqs)-1].Body != `{"enabled":false}` {
		t.Errorf("disable body = %s", reqs[len(reqs)-1].Body)
	}
}

func TestMaintenance(t *testing.T) {
	f := newFakeAPI(t)
	on := demoApp()
	on.Maintenance = true
	f.handle("GET /apps/{app}", 200, on)
	f.handle("PATCH /apps/{app}", 200, on)
	r := run(t, envFor(f), "", "maintenance", "-a", "demo")
	mustSucceed(t, r)
	if r.stdout != "on\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	r = run(t, envFor(f), "", "maintenance:on", "-a", "demo")
	mustSucceed(t, r)
	if got := f.find(t, "PATCH", "/apps/demo").Body; got != `{"build_stack":null,"maintenance":true,"name":null}` {
		t.Errorf("body = %s", got)
	}
	if r.stderr != "Enabling maintenance mode for ⬢demo... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestRename(t *testing.T) {
	f := newFakeAPI(t)
	renamed := demoApp()
	renamed.Name = "demo2"
	f.handle("PATCH /apps/{app}", 200, renamed)
	env := envFor(f)
	env["SLIPWAY_APP"] = "demo"
	r := run(t, env, "", "apps:rename", "demo2")
	mustSucceed(t, r)
	if got := f.find(t, "PATCH", "/apps/demo").Body; got != `{"build_stack":null,"maintenance":null,"name":"demo2"}` {
		t.Errorf("body = %s", got)
	}
	if !strings.HasPrefix(r.stderr, "Renaming ⬢demo to ⬢demo2... done\n") || !strings.Contains(r.stderr, "SLIPWAY_APP") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestNodesAndRaft(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /cluster/nodes", 200, []api.NodeInfo{
		{Name: "n1", Region: "us", Zone: "a", RaftRole: "leader", GossipState: "alive", Version: "0.1.0", Addresses: api.NodeAddresses{API: "10.0.0.1:5000"}},
		{Name: "node-2", Region: "us", Zone: "b", RaftRole: "voter", GossipState: "alive", Draining: true, Version: "0.1.0", Addresses: api.NodeAddresses{API: "10.0.0.2:5000"}},
	})
	yes := true
	f.handle("GET /cluster/raft", 200, api.RaftInfo{Node: "node-2", State: "follower", Leader: "n1", LeaderAddress: "10.0.0.1:5001",
		Term: 3, CommitIndex: 120, AppliedIndex: 119, LastIndex: 121,
		Peers: []api.RaftPeer{{Name: "n1", Address: "10.0.0.1:5001", Zone: "a", Role: "leader", Healthy: &yes}}})
	f.handle("POST /cluster/nodes/{name}/drain", 200, api.NodeInfo{Name: "node-2", Draining: true})

	r := run(t, envFor(f), "", "nodes")
	mustSucceed(t, r)
	want := `NAME    REGION  ZONE  ROLE    GOSSIP  DRAINING  VERSION  API
n1      us      a     leader  alive   no        0.1.0    10.0.0.1:5000
node-2  us      b     voter   alive   yes       0.1.0    10.0.0.2:5000
`
	if r.stdout != want {
		t.Errorf("nodes =\n%s\nwant\n%s", r.stdout, want)
	}

	r = run(t, envFor(f), "", "raft")
	mustSucceed(t, r)
	for _, s := range []string{"Leader:        n1 (10.0.0.1:5001)", "Term:          3", "Commit Index:  120",
		"NAME  ADDRESS        ZONE  ROLE    HEALTHY", "n1    10.0.0.1:5001  a     leader  yes"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("raft output lacks %q:\n%s", s, r.stdout)
		}
	}

	r = run(t, envFor(f), "", "nodes:drain", "node-2")
	mustSucceed(t, r)
	if got := f.find(t, "POST", "/cluster/nodes/node-2/drain").Body; got != `{"draining":true}` {
		t.Errorf("drain body = %s", got)
	}
	if r.stderr != "Draining node node-2... done\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	r = run(t, envFor(f), "", "nodes:undrain", "node-2")
	mustSucceed(t, r)
	if reqs := f.requests(); reqs[len(reqs)-1].Body != `{"draining":false}` {
		t.Errorf("undrain body = %s", reqs[len(reqs)-1].Body)
	}
}

func TestRegionsAndStacks(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /regions", 200, []api.Region{{Name: "us", Description: "Slipway region us"}})
	f.handle("GET /stacks", 200, []api.Stack{{Name: "host", State: "default", Default: true}})
	r := run(t, envFor(f), "", "regions")
	mustSucceed(t, r)
	if r.stdout != "ID  LOCATION\nus  Slipway region us\n" {
		t.Errorf("regions = %q", r.stdout)
	}
	r = run(t, envFor(f), "", "stacks")
	mustSucceed(t, r)
	if r.stdout != "NAME  STATE    DEFAULT\nhost  default  *\n" {
		t.Errorf("stacks = %q", r.stdout)
	}
}

func TestWhoami(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /account", 200, api.Account{Email: "admin@localhost"})
	r := run(t, envFor(f), "", "whoami")
	mustSucceed(t, r)
	if r.stdout != "admin@localhost\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	acct := f.find(t, "GET", "/account")
	if acct.Header.Get("Accept") != client.AcceptHeader {
		t.Errorf("Accept = %q", acct.Header.Get("Accept"))
	}
}

func TestLoginPromptsVerifiesAndSaves(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("GET /account", 200, api.Account{Email: "admin@localhost"})
	credFile := filepath.Join(t.TempDir(), "sub", "credentials.json")
	env := map[string]string{"SLIPWAY_CREDENTIALS_FILE": credFile}

	r := run(t, env, f.URL+"/\ntest-token\n", "login")
	mustSucceed(t, r)
	if r.stdout != "Logged in as admin@localhost\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "API URL: ") || !strings.Contains(r.stderr, "API token: ") {
		t.Errorf("stderr lacks the prompts: %q", r.stderr)
	}
	if auth := f.find(t, "GET", "/account").Header.Get("Authorization"); auth != "Bearer test-token" {
		t.Errorf("Authorization = %q", auth)
	}
	st, err := os.Stat(credFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", st.Mode().Perm())
	}
	creds, err := client.LoadCredentials(credFile)
	if err != nil || creds.URL != f.URL || creds.Token != "test-token" {
		t.Errorf("saved %+v, %v", creds, err)
	}

	// The saved credentials now work without the environment.
	r = run(t, env, "", "auth:whoami")
	mustSucceed(t, r)
	if r.stdout != "admin@localhost\n" {
		t.Errorf("whoami after login = %q", r.stdout)
	}
}

func TestLoginRejectsBadToken(t *testing.T) {
	f := newFakeAPI(t)
	credFile := filepath.Join(t.TempDir(), "credentials.json")
	r := run(t, map[string]string{"SLIPWAY_CREDENTIALS_FILE": credFile}, "", "login", "--api-url", f.URL, "--token", "wrong")
	if r.err == nil || !strings.Contains(r.err.Error(), "Invalid credentials") {
		t.Fatalf("err = %v", r.err)
	}
	if _, err := os.Stat(credFile); err == nil {
		t.Error("credentials were saved despite the failed check")
	}
}

func TestLoginRejectsBadURL(t *testing.T) {
	r := run(t, map[string]string{}, "", "login", "--api-url", "node1:5000", "--token", "t")
	if r.err == nil || !strings.Contains(r.err.Error(), "http://") {
		t.Fatalf("err = %v", r.err)
	}
}

// TestCommandsHaveHelp checks every client command has a Short, Long and
// Example text, and that no name or alias is taken twice in the binary.
func TestCommandsHaveHelp(t *testing.T) {
	root := &cobra.Command{Use: "slipway"}
	addClientCommandsWith(root, &clientEnv{getenv: func(string) string { return "" }})
	for _, c := range root.Commands() {
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("%s lacks Short, Long or Example", c.Name())
		}
	}
	seen := map[string]string{}
	for _, c := range newRootCommand().Commands() {
		for _, n := range append([]string{c.Name()}, c.Aliases...) {
			if other, dup := seen[n]; dup {
				t.Errorf("%q names both %s and %s", n, other, c.Name())
			}
			seen[n] = c.Name()
		}
	}
}
