package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

type harness struct {
	t     *testing.T
	f     *FSM
	index uint64
	now   time.Time
	user  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, f: f, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), user: uuid.NewString()}
}

func (h *harness) cmd(typ string, data any) Command {
	h.t.Helper()
	h.now = h.now.Add(time.Second)
	c, err := NewCommand(typ, uuid.NewString(), h.now, h.user, data)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) applyCmd(c Command) *Result {
	h.t.Helper()
	b, err := c.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	return h.f.ApplyCommand(h.index, b)
}

func (h *harness) apply(typ string, data any) *Result {
	h.t.Helper()
	return h.applyCmd(h.cmd(typ, data))
}

func (h *harness) ok(typ string, data any, into any) {
	h.t.Helper()
	r := h.apply(typ, data)
	if err := r.Decode(into); err != nil {
		h.t.Fatalf("%s: %v", typ, err)
	}
}

func (h *harness) fails(code string, typ string, data any) *Error {
	h.t.Helper()
	r := h.apply(typ, data)
	if r.Err == nil {
		h.t.Fatalf("%s succeeded, want %s error", typ, code)
	}
	if r.Err.Code != code {
		h.t.Fatalf("%s: got error %v, want code %s", typ, r.Err, code)
	}
	return r.Err
}

func (h *harness) createApp(name string) *App {
	h.t.Helper()
	var app App
	h.ok(CmdAppCreate, AppCreate{
		App:       App{ID: uuid.NewString(), Name: name, Region: "local", OwnerID: h.user},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: name + ".localhost",
	}, &app)
	return &app
}

func (h *harness) setConfig(appID string, kv ...string) *ConfigUpdateResult {
	h.t.Helper()
	ch := map[string]*string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<nil>" {
			ch[kv[i]] = nil
			continue
		}
		v := kv[i+1]
		ch[kv[i]] = &v
	}
	var res ConfigUpdateResult
	h.ok(CmdConfigUpdate, ConfigUpdate{AppID: appID, Changes: ch, ReleaseID: uuid.NewString()}, &res)
	return &res
}

func (h *harness) deploy(appID string, types map[string]string) *Release {
	h.t.Helper()
	slug := Slug{ID: uuid.NewString(), AppID: appID, ProcessTypes: types, Commit: "0123456789abcdef"}
	h.ok(CmdSlugCreate, SlugCreate{Slug: slug}, nil)
	h.ok(CmdSlugUploaded, SlugUploaded{SlugID: slug.ID, Digest: "sha256:" + strings.Repeat("0", 64), Size: 1}, nil)
	var rel Release
	h.ok(CmdReleaseCreate, ReleaseCreate{AppID: appID, ReleaseID: uuid.NewString(), SlugID: slug.ID}, &rel)
	return &rel
}

