package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// fakeBackend applies commands straight to a real FSM (no Raft).
type fakeBackend struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
	fail  error // when set, Submit fails with it (a lost leader)
}

func (b *fakeBackend) Snap() *fsm.Snap { return b.f.Snap() }
func (b *fakeBackend) Submit(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	enc, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	b.index++
	return b.f.ApplyCommand(b.index, enc), nil
}
func (b *fakeBackend) Linearize(context.Context) error { return nil }
func (b *fakeBackend) Cluster() Cluster                { return fakeCluster{} }

type fakeCluster struct{}

func (fakeCluster) Name() string                        { return "n1" }
func (fakeCluster) Region() string                      { return "local" }
func (fakeCluster) Members() []cluster.Member           { return nil }
func (fakeCluster) Status() (cluster.RaftStatus, error) { return cluster.RaftStatus{Leader: "n1"}, nil }
func (fakeCluster) Regions() []string                   { return []string{"local"} }

const testToken = "slw_test_token_0123456789"

type env struct {
	t   *testing.T
	b   *fakeBackend
	srv *Server
}

func newEnv(t testing.TB) *env {
	f, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{f: f}
	s := New(b, Options{Domain: "localhost", APIURL: "http://127.0.0.1:5000", RouterURL: "http://127.0.0.1:5005"})
	cmd, _ := fsm.NewCommand(fsm.CmdAdminBootstrap, uuid.NewString(), time.Now(), "", fsm.AdminBootstrap{
		User:  fsm.User{ID: uuid.NewString(), Email: "admin@localhost"},
		Token: fsm.Token{ID: uuid.NewString(), Hash: HashToken(testToken)},
	})
	if res, err := b.Submit(context.Background(), cmd); err != nil || res.Err != nil {
		t.Fatalf("bootstrap: %v %v", err, res.Err)
	}
	tt, _ := t.(*testing.T)
	return &env{t: tt, b: b, srv: s}
}

type resp struct {
	status int
	hdr    http.Header
	body   []byte
}

func (r resp) json(v any) error { return json.Unmarshal(r.body, v) }

func (e *env) do(method, path, body string, hdr ...string) resp {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Accept", "application/vnd.heroku+json; version=3")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	b, _ := io.ReadAll(w.Result().Body)
	return resp{status: w.Code, hdr: w.Header(), body: b}
}

func (e *env) must(status int, method, path, body string, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	return r
}

func (e *env) errID(status int, id, method, path, body string, hdr ...string) Error {
	e.t.Helper()
	r := e.must(status, method, path, body, hdr...)
	var er Error
	if err := r.json(&er); err != nil || er.ID != id || er.Message == "" {
		e.t.Fatalf("%s %s: error body %s, want id %s", method, path, r.body, id)
	}
	return er
}

