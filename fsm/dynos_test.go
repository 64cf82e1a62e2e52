package fsm

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func (h *harness) newDyno(app *App, rel *Release, name string) Dyno {
	typ, _, _ := strings.Cut(name, ".")
	return Dyno{ID: uuid.NewString(), AppID: app.ID, Name: name, Type: typ, Command: "./web", Size: "Basic", ReleaseID: rel.ID, Version: rel.Version}
}

func TestDynoPlanLifecycle(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	rel := h.deploy(app.ID, map[string]string{"web": "./web"})
	d := h.newDyno(app, rel, "web.1")
	inst := uuid.NewString()
	var res DynoPlanResult
	h.ok(CmdDynoPlan, DynoPlan{Create: []Dyno{d}, Place: []Placement{{ID: d.ID, Node: "n1", Zone: "a", Addr: "10.0.0.1", Port: 20001, Instance: inst}}}, &res)
	if res.Created != 1 || res.Placed != 1 {
		t.Fatalf("plan result %+v", res)
	}
	got, _ := h.f.Snap().DynoByID(d.ID)
	if got.State != DynoStarting || got.Node != "n1" || got.Port != 20001 || got.Instance != inst {
		t.Fatalf("dyno = %+v", got)
	}
	if len(h.f.Snap().NodeDynos("n1")) != 1 {
		t.Fatalf("node index")
	}
	// A report about another instance is refused and changes nothing.
	h.fails(CodeConflict, CmdDynoReport, DynoReport{ID: d.ID, Instance: "old", Node: "n1", State: DynoUp})
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoUp}, nil)
	got, _ = h.f.Snap().DynoByID(d.ID)
	if got.State != DynoUp || got.UpAt.IsZero() {
		t.Fatalf("after up: %+v", got)
	}
	// Crash: counted; exit status and reason kept.
	one := 1
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoCrashed, ExitStatus: &one, Reason: "Process exited with status 1"}, nil)
	got, _ = h.f.Snap().DynoByID(d.ID)
	if got.State != DynoCrashed || got.Crashes != 1 || *got.ExitStatus != 1 {
		t.Fatalf("after crash: %+v", got)
	}
	// A backoff restart keeps the crash count; an operator restart resets it.
	inst2 := uuid.NewString()
	h.ok(CmdDynoPlan, DynoPlan{Restart: []Restart{{ID: d.ID, Instance: inst2}}}, nil)
	got, _ = h.f.Snap().DynoByID(d.ID)
	if got.Instance != inst2 || got.State != DynoStarting || got.Crashes != 1 || got.ExitStatus != nil {
		t.Fatalf("after restart: %+v", got)
	}
	inst3 := uuid.NewString()
	h.ok(CmdDynoRestart, DynoRestart{AppID: app.ID, Dyno: "web.1", Instances: map[string]string{d.ID: inst3}}, nil)
	got, _ = h.f.Snap().DynoByID(d.ID)
	if got.Instance != inst3 || got.Crashes != 0 {
		t.Fatalf("after ps:restart: %+v", got)
	}
	// Stop, report down, remove.
	h.ok(CmdDynoStop, DynoStop{AppID: app.ID, Dyno: "web.1"}, nil)
	got, _ = h.f.Snap().DynoByID(d.ID)
	if !got.Stop {
		t.Fatalf("not stopping")
	}
	// A stopping dyno cannot be placed or restarted again.
	h.ok(CmdDynoPlan, DynoPlan{Restart: []Restart{{ID: d.ID, Instance: uuid.NewString()}}}, &res)
	if res.Skipped != 1 {
		t.Fatalf("restart of a stopping dyno was not skipped: %+v", res)
	}
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst3, Node: "n1", State: DynoDown}, nil)
	h.ok(CmdDynoPlan, DynoPlan{Remove: []string{d.ID}}, nil)
	if len(h.f.Snap().Dynos(app.ID)) != 0 {
		t.Fatalf("dyno not removed")
	}
}

func TestCrashCountResetsAfterLongUptime(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	rel := h.deploy(app.ID, map[string]string{"web": "./web"})
	d := h.newDyno(app, rel, "web.1")
	inst := uuid.NewString()
	h.ok(CmdDynoPlan, DynoPlan{Create: []Dyno{d}, Place: []Placement{{ID: d.ID, Node: "n1", Instance: inst}}}, nil)
	for i := 0; i < 3; i++ {
		h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoUp}, nil)
		h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoCrashed}, nil)
	}
	got, _ := h.f.Snap().DynoByID(d.ID)
	if got.Crashes != 3 {
		t.Fatalf("crashes = %d", got.Crashes)
	}
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoUp}, nil)
	h.now = h.now.Add(crashResetAfter + time.Minute)
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoCrashed}, nil)
	got, _ = h.f.Snap().DynoByID(d.ID)
	if got.Crashes != 1 {
		t.Fatalf("crashes after a long uptime = %d, want 1", got.Crashes)
	}
}