func (h *harness) snapshot() []byte {
	h.t.Helper()
	s, err := h.f.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.(*fsmSnapshot).write(&buf); err != nil {
		h.t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAppCreateMakesInitialReleaseAndDefaultDomain(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	s := h.f.Snap()
	got, ok := s.App("demo")
	if !ok || got.ID != app.ID {
		t.Fatalf("app not found by name")
	}
	if _, ok := s.App(app.ID); !ok {
		t.Fatalf("app not found by id")
	}
	rels := s.Releases(app.ID)
	if len(rels) != 1 || rels[0].Version != 1 || rels[0].Description != "Initial release" || rels[0].Status != ReleaseSucceeded {
		t.Fatalf("releases = %+v", rels)
	}
	if cur := s.CurrentRelease(app.ID); cur == nil || cur.Version != 1 {
		t.Fatalf("current release = %+v", cur)
	}
	d := s.Domains(app.ID)
	if len(d) != 1 || d[0].Hostname != "demo.localhost" || d[0].Kind != DomainKindHeroku {
		t.Fatalf("domains = %+v", d)
	}
	if app.Stack != DefaultStack || app.Epoch != 1 {
		t.Fatalf("defaults not applied: %+v", app)
	}
}

func TestAppCreateRejectsTakenAndInvalidNamesWithoutChanges(t *testing.T) {
	h := newHarness(t)
	h.createApp("demo")
	before := h.snapshotWithoutRequests()
	e := h.fails(CodeInvalidParams, CmdAppCreate, AppCreate{
		App:       App{ID: uuid.NewString(), Name: "demo", Region: "local"},
		ReleaseID: uuid.NewString(),
	})
	if e.Message != "Name is already taken" {
		t.Fatalf("message = %q", e.Message)
	}
	for _, bad := range []string{"Demo", "1abc", "ab", "a-", strings.Repeat("a", 31), "a_b", ""} {
		h.fails(CodeInvalidParams, CmdAppCreate, AppCreate{
			App: App{ID: uuid.NewString(), Name: bad, Region: "local"}, ReleaseID: uuid.NewString(),
		})
	}
	// Requests are remembered, everything else is unchanged.
	if after := h.snapshotWithoutRequests(); !bytes.Equal(before, after) {
		t.Fatalf("rejected creates changed the state")
	}
}

func TestConfigUpdateMakesReleases(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	r := h.setConfig(app.ID, "A", "1", "B", "2")
	if r.Release == nil || r.Release.Version != 2 || r.Release.Description != "Set A, B config vars" {
		t.Fatalf("release = %+v", r.Release)
	}
	r = h.setConfig(app.ID, "A", "<nil>", "C", "3")
	if r.Release.Version != 3 || r.Release.Description != "Set C and remove A config vars" {
		t.Fatalf("release = %+v", r.Release)
	}
	want := map[string]string{"B": "2", "C": "3"}
	if got := h.f.Snap().Config(app.ID); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("config = %v", got)
	}
	// Each release keeps its own snapshot.
	v2, _ := h.f.Snap().Release(app.ID, "v2")
	if fmt.Sprint(v2.Config) != fmt.Sprint(map[string]string{"A": "1", "B": "2"}) {
		t.Fatalf("v2 config = %v", v2.Config)
	}
	// An empty change set makes no release.
	r = h.setConfig(app.ID)
	if r.Release != nil || len(h.f.Snap().Releases(app.ID)) != 3 {
		t.Fatalf("empty update made a release")
	}
}

func TestConfigUpdateValidation(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	big := strings.Repeat("x", MaxConfigTotalLen)
	for _, ch := range []map[string]*string{
		{"BAD-KEY": ptr("1")},
		{"": ptr("1")},
		{"K": ptr("a\x00b")},
		{"K": ptr(big)},
		{strings.Repeat("K", MaxConfigKeyLen+1): ptr("1")},
	} {
		h.fails(CodeInvalidParams, CmdConfigUpdate, ConfigUpdate{AppID: app.ID, Changes: ch, ReleaseID: uuid.NewString()})
	}
	if n := len(h.f.Snap().Releases(app.ID)); n != 1 {
		t.Fatalf("rejected updates made releases: %d", n)
	}
	h.fails(CodeNotFound, CmdConfigUpdate, ConfigUpdate{AppID: uuid.NewString(), Changes: map[string]*string{"A": ptr("1")}, ReleaseID: uuid.NewString()})
}

func ptr[T any](v T) *T { return &v }

func TestRollbackCopiesSlugAndConfig(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	h.setConfig(app.ID, "A", "1")                                       // v2
	rel3 := h.deploy(app.ID, map[string]string{"web": "./server"})      // v3
	h.setConfig(app.ID, "A", "2")                                       // v4
	h.deploy(app.ID, map[string]string{"web": "./server2", "w": "./w"}) // v5
	var rb Release
	h.ok(CmdReleaseRollback, ReleaseRollback{AppID: app.ID, TargetID: rel3.ID, ReleaseID: uuid.NewString()}, &rb)
	if rb.Version != 6 || rb.Description != "Rollback to v3" || rb.SlugID != rel3.SlugID || rb.Config["A"] != "1" {
		t.Fatalf("rollback release = %+v", rb)
	}
	s := h.f.Snap()
	if s.Config(app.ID)["A"] != "1" {
		t.Fatalf("config not rolled back: %v", s.Config(app.ID))
	}
	f := s.Formation(app.ID)
	if len(f) != 1 || f[0].Type != "web" || f[0].Command != "./server" {
		t.Fatalf("formation after rollback = %+v", f)
	}
	h.fails(CodeNotFound, CmdReleaseRollback, ReleaseRollback{AppID: app.ID, TargetID: uuid.NewString(), ReleaseID: uuid.NewString()})
}

func TestFormationFollowsSlugAndValidatesAtomically(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	h.fails(CodeNotFound, CmdFormationUpdate, FormationUpdate{AppID: app.ID, Updates: []FormationChange{{Type: "web", Quantity: ptr(1)}}})
	h.deploy(app.ID, map[string]string{"web": "./web", "worker": "./worker", "release": "./migrate"})
	s := h.f.Snap()
	f := s.Formation(app.ID)
	if len(f) != 2 || f[0].Type != "web" || f[0].Quantity != 1 || f[1].Type != "worker" || f[1].Quantity != 0 || f[0].Size != "Basic" {
		t.Fatalf("formation = %+v", f)
	}
	cases := []struct {
		code string
		u    []FormationChange
	}{
		{CodeNotFound, []FormationChange{{Type: "worker", Quantity: ptr(2)}, {Type: "nope", Quantity: ptr(1)}}},
		{CodeInvalidParams, []FormationChange{{Type: "worker", Quantity: ptr(2)}, {Type: "web", Quantity: ptr(-1)}}},
		{CodeInvalidParams, []FormationChange{{Type: "worker", Quantity: ptr(2)}, {Type: "web", Quantity: ptr(MaxQuantity + 1)}}},
		{CodeInvalidParams, []FormationChange{{Type: "worker", Quantity: ptr(2)}, {Type: "web", Size: ptr("huge")}}},
		{CodeInvalidParams, []FormationChange{{Type: "worker", Quantity: ptr(2)}, {Type: "worker", Quantity: ptr(3)}}},
		{CodeInvalidParams, []FormationChange{{Type: "bad type!", Quantity: ptr(2)}}},
		{CodeInvalidParams, nil},
	}
	for _, c := range cases {
		h.fails(c.code, CmdFormationUpdate, FormationUpdate{AppID: app.ID, Updates: c.u})
	}
	if w, _ := h.f.Snap().FormationType(app.ID, "worker"); w.Quantity != 0 {
		t.Fatalf("a rejected batch changed worker to %d", w.Quantity)
	}
	var out []*Formation
	h.ok(CmdFormationUpdate, FormationUpdate{AppID: app.ID, Updates: []FormationChange{{Type: "worker", Quantity: ptr(2), Size: ptr("standard-2x")}}}, &out)
	if len(out) != 1 || out[0].Quantity != 2 || out[0].Size != "Standard-2X" {
		t.Fatalf("update = %+v", out)
	}
	// A new deploy keeps quantities, drops types the slug lost.
	h.deploy(app.ID, map[string]string{"web": "./web2"})
	f = h.f.Snap().Formation(app.ID)
	if len(f) != 1 || f[0].Command != "./web2" || f[0].Quantity != 1 {
		t.Fatalf("formation after deploy = %+v", f)
	}
}

func TestReleaseLookup(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	r := h.setConfig(app.ID, "A", "1").Release
	s := h.f.Snap()
	for _, key := range []string{r.ID, "2", "v2"} {
		if got, ok := s.Release(app.ID, key); !ok || got.ID != r.ID {
			t.Fatalf("Release(%q) = %v, %v", key, got, ok)
		}
	}
	other := h.createApp("other")
	if _, ok := h.f.Snap().Release(other.ID, r.ID); ok {
		t.Fatalf("found another app's release")
	}
	if _, ok := s.Release(app.ID, "v9"); ok {
		t.Fatalf("found missing version")
	}
}

func TestDomainsAndRename(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	other := h.createApp("other")
	d := Domain{ID: uuid.NewString(), AppID: app.ID, Hostname: "WWW.Example.com."}
	var got Domain
	h.ok(CmdDomainCreate, DomainCreate{Domain: d}, &got)
	if got.Hostname != "www.example.com" || got.Kind != DomainKindCustom {
		t.Fatalf("domain = %+v", got)
	}
	if e := h.fails(CodeInvalidParams, CmdDomainCreate, DomainCreate{Domain: Domain{ID: uuid.NewString(), AppID: app.ID, Hostname: "www.example.com"}}); !strings.Contains(e.Message, "already added") {
		t.Fatalf("dup message %q", e.Message)
	}
	if e := h.fails(CodeInvalidParams, CmdDomainCreate, DomainCreate{Domain: Domain{ID: uuid.NewString(), AppID: other.ID, Hostname: "www.example.com"}}); !strings.Contains(e.Message, "another app") {
		t.Fatalf("taken message %q", e.Message)
	}
	for _, bad := range []string{"localhost", "exa mple.com", "-a.com", "a..com", "*.*.com", ""} {
		h.fails(CodeInvalidParams, CmdDomainCreate, DomainCreate{Domain: Domain{ID: uuid.NewString(), AppID: app.ID, Hostname: bad}})
	}
	h.ok(CmdDomainCreate, DomainCreate{Domain: Domain{ID: uuid.NewString(), AppID: app.ID, Hostname: "*.example.org"}}, nil)

	var def *Domain
	for _, d := range h.f.Snap().Domains(app.ID) {
		if d.Kind == DomainKindHeroku {
			def = d
		}
	}
	h.fails(CodeInvalidParams, CmdDomainDelete, DomainDelete{AppID: app.ID, DomainID: def.ID})
	h.ok(CmdDomainDelete, DomainDelete{AppID: app.ID, DomainID: got.ID}, nil)

	name := "renamed"
	h.ok(CmdAppUpdate, AppUpdate{AppID: app.ID, Name: &name, DefaultHostname: "renamed.localhost"}, nil)
	s := h.f.Snap()
	if _, ok := s.App("demo"); ok {
		t.Fatalf("old name still resolves")
	}
	if d, ok := s.DomainByHostname("renamed.localhost"); !ok || d.AppID != app.ID {
		t.Fatalf("default domain not renamed")
	}
	taken := "other"
	h.fails(CodeInvalidParams, CmdAppUpdate, AppUpdate{AppID: app.ID, Name: &taken, DefaultHostname: "other.localhost"})
}

func TestAppDeleteRemovesEverything(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	keep := h.createApp("keep")
	h.setConfig(app.ID, "A", "1")
	h.deploy(app.ID, map[string]string{"web": "x"})
	h.ok(CmdFeatureSet, FeatureSet{AppID: app.ID, Name: "runtime-dyno-metadata", Enabled: true}, nil)
	h.ok(CmdAppDelete, AppDelete{AppID: app.ID}, nil)
	s := h.f.Snap()
	if len(s.Releases(app.ID)) != 0 || len(s.Domains(app.ID)) != 0 || len(s.Formation(app.ID)) != 0 || s.Config(app.ID) != nil || len(s.Slugs(app.ID)) != 0 {
		t.Fatalf("app records left behind")
	}
	if _, ok := s.App(keep.ID); !ok || len(s.Releases(keep.ID)) != 1 {
		t.Fatalf("other app damaged")
	}
	h.fails(CodeNotFound, CmdAppDelete, AppDelete{AppID: app.ID})
}

func TestRetriedCommandAppliesOnce(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	v := "1"
	c := h.cmd(CmdConfigUpdate, ConfigUpdate{AppID: app.ID, Changes: map[string]*string{"A": &v}, ReleaseID: uuid.NewString()})
	r1 := h.applyCmd(c)
	r2 := h.applyCmd(c)
	if r1.Err != nil || r2.Err != nil || string(r1.Value) != string(r2.Value) || r1.Index != r2.Index {
		t.Fatalf("retry result differs: %+v vs %+v", r1, r2)
	}
	if n := len(h.f.Snap().Releases(app.ID)); n != 2 {
		t.Fatalf("releases = %d, want 2", n)
	}
	// Failed commands are remembered too.
	bad := h.cmd(CmdAppDelete, AppDelete{AppID: uuid.NewString()})
	if a, b := h.applyCmd(bad), h.applyCmd(bad); a.Err == nil || b.Err == nil || a.Index != b.Index {
		t.Fatalf("failed retry: %+v %+v", a, b)
	}
}

func TestRequestsAreForgottenAfterTTL(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	h.now = h.now.Add(2 * requestTTL)
	h.setConfig(app.ID, "A", "1")
	if n := h.f.Snap().Count(tRequests); n != 1 {
		t.Fatalf("requests remembered = %d, want 1", n)
	}
}

func TestSnapshotRestoreRoundTripAndDeterminism(t *testing.T) {
	h1, h2 := newHarness(t), newHarness(t)
	var log []Command
	rec := func(h *harness, typ string, data any) {
		c := h.cmd(typ, data)
		log = append(log, c)
		h.applyCmd(c)
	}
	app := App{ID: uuid.NewString(), Name: "demo", Region: "local"}
	rec(h1, CmdAppCreate, AppCreate{App: app, ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "demo.localhost"})
	for i := 0; i < 20; i++ {
		v := fmt.Sprint(i)
		rec(h1, CmdConfigUpdate, ConfigUpdate{AppID: app.ID, Changes: map[string]*string{fmt.Sprintf("K%d", i%5): &v, "X": nil}, ReleaseID: uuid.NewString()})
	}
	rec(h1, CmdUserCreate, UserCreate{User: User{ID: uuid.NewString(), Email: "a@b.c"}})
	rec(h1, CmdNodeUpsert, NodeUpsert{Name: "n1", Region: "local", Zone: "a"})
	for _, c := range log {
		h2.applyCmd(c)
	}
	s1, s2 := h1.snapshot(), h2.snapshot()
	if !bytes.Equal(s1, s2) {
		t.Fatalf("same log, different state")
	}

	// Restore into a fresh FSM, watchers of the old state are woken.
	h3 := newHarness(t)
	ws := h3.f.Snap().Watch(tApps)
	if err := h3.f.Restore(io.NopCloser(bytes.NewReader(s1))); err != nil {
		t.Fatal(err)
	}
	if timedOut := ws.Watch(time.After(5 * time.Second)); timedOut {
		t.Fatalf("restore did not wake watchers")
	}
	if got := h3.snapshot(); !bytes.Equal(got, s1) {
		t.Fatalf("restored state differs")
	}
	if h3.f.AppliedIndex() != h1.f.AppliedIndex() {
		t.Fatalf("applied index %d, want %d", h3.f.AppliedIndex(), h1.f.AppliedIndex())
	}
	if got := h3.f.Snap().Config(app.ID); len(got) != 5 {
		t.Fatalf("restored config = %v", got)
	}
}

func TestRestoreSkipsUnknownTablesAndRefusesNewerFormat(t *testing.T) {
	h := newHarness(t)
	h.createApp("demo")
	snap := h.snapshot()
	extra := append(append([]byte{}, snap...), []byte(`{"t":"future_table","o":{"id":"x"}}`+"\n")...)
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(bytes.NewReader(extra))); err != nil {
		t.Fatalf("restore with unknown table: %v", err)
	}
	if _, ok := h2.f.Snap().App("demo"); !ok {
		t.Fatalf("app lost")
	}
	newer := []byte(`{"format":"slipway-fsm","version":99,"index":1}` + "\n")
	if err := h2.f.Restore(io.NopCloser(bytes.NewReader(newer))); err == nil {
		t.Fatalf("restored a snapshot from the future")
	}
	if _, ok := h2.f.Snap().App("demo"); !ok {
		t.Fatalf("failed restore damaged state")
	}
	if err := h2.f.Restore(io.NopCloser(strings.NewReader("garbage"))); err == nil {
		t.Fatalf("restored garbage")
	}
}