func (e *env) state() string {
	var buf bytes.Buffer
	s := e.b.f.Snap()
	for _, a := range s.Apps() {
		fmt.Fprintf(&buf, "%+v %v %d %v\n", *a, s.Config(a.ID), len(s.Releases(a.ID)), len(s.Domains(a.ID)))
	}
	return buf.String()
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, auth := range []string{"", "Bearer nope", "Basic " + "Og=="} {
		req := httptest.NewRequest("GET", "/apps", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"unauthorized"`) {
			t.Fatalf("auth %q: %d %s", auth, w.Code, w.Body)
		}
	}
	// Basic auth with the token as password works (git, netrc).
	req := httptest.NewRequest("GET", "/account", nil)
	req.SetBasicAuth("anyone", testToken)
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "admin@localhost") {
		t.Fatalf("basic auth: %d %s", w.Code, w.Body)
	}
	// Health needs no token.
	req = httptest.NewRequest("GET", "/health", nil)
	w = httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Fatalf("health: %d", w.Code)
	}
}

func TestAcceptHeader(t *testing.T) {
	e := newEnv(t)
	e.errID(406, "not_acceptable", "GET", "/apps", "", "Accept", "application/vnd.heroku+json; version=2")
	e.errID(406, "not_acceptable", "GET", "/apps", "", "Accept", "text/html")
	for _, ok := range []string{"application/vnd.heroku+json; version=3.sdk", "application/json", "*/*"} {
		e.must(200, "GET", "/apps", "", "Accept", ok)
	}
}

func TestAppLifecycle(t *testing.T) {
	e := newEnv(t)
	var app App
	if err := e.must(201, "POST", "/apps", `{"name":"demo"}`).json(&app); err != nil {
		t.Fatal(err)
	}
	if app.Name != "demo" || app.WebURL != "http://demo.localhost:5005/" || app.GitURL != "http://127.0.0.1:5000/demo.git" ||
		app.Owner.Email != "admin@localhost" || app.Region.Name != "local" || app.Stack.Name != "host" || app.CreateStatus != "complete" {
		t.Fatalf("app = %+v", app)
	}
	// Generated names.
	var gen App
	e.must(201, "POST", "/apps", `{}`).json(&gen)
	if fsm.ValidAppName(gen.Name) != nil || gen.Name == "" {
		t.Fatalf("generated name %q", gen.Name)
	}
	e.must(200, "GET", "/apps/"+app.ID, "")
	e.must(200, "GET", "/users/~/apps", "")
	var renamed App
	e.must(200, "PATCH", "/apps/demo", `{"name":"demo2","maintenance":true}`).json(&renamed)
	if renamed.Name != "demo2" || !renamed.Maintenance || renamed.WebURL != "http://demo2.localhost:5005/" {
		t.Fatalf("renamed = %+v", renamed)
	}
	e.errID(404, "not_found", "GET", "/apps/demo", "")
	e.must(200, "DELETE", "/apps/demo2", "")
	e.errID(404, "not_found", "GET", "/apps/demo2", "")
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	e.must(201, "POST", "/apps", `{"name":"other"}`)
	before := e.state()
	cases := []struct {
		status       int
		id           string
		method, path string
		body         string
	}{
		{422, "invalid_params", "POST", "/apps", `{"name":"demo"}`},
		{422, "invalid_params", "POST", "/apps", `{"name":"Bad_Name"}`},
		{422, "invalid_params", "POST", "/apps", `{"name":"ab"}`},
		{400, "bad_request", "POST", "/apps", `{"name":`},
		{400, "bad_request", "POST", "/apps", `{"name":"x1x","bogus":1}`},
		{400, "bad_request", "POST", "/apps", `{"name":"xyz"} {"name":"zzz"}`},
		{400, "bad_request", "POST", "/apps", `{"name":123}`},
		{404, "not_found", "POST", "/apps", `{"stack":"nope"}`},
		{404, "not_found", "POST", "/apps", `{"region":"mars"}`},
		{422, "invalid_params", "PATCH", "/apps/demo", `{"name":"other"}`},
		{404, "not_found", "PATCH", "/apps/nope", `{"maintenance":true}`},
		{422, "invalid_params", "PATCH", "/apps/demo/config-vars", `{"bad-key":"1"}`},
		{422, "invalid_params", "PATCH", "/apps/demo/config-vars", `{"A":1}`},
		{422, "invalid_params", "PATCH", "/apps/demo/config-vars", `{"A":"` + strings.Repeat("x", fsm.MaxConfigTotalLen) + `"}`},
		{400, "bad_request", "PATCH", "/apps/demo/config-vars", `["A"]`},
		{404, "not_found", "GET", "/apps/demo/releases/v99", ``},
		{404, "not_found", "POST", "/apps/demo/releases", `{"release":"99"}`},
		{422, "invalid_params", "POST", "/apps/demo/releases", `{}`},
		{404, "not_found", "PATCH", "/apps/demo/formation", `{"updates":[{"type":"web","quantity":1}]}`},
		{422, "invalid_params", "PATCH", "/apps/demo/formation", `{"updates":[]}`},
		{400, "bad_request", "PATCH", "/apps/demo/formation", `{"updates":[{"type":"web","quantity":"many"}]}`},
		{422, "invalid_params", "POST", "/apps/demo/domains", `{"hostname":"not a host"}`},
		{422, "invalid_params", "DELETE", "/apps/demo/domains/demo.localhost", ``},
		{404, "not_found", "PATCH", "/apps/demo/features/nope", `{"enabled":true}`},
		{422, "invalid_params", "PATCH", "/apps/demo/features/runtime-dyno-metadata", `{}`},
		{404, "not_found", "POST", "/cluster/nodes/nope/drain", `{}`},
		{416, "requested_range_not_satisfiable", "GET", "/apps/demo/releases", ``},
	}
	for _, c := range cases {
		var hdr []string
		if c.status == 416 {
			hdr = []string{"Range", "bogus ..; max=1"}
		}
		e.errID(c.status, c.id, c.method, c.path, c.body, hdr...)
	}
	if after := e.state(); after != before {
		t.Fatalf("rejected requests changed state:\nbefore %s\nafter  %s", before, after)
	}
	big := `{"A":"` + strings.Repeat("x", 2<<20) + `"}`
	e.errID(413, "request_too_large", "PATCH", "/apps/demo/config-vars", big)
}

func TestNoLeaderIs503AndChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	before := e.state()
	e.b.fail = fmt.Errorf("apply: %w", cluster.ErrNoLeader)
	er := e.errID(503, "unavailable", "PATCH", "/apps/demo/config-vars", `{"A":"1"}`)
	if !strings.Contains(er.Message, "leader") {
		t.Fatalf("message %q", er.Message)
	}
	e.b.fail = nil
	if e.state() != before {
		t.Fatalf("state changed")
	}
}

func TestConfigReleasesAndRollback(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	var cfg map[string]string
	e.must(200, "PATCH", "/apps/demo/config-vars", `{"A":"1","B":"two"}`).json(&cfg)
	if cfg["A"] != "1" || cfg["B"] != "two" {
		t.Fatalf("config = %v", cfg)
	}
	cfg = nil
	e.must(200, "PATCH", "/apps/demo/config-vars", `{"B":null}`).json(&cfg)
	if _, ok := cfg["B"]; ok || len(cfg) != 1 {
		t.Fatalf("null did not delete: %v", cfg)
	}
	var rels []Release
	e.must(206, "GET", "/apps/demo/releases", "", "Range", "version ..; order=desc,max=1").json(&rels)
	if len(rels) != 1 || rels[0].Version != 3 || !rels[0].Current || !rels[0].EligibleForRollback {
		t.Fatalf("newest = %+v", rels)
	}
	var v1 Release
	e.must(200, "GET", "/apps/demo/releases/1", "").json(&v1)
	var rb Release
	e.must(201, "POST", "/apps/demo/releases", fmt.Sprintf(`{"release":%q}`, v1.ID)).json(&rb)
	if rb.Version != 4 || rb.Description != "Rollback to v1" || !rb.Current {
		t.Fatalf("rollback = %+v", rb)
	}
	cfg = nil
	e.must(200, "GET", "/apps/demo/config-vars", "").json(&cfg)
	if len(cfg) != 0 {
		t.Fatalf("config after rollback to v1 = %v", cfg)
	}
	var old map[string]string
	e.must(200, "GET", "/apps/demo/releases/v2/config-vars", "").json(&old)
	if old["A"] != "1" || old["B"] != "two" {
		t.Fatalf("v2 config = %v", old)
	}
}

func TestRangePaging(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	for i := 0; i < 9; i++ {
		e.must(200, "PATCH", "/apps/demo/config-vars", fmt.Sprintf(`{"K":"%d"}`, i))
	}
	// 10 releases, pages of 4, newest first, following Next-Range.
	var versions []int
	rng := "version ..; max=4, order=desc"
	for pages := 0; ; pages++ {
		r := e.do("GET", "/apps/demo/releases", "", "Range", rng)
		var rels []Release
		if err := r.json(&rels); err != nil {
			t.Fatal(err)
		}
		for _, rel := range rels {
			versions = append(versions, rel.Version)
		}
		next := r.hdr.Get("Next-Range")
		if next == "" {
			if r.status != 200 {
				t.Fatalf("last page status %d", r.status)
			}
			break
		}
		if r.status != 206 || pages > 5 {
			t.Fatalf("status %d, pages %d", r.status, pages)
		}
		rng = next
	}
	if fmt.Sprint(versions) != "[10 9 8 7 6 5 4 3 2 1]" {
		t.Fatalf("versions = %v", versions)
	}
	// Without Range: everything, ascending, 200.
	var all []Release
	r := e.must(200, "GET", "/apps/demo/releases", "")
	r.json(&all)
	if len(all) != 10 || all[0].Version != 1 || r.hdr.Get("Next-Range") != "" {
		t.Fatalf("unranged list: %d releases, first v%d", len(all), all[0].Version)
	}
}

func TestFormationQuantities(t *testing.T) {
	e := newEnv(t)
	var app App
	e.must(201, "POST", "/apps", `{"name":"demo"}`).json(&app)
	// Deploy a slug (the slug API arrives with dynos; use a command here).
	slugID := uuid.NewString()
	for _, c := range []struct {
		typ  string
		data any
	}{
		{fsm.CmdSlugCreate, fsm.SlugCreate{Slug: fsm.Slug{ID: slugID, AppID: app.ID, ProcessTypes: map[string]string{"web": "./web", "worker": "./w"}}}},
		{fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: slugID, Digest: "sha256:" + strings.Repeat("0", 64), Size: 1}},
		{fsm.CmdReleaseCreate, fsm.ReleaseCreate{AppID: app.ID, ReleaseID: uuid.NewString(), SlugID: slugID}},
	} {
		cmd, _ := fsm.NewCommand(c.typ, uuid.NewString(), time.Now(), "", c.data)
		if res, err := e.b.Submit(context.Background(), cmd); err != nil || res.Err != nil {
			t.Fatalf("%s: %v %v", c.typ, err, res.Err)
		}
	}
	var f []Formation
	e.must(200, "PATCH", "/apps/demo/formation", `{"updates":[{"type":"web","quantity":"3","size":"Standard-2X"},{"type":"worker","quantity":"+2"}]}`).json(&f)
	if len(f) != 2 || f[0].Quantity != 3 || f[0].Size != "Standard-2X" || f[1].Quantity != 2 {
		t.Fatalf("formation = %+v", f)
	}
	var one Formation
	e.must(200, "PATCH", "/apps/demo/formation/worker", `{"quantity":"-1"}`).json(&one)
	if one.Quantity != 1 {
		t.Fatalf("worker = %+v", one)
	}
	e.errID(422, "invalid_params", "PATCH", "/apps/demo/formation/worker", `{"quantity":"-5"}`)
	e.must(200, "PATCH", "/apps/demo/formation/web", `{"dyno_size":{"name":"basic"}}`).json(&one)
	if one.Size != "Basic" || one.Quantity != 3 {
		t.Fatalf("web = %+v", one)
	}
}

func TestDomainsAndFeatures(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/apps", `{"name":"demo"}`)
	var d Domain
	e.must(201, "POST", "/apps/demo/domains", `{"hostname":"www.example.com","sni_endpoint":null}`).json(&d)
	if d.Kind != "custom" || d.CName == nil || *d.CName != "demo.localhost" || d.Status != "none" {
		t.Fatalf("domain = %+v", d)
	}
	e.errID(422, "invalid_params", "POST", "/apps/demo/domains", `{"hostname":"www.example.com"}`)
	var ds []Domain
	e.must(200, "GET", "/apps/demo/domains", "", "Range", "id ..; max=1000;").json(&ds)
	if len(ds) != 2 {
		t.Fatalf("domains = %+v", ds)
	}
	e.must(200, "DELETE", "/apps/demo/domains/www.example.com", "")
	var feat AppFeature
	e.must(200, "PATCH", "/apps/demo/features/runtime-dyno-metadata", `{"enabled":true}`).json(&feat)
	if !feat.Enabled {
		t.Fatalf("feature = %+v", feat)
	}
	e.errID(404, "not_found", "GET", "/account/features/runtime-dyno-metadata", "")
	e.must(200, "GET", "/apps/demo/addons", "")
	e.must(200, "GET", "/apps/demo/sni-endpoints", "")
}

func TestNonAdminCannotUseClusterEndpoints(t *testing.T) {
	e := newEnv(t)
	u := fsm.User{ID: uuid.NewString(), Email: "dev@localhost"}
	for _, c := range []struct {
		typ  string
		data any
	}{
		{fsm.CmdUserCreate, fsm.UserCreate{User: u}},
		{fsm.CmdTokenCreate, fsm.TokenCreate{Token: fsm.Token{ID: uuid.NewString(), UserID: u.ID, Hash: HashToken("slw_dev_token_0123456789")}}},
	} {
		cmd, _ := fsm.NewCommand(c.typ, uuid.NewString(), time.Now(), "", c.data)
		e.b.Submit(context.Background(), cmd)
	}
	req := httptest.NewRequest("GET", "/cluster/nodes", nil)
	req.Header.Set("Authorization", "Bearer slw_dev_token_0123456789")
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, req)
	if w.Code != 403 {
		t.Fatalf("non-admin got %d", w.Code)
	}
}

// FuzzRequestBodies posts arbitrary bodies to every write endpoint: the API
// must never answer 5xx, and a rejected request must leave the state alone.
func FuzzRequestBodies(f *testing.F) {
	seeds := []string{`{"name":"abc"}`, `{"A":"1","B":null}`, `{"updates":[{"type":"web","quantity":"+1"}]}`,
		`{"hostname":"a.b.c"}`, `{"enabled":true}`, `{"release":"1"}`, `{"maintenance":true,"name":"zz9"}`, `[]`, `null`, `{"draining":false}`}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		e := newEnv(t)
		e.must(201, "POST", "/apps", `{"name":"demo"}`)
		targets := []struct{ method, path string }{
			{"POST", "/apps"}, {"PATCH", "/apps/demo"}, {"PATCH", "/apps/demo/config-vars"},
			{"PATCH", "/apps/demo/formation"}, {"PATCH", "/apps/demo/formation/web"}, {"POST", "/apps/demo/domains"},
			{"PATCH", "/apps/demo/features/runtime-dyno-metadata"}, {"POST", "/apps/demo/releases"},
			{"POST", "/cluster/nodes/n1/drain"},
		}
		tg := targets[int(which)%len(targets)]
		before := e.state()
		r := e.do(tg.method, tg.path, body)
		if r.status >= 500 {
			t.Fatalf("%s %s %q: %d %s", tg.method, tg.path, body, r.status, r.body)
		}
		if r.status >= 400 {
			var er Error
			if err := r.json(&er); err != nil || er.ID == "" || er.Message == "" {
				t.Fatalf("error without id/message: %s", r.body)
			}
			if e.state() != before {
				t.Fatalf("rejected %s %s %q changed the state", tg.method, tg.path, body)
			}
		}
	})
}