func TestDynoRunValidation(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	run := Dyno{ID: uuid.NewString(), AppID: app.ID, Name: "run.1234", Command: "echo hi", Size: "Basic"}
	h.fails(CodeInvalidParams, CmdDynoRun, DynoRun{Dyno: run}) // no slug yet
	h.deploy(app.ID, map[string]string{"web": "./web"})
	for _, bad := range []Dyno{
		{ID: uuid.NewString(), AppID: app.ID, Name: "run.1", Command: " ", Size: "Basic"},
		{ID: uuid.NewString(), AppID: app.ID, Name: "run.1", Command: "x", Size: "huge"},
		{ID: uuid.NewString(), AppID: app.ID, Name: "web.1", Command: "x", Size: "Basic"},
		{ID: uuid.NewString(), AppID: app.ID, Name: "run.1", Command: "x", Size: "Basic", Env: map[string]string{"bad-key": "1"}},
	} {
		h.fails(CodeInvalidParams, CmdDynoRun, DynoRun{Dyno: bad})
	}
	var d Dyno
	h.ok(CmdDynoRun, DynoRun{Dyno: run}, &d)
	if !d.OneOff || d.Type != "run" || d.Version != 2 || d.Node != "" {
		t.Fatalf("one-off = %+v", d)
	}
	run.ID = uuid.NewString()
	h.fails(CodeConflict, CmdDynoRun, DynoRun{Dyno: run})
}

func TestAppDeleteRemovesDynosDrainsCerts(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	rel := h.deploy(app.ID, map[string]string{"web": "./web"})
	d := h.newDyno(app, rel, "web.1")
	h.ok(CmdDynoPlan, DynoPlan{Create: []Dyno{d}}, nil)
	h.ok(CmdDrainCreate, DrainCreate{Drain: LogDrain{ID: uuid.NewString(), AppID: app.ID, URL: "syslog://a:1", Token: "d." + uuid.NewString()}}, nil)
	h.ok(CmdCertPut, CertPut{Cert: Cert{ID: uuid.NewString(), AppID: app.ID, Name: "c1", ChainPEM: "x", KeyPEM: "y", Hostnames: []string{"a.b"}}}, nil)
	h.ok(CmdAppDelete, AppDelete{AppID: app.ID}, nil)
	s := h.f.Snap()
	if len(s.AllDynos()) != 0 || len(s.AllDrains()) != 0 || len(s.AllCerts()) != 0 {
		t.Fatalf("app records left")
	}
}