func TestWatchFiresOnTableChange(t *testing.T) {
	h := newHarness(t)
	ws := h.f.Snap().Watch(tApps)
	quiet := h.f.Snap().Watch(tNodes)
	h.createApp("demo")
	if ws.Watch(time.After(5 * time.Second)) {
		t.Fatalf("apps watch did not fire")
	}
	if !quiet.Watch(time.After(50 * time.Millisecond)) {
		t.Fatalf("nodes watch fired on an apps change")
	}
}

func TestUndecodableAndUnknownCommands(t *testing.T) {
	h := newHarness(t)
	for _, b := range [][]byte{nil, []byte("{"), []byte(`{"type":"x"}`), []byte(`{"type":"nope","v":1,"id":"1"}`), []byte(`{"type":"app.create","v":2,"id":"1"}`)} {
		h.index++
		if r := h.f.ApplyCommand(h.index, b); r.Err == nil {
			t.Fatalf("applied %q", b)
		}
	}
	if h.f.Snap().Count(tApps) != 0 {
		t.Fatalf("state changed")
	}
}

func TestNodesAndTokens(t *testing.T) {
	h := newHarness(t)
	h.ok(CmdNodeUpsert, NodeUpsert{Name: "n1", Region: "local", Zone: "a", Version: "1"}, nil)
	h.ok(CmdNodeDrain, NodeDrain{Name: "n1", Draining: true}, nil)
	h.ok(CmdNodeUpsert, NodeUpsert{Name: "n1", Region: "local", Zone: "a", Version: "2"}, nil)
	n, _ := h.f.Snap().Node("n1")
	if !n.Draining || n.Version != "2" {
		t.Fatalf("node = %+v", n)
	}
	h.fails(CodeNotFound, CmdNodeDrain, NodeDrain{Name: "nope", Draining: true})
	u := User{ID: uuid.NewString(), Email: "admin@localhost", Admin: true}
	h.ok(CmdUserCreate, UserCreate{User: u}, nil)
	h.fails(CodeInvalidParams, CmdUserCreate, UserCreate{User: User{ID: uuid.NewString(), Email: "admin@localhost"}})
	hash := strings.Repeat("ab", 32)
	tok := Token{ID: uuid.NewString(), UserID: u.ID, Hash: hash}
	h.ok(CmdTokenCreate, TokenCreate{Token: tok}, nil)
	if got, ok := h.f.Snap().TokenByHash(hash); !ok || got.UserID != u.ID {
		t.Fatalf("token lookup failed")
	}
	h.fails(CodeConflict, CmdTokenCreate, TokenCreate{Token: Token{ID: uuid.NewString(), UserID: u.ID, Hash: hash}})
	h.ok(CmdTokenDelete, TokenDelete{TokenID: tok.ID}, nil)
	if _, ok := h.f.Snap().TokenByHash(hash); ok {
		t.Fatalf("revoked token still found")
	}
	h.ok(CmdMetaSet, MetaSet{Key: "k", Value: json.RawMessage(`1`), IfAbsent: true}, nil)
	h.fails(CodeConflict, CmdMetaSet, MetaSet{Key: "k", Value: json.RawMessage(`2`), IfAbsent: true})
}

func TestResultDecodeReturnsError(t *testing.T) {
	r := &Result{Err: &Error{Code: CodeNotFound, Message: "x"}}
	err := r.Decode(nil)
	if e, ok := AsError(err); !ok || e.Code != CodeNotFound {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(err, err) {
		t.Fatal()
	}
}