func TestDrainLimitsAndUniqueness(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	add := func(url string) *Result {
		return h.apply(CmdDrainCreate, DrainCreate{Drain: LogDrain{ID: uuid.NewString(), AppID: app.ID, URL: url, Token: "d." + uuid.NewString()}})
	}
	if r := add("syslog://logs.example.com:514"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := add("syslog://logs.example.com:514"); r.Err == nil || r.Err.Code != CodeInvalidParams {
		t.Fatalf("duplicate drain: %+v", r.Err)
	}
	for i := 1; i < MaxDrainsPerApp; i++ {
		if r := add("https://x.example.com/" + string(rune('a'+i))); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := add("https://x.example.com/z"); r.Err == nil {
		t.Fatalf("drain over the limit accepted")
	}
	d := h.f.Snap().Drains(app.ID)[0]
	if got, ok := h.f.Snap().Drain(app.ID, d.Token); !ok || got.ID != d.ID {
		t.Fatalf("lookup by token")
	}
	h.ok(CmdDrainDelete, DrainDelete{AppID: app.ID, DrainID: d.ID}, nil)
}

func TestBlobReplicas(t *testing.T) {
	h := newHarness(t)
	dg := "sha256:" + strings.Repeat("ab", 32)
	h.fails(CodeInvalidParams, CmdBlobReplicas, BlobReplicas{Digest: "md5:x", Add: []string{"n1"}})
	h.fails(CodeNotFound, CmdBlobReplicas, BlobReplicas{Digest: dg, Remove: []string{"n1"}})
	h.ok(CmdBlobReplicas, BlobReplicas{Digest: dg, Size: 10, Kind: "slug", Add: []string{"n2", "n1"}}, nil)
	h.ok(CmdBlobReplicas, BlobReplicas{Digest: dg, Add: []string{"n3"}, Remove: []string{"n1"}}, nil)
	b, _ := h.f.Snap().Blob(dg)
	if strings.Join(b.Replicas, ",") != "n2,n3" || b.Size != 10 {
		t.Fatalf("blob = %+v", b)
	}
	h.fails(CodeInvalidParams, CmdBlobReplicas, BlobReplicas{Digest: dg, Size: 11, Add: []string{"n4"}})
	h.ok(CmdBlobDelete, BlobDelete{Digest: dg}, nil)
	if _, ok := h.f.Snap().Blob(dg); ok {
		t.Fatalf("blob not deleted")
	}
}

func TestReleaseNeedsAnUploadedSlug(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	slug := Slug{ID: uuid.NewString(), AppID: app.ID, ProcessTypes: map[string]string{"web": "x"}}
	h.ok(CmdSlugCreate, SlugCreate{Slug: slug}, nil)
	h.fails(CodeInvalidParams, CmdReleaseCreate, ReleaseCreate{AppID: app.ID, ReleaseID: uuid.NewString(), SlugID: slug.ID})
	h.fails(CodeInvalidParams, CmdSlugUploaded, SlugUploaded{SlugID: slug.ID, Digest: "sha1:x"})
	dg := "sha256:" + strings.Repeat("1", 64)
	h.ok(CmdSlugUploaded, SlugUploaded{SlugID: slug.ID, Digest: dg, Size: 5}, nil)
	h.fails(CodeConflict, CmdSlugUploaded, SlugUploaded{SlugID: slug.ID, Digest: "sha256:" + strings.Repeat("2", 64), Size: 5})
	h.ok(CmdReleaseCreate, ReleaseCreate{AppID: app.ID, ReleaseID: uuid.NewString(), SlugID: slug.ID}, nil)
}

// Release phase runs for every new release of a slug with a release type
// (config changes and rollbacks too), and only a succeeded phase makes the
// release current.
func TestReleasePhaseOnConfigChangeAndRollback(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	v2 := h.deploy(app.ID, map[string]string{"web": "./web"}) // no release type: current at once
	slug := Slug{ID: uuid.NewString(), AppID: app.ID, ProcessTypes: map[string]string{"web": "./web2", "release": "./migrate"}}
	h.ok(CmdSlugCreate, SlugCreate{Slug: slug}, nil)
	h.ok(CmdSlugUploaded, SlugUploaded{SlugID: slug.ID, Digest: "sha256:" + strings.Repeat("3", 64), Size: 1}, nil)
	relDyno := uuid.NewString()
	var v3 Release
	h.ok(CmdReleaseCreate, ReleaseCreate{AppID: app.ID, ReleaseID: uuid.NewString(), SlugID: slug.ID, ReleaseDynoID: relDyno}, &v3)
	if v3.Status != ReleasePending || h.f.Snap().CurrentRelease(app.ID).ID != v2.ID {
		t.Fatalf("v3 = %+v, current %v", v3, h.f.Snap().CurrentRelease(app.ID).Version)
	}
	finish := func(dynoID string, status int) {
		t.Helper()
		inst := uuid.NewString()
		h.ok(CmdDynoPlan, DynoPlan{Place: []Placement{{ID: dynoID, Node: "n1", Instance: inst}}}, nil)
		st := status
		state := DynoDown
		if status != 0 {
			state = DynoCrashed
		}
		h.ok(CmdDynoReport, DynoReport{ID: dynoID, Instance: inst, Node: "n1", State: state, ExitStatus: &st}, nil)
	}
	finish(relDyno, 0)
	if cur := h.f.Snap().CurrentRelease(app.ID); cur.Version != 3 {
		t.Fatalf("after a succeeded release phase current is v%d", cur.Version)
	}
	// A config change of that slug runs the phase again; a failure leaves v3.
	var res ConfigUpdateResult
	cfgDyno := uuid.NewString()
	v := "1"
	h.ok(CmdConfigUpdate, ConfigUpdate{AppID: app.ID, Changes: map[string]*string{"A": &v}, ReleaseID: uuid.NewString(), ReleaseDynoID: cfgDyno}, &res)
	if res.Release.Status != ReleasePending {
		t.Fatalf("config release = %+v", res.Release)
	}
	finish(cfgDyno, 1)
	s := h.f.Snap()
	if cur := s.CurrentRelease(app.ID); cur.Version != 3 {
		t.Fatalf("a failed release phase made v%d current", cur.Version)
	}
	if r, _ := s.Release(app.ID, "v4"); r.Status != ReleaseFailed {
		t.Fatalf("v4 = %s", r.Status)
	}
	// A rollback to v2 (a slug without a release type) needs no phase.
	var rb Release
	h.ok(CmdReleaseRollback, ReleaseRollback{AppID: app.ID, TargetID: v2.ID, ReleaseID: uuid.NewString(), ReleaseDynoID: uuid.NewString()}, &rb)
	if rb.Status != ReleaseSucceeded || h.f.Snap().CurrentRelease(app.ID).ID != rb.ID {
		t.Fatalf("rollback to a slug without release phase = %+v", rb)
	}
	// A rollback to v3 runs it.
	var rb2 Release
	h.ok(CmdReleaseRollback, ReleaseRollback{AppID: app.ID, TargetID: v3.ID, ReleaseID: uuid.NewString(), ReleaseDynoID: uuid.NewString()}, &rb2)
	if rb2.Status != ReleasePending {
		t.Fatalf("rollback to a slug with release phase = %+v", rb2)
	}
}
