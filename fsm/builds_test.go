package fsm

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
	digestC = "sha256:" + strings.Repeat("c", 64)
)

func (h *harness) createBuild(app *App) *Build {
	h.t.Helper()
	var b Build
	h.ok(CmdBuildCreate, BuildCreate{Build: Build{ID: uuid.NewString(), AppID: app.ID, Origin: BuildFromGit, SourceVersion: "0123456789abcdef"}}, &b)
	return &b
}

func (h *harness) startBuild(b *Build) *Dyno {
	h.t.Helper()
	exp := h.now.Add(20 * time.Minute)
	d := Dyno{ID: uuid.NewString(), Command: "bin/slipway slug-compile", Size: "Performance-M", SlugDigest: digestC, ExpiresAt: &exp,
		Env: map[string]string{"SLIPWAY_BUILD_ID": b.ID}}
	h.ok(CmdBuildStart, BuildStart{BuildID: b.ID, SourceDigest: digestA, TokenHash: strings.Repeat("0", 64), Dyno: d}, nil)
	got, ok := h.f.Snap().DynoByID(d.ID)
	if !ok {
		h.t.Fatal("build dyno not created")
	}
	return got
}

func (h *harness) placeDyno(d *Dyno) string {
	h.t.Helper()
	inst := uuid.NewString()
	h.ok(CmdDynoPlan, DynoPlan{Place: []Placement{{ID: d.ID, Node: "n1", Zone: "a", Addr: "127.0.0.1", Port: 30001, Instance: inst}}}, nil)
	return inst
}

func (h *harness) finishBuild(b *Build, types map[string]string, cache string) *BuildFinishResult {
	h.t.Helper()
	var res BuildFinishResult
	h.ok(CmdBuildFinish, BuildFinish{BuildID: b.ID, Status: BuildSucceeded, ReleaseID: uuid.NewString(), ReleaseDynoID: uuid.NewString(),
		Slug: &Slug{ID: uuid.NewString(), ProcessTypes: types, BlobDigest: digestB, Size: 1234}, CacheDigest: cache, CacheSize: 99,
		OutputDigest: digestC}, &res)
	return &res
}

func TestBuildLifecycle(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	b := h.createBuild(app)
	if b.Status != BuildPending || b.Number != 1 || b.Stack != DefaultStack || b.UserID != h.user {
		t.Fatalf("new build = %+v", b)
	}
	if b2 := h.createBuild(app); b2.Number != 2 {
		t.Fatalf("second build number %d", b2.Number)
	}
	d := h.startBuild(b)
	if d.Name != "build.1" || d.Type != DynoTypeBuild || !d.OneOff || d.BuildID != b.ID || d.SlugDigest != digestC || d.ReleaseID != "" {
		t.Fatalf("build dyno = %+v", d)
	}
	// A build starts once.
	h.fails(CodeConflict, CmdBuildStart, BuildStart{BuildID: b.ID, SourceDigest: digestA, TokenHash: strings.Repeat("0", 64),
		Dyno: Dyno{ID: uuid.NewString(), Command: "x", Size: "Basic", SlugDigest: digestC}})
	h.ok(CmdBuildRunning, BuildRunning{BuildID: b.ID, OutputNode: "n2"}, nil)
	inst := h.placeDyno(d)
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoUp}, nil)

	res := h.finishBuild(b, map[string]string{"web": "bin/web", "worker": "bin/worker"}, digestA)
	snap := h.f.Snap()
	got, _ := snap.Build(b.ID)
	if got.Status != BuildSucceeded || got.SlugID == "" || got.ReleaseID != res.Release.ID || got.OutputDigest != digestC || got.FinishedAt == nil || got.OutputNode != "n2" {
		t.Fatalf("finished build = %+v", got)
	}
	if res.Release.Status != ReleaseSucceeded || res.Release.Version != 2 || res.Release.Description != "Deploy 0123456" {
		t.Fatalf("release = %+v", res.Release)
	}
	if cur := snap.CurrentRelease(app.ID); cur.ID != res.Release.ID {
		t.Fatalf("current release %v", cur)
	}
	sl, _ := snap.Slug(got.SlugID)
	if sl.BlobDigest != digestB || sl.Commit != "0123456789abcdef" || sl.Size != 1234 {
		t.Fatalf("slug = %+v", sl)
	}
	if f, ok := snap.FormationType(app.ID, "web"); !ok || f.Quantity != 1 || f.Command != "bin/web" {
		t.Fatalf("web formation %+v", f)
	}
	if r := snap.Repo(app.ID); r.CacheDigest != digestA || r.CacheSize != 99 {
		t.Fatalf("repo %+v", r)
	}
	// A finished build stays finished; the dyno's end changes nothing.
	h.fails(CodeConflict, CmdBuildFinish, BuildFinish{BuildID: b.ID, Status: BuildFailed})
	zero := 0
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoDown, ExitStatus: &zero}, nil)
	if got, _ := h.f.Snap().Build(b.ID); got.Status != BuildSucceeded {
		t.Fatalf("build changed after its dyno ended: %+v", got)
	}
}

func TestBuildDynoEndsFailBuild(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")

	// Crash before any result: failed, with the reason.
	b := h.createBuild(app)
	d := h.startBuild(b)
	inst := h.placeDyno(d)
	one := 1
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoCrashed, ExitStatus: &one, Reason: "Process exited with status 1"}, nil)
	got, _ := h.f.Snap().Build(b.ID)
	if got.Status != BuildFailed || !strings.Contains(got.Message, "status 1") {
		t.Fatalf("build after crash = %+v", got)
	}

	// Never placed, then stopped: the pending reason is the message.
	b = h.createBuild(app)
	d = h.startBuild(b)
	h.ok(CmdDynoPlan, DynoPlan{Pending: []Pending{{ID: d.ID, Reason: "no node has 2560 MB free"}}}, nil)
	h.ok(CmdDynoPlan, DynoPlan{Stop: []string{d.ID}}, nil)
	got, _ = h.f.Snap().Build(b.ID)
	if got.Status != BuildFailed || !strings.Contains(got.Message, "could not start: no node has 2560 MB free") {
		t.Fatalf("build of an unplaced dyno = %+v", got)
	}

	// Past its expiry: a timeout.
	b = h.createBuild(app)
	d = h.startBuild(b)
	inst = h.placeDyno(d)
	h.now = h.now.Add(time.Hour)
	st := 143
	h.ok(CmdDynoReport, DynoReport{ID: d.ID, Instance: inst, Node: "n1", State: DynoDown, ExitStatus: &st}, nil)
	got, _ = h.f.Snap().Build(b.ID)
	if got.Status != BuildFailed || !strings.Contains(got.Message, "time limit") {
		t.Fatalf("build after timeout = %+v", got)
	}

	// Its node lost: the scheduler removes the record.
	b = h.createBuild(app)
	d = h.startBuild(b)
	h.placeDyno(d)
	h.ok(CmdDynoPlan, DynoPlan{Remove: []string{d.ID}}, nil)
	got, _ = h.f.Snap().Build(b.ID)
	if got.Status != BuildFailed || !strings.Contains(got.Message, "node was lost") {
		t.Fatalf("build after node loss = %+v", got)
	}
	// Nothing was released by any of them.
	if cur := h.f.Snap().CurrentRelease(app.ID); cur.Version != 1 {
		t.Fatalf("current release v%d", cur.Version)
	}

	// A failure reported from outside stops the running dyno.
	b = h.createBuild(app)
	d = h.startBuild(b)
	h.placeDyno(d)
	h.ok(CmdBuildFinish, BuildFinish{BuildID: b.ID, Status: BuildFailed, Message: "boom"}, nil)
	if dd, _ := h.f.Snap().DynoByID(d.ID); !dd.Stop {
		t.Fatalf("build dyno not stopped: %+v", dd)
	}
}

func TestReleasePhase(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	h.setConfig(app.ID, "A", "1") // v2
	first := h.finishBuild(h.createBuild(app), map[string]string{"web": "bin/web"}, "")
	if first.Release.Version != 3 || first.Release.Status != ReleaseSucceeded {
		t.Fatalf("first release %+v", first.Release)
	}

	// A slug with a release command: pending, and a release dyno.
	res := h.finishBuild(h.createBuild(app), map[string]string{"web": "bin/web2", "release": "bin/migrate"}, "")
	if res.Release.Status != ReleasePending || res.Release.Version != 4 {
		t.Fatalf("release %+v", res.Release)
	}
	snap := h.f.Snap()
	if cur := snap.CurrentRelease(app.ID); cur.ID != first.Release.ID {
		t.Fatalf("a pending release became current")
	}
	var rd *Dyno
	for _, d := range snap.Dynos(app.ID) {
		if d.Type == DynoTypeRelease {
			rd = d
		}
	}
	if rd == nil || rd.Name != "release.4" || rd.Command != "bin/migrate" || !rd.OneOff || rd.ReleaseID != res.Release.ID || rd.ExpiresAt == nil {
		t.Fatalf("release dyno %+v", rd)
	}
	if _, ok := snap.FormationType(app.ID, "release"); ok {
		t.Fatal("release got a formation entry")
	}
	// It fails: the release is failed, the running one stays.
	inst := h.placeDyno(rd)
	one := 1
	h.ok(CmdDynoReport, DynoReport{ID: rd.ID, Instance: inst, Node: "n1", State: DynoCrashed, ExitStatus: &one}, nil)
	snap = h.f.Snap()
	if r, _ := snap.Release(app.ID, "4"); r.Status != ReleaseFailed {
		t.Fatalf("release after a failed release phase: %+v", r)
	}
	if cur := snap.CurrentRelease(app.ID); cur.ID != first.Release.ID {
		t.Fatalf("current release changed to v%d", cur.Version)
	}
	if f, _ := snap.FormationType(app.ID, "web"); f.Command != "bin/web" {
		t.Fatalf("formation followed a failed release: %+v", f)
	}

	// The next one succeeds: current, formation follows.
	res = h.finishBuild(h.createBuild(app), map[string]string{"web": "bin/web3", "release": "bin/migrate"}, "")
	for _, d := range h.f.Snap().Dynos(app.ID) {
		if d.Type == DynoTypeRelease && d.ReleaseID == res.Release.ID {
			rd = d
		}
	}
	inst = h.placeDyno(rd)
	zero := 0
	h.ok(CmdDynoReport, DynoReport{ID: rd.ID, Instance: inst, Node: "n1", State: DynoDown, ExitStatus: &zero}, nil)
	snap = h.f.Snap()
	if cur := snap.CurrentRelease(app.ID); cur.ID != res.Release.ID || cur.Status != ReleaseSucceeded {
		t.Fatalf("current after a good release phase: %+v", cur)
	}
	if f, _ := snap.FormationType(app.ID, "web"); f.Command != "bin/web3" {
		t.Fatalf("formation %+v", f)
	}
	// Rollback to the failed release is refused.
	h.fails(CodeInvalidParams, CmdReleaseRollback, ReleaseRollback{AppID: app.ID, TargetID: mustRelease(t, h, app, "4").ID, ReleaseID: uuid.NewString()})
}

func mustRelease(t *testing.T, h *harness, app *App, v string) *Release {
	t.Helper()
	r, ok := h.f.Snap().Release(app.ID, v)
	if !ok {
		t.Fatalf("no release %s", v)
	}
	return r
}

func TestRepoLease(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	l1, l2 := uuid.NewString(), uuid.NewString()
	h.ok(CmdRepoLease, RepoLeaseTake{AppID: app.ID, LeaseID: l1, Holder: "n1", TTL: time.Minute}, nil)
	e := h.fails(CodeConflict, CmdRepoLease, RepoLeaseTake{AppID: app.ID, LeaseID: l2, Holder: "n2", TTL: time.Minute})
	if !strings.Contains(e.Message, "in progress") || !strings.Contains(e.Message, "n1") {
		t.Fatalf("conflict message %q", e.Message)
	}
	// The holder renews and updates.
	h.ok(CmdRepoLease, RepoLeaseTake{AppID: app.ID, LeaseID: l1, Holder: "n1", TTL: time.Minute}, nil)
	h.ok(CmdRepoUpdate, RepoUpdate{AppID: app.ID, LeaseID: l1, Digest: digestA, Size: 10, Head: "abc"}, nil)
	// Another holder cannot update.
	h.fails(CodeConflict, CmdRepoUpdate, RepoUpdate{AppID: app.ID, LeaseID: l2, Digest: digestB})
	// After it expires, another takes it; the old holder is fenced off.
	h.now = h.now.Add(2 * time.Minute)
	h.ok(CmdRepoLease, RepoLeaseTake{AppID: app.ID, LeaseID: l2, Holder: "n2", TTL: time.Minute}, nil)
	h.fails(CodeConflict, CmdRepoUpdate, RepoUpdate{AppID: app.ID, LeaseID: l1, Digest: digestB})
	h.fails(CodeConflict, CmdRepoLease, RepoLeaseTake{AppID: app.ID, LeaseID: l1, Holder: "n1", TTL: time.Minute})
	// Giving up an old lease does not release the new one.
	h.ok(CmdRepoUnlease, RepoUnlease{AppID: app.ID, LeaseID: l1}, nil)
	if r := h.f.Snap().Repo(app.ID); r.Lease == nil || r.Lease.ID != l2 || r.Digest != digestA || r.Head != "abc" {
		t.Fatalf("repo %+v", r)
	}
	h.ok(CmdRepoUnlease, RepoUnlease{AppID: app.ID, LeaseID: l2}, nil)
	if r := h.f.Snap().Repo(app.ID); r.Lease != nil {
		t.Fatalf("lease not released: %+v", r.Lease)
	}
	h.fails(CodeInvalidParams, CmdRepoLease, RepoLeaseTake{AppID: app.ID, LeaseID: l1, Holder: "n1", TTL: time.Hour})
}

func TestBuildpacksCacheSources(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	var got App
	h.ok(CmdAppBuildpacks, AppBuildpacks{AppID: app.ID, Buildpacks: []string{"heroku/go", "https://example.com/bp.tgz"}}, &got)
	if len(got.Buildpacks) != 2 {
		t.Fatalf("buildpacks %v", got.Buildpacks)
	}
	h.fails(CodeInvalidParams, CmdAppBuildpacks, AppBuildpacks{AppID: app.ID, Buildpacks: []string{"a", "a"}})
	h.fails(CodeInvalidParams, CmdAppBuildpacks, AppBuildpacks{AppID: app.ID, Buildpacks: []string{"has space"}})
	var cleared App
	h.ok(CmdAppBuildpacks, AppBuildpacks{AppID: app.ID}, &cleared)
	if a, _ := h.f.Snap().App(app.ID); cleared.Buildpacks != nil || a.Buildpacks != nil {
		t.Fatalf("buildpacks not cleared: %v", a.Buildpacks)
	}

	h.finishBuild(h.createBuild(app), map[string]string{"web": "x"}, digestA)
	h.ok(CmdBuildCachePurge, BuildCachePurge{AppID: app.ID}, nil)
	if r := h.f.Snap().Repo(app.ID); r.CacheDigest != "" {
		t.Fatalf("cache not purged: %+v", r)
	}

	id := uuid.NewString()
	h.ok(CmdSourcePut, SourcePut{Source: Source{ID: id, Digest: digestA, Size: 3}}, nil)
	h.ok(CmdSourcePut, SourcePut{Source: Source{ID: id, Digest: digestA, Size: 3}}, nil)
	h.fails(CodeConflict, CmdSourcePut, SourcePut{Source: Source{ID: id, Digest: digestB, Size: 3}})
	if s, ok := h.f.Snap().Source(id); !ok || s.Digest != digestA {
		t.Fatalf("source %+v", s)
	}
	h.ok(CmdSourceDelete, SourceDelete{IDs: []string{id}}, nil)
	if _, ok := h.f.Snap().Source(id); ok {
		t.Fatal("source not deleted")
	}

	// Deleting the app takes its builds and repo with it.
	h.ok(CmdAppDelete, AppDelete{AppID: app.ID}, nil)
	if len(h.f.Snap().Builds(app.ID)) != 0 || len(h.f.Snap().Repos()) != 0 {
		t.Fatal("builds or repo left behind")
	}
}

func TestBuildValidationAndPruning(t *testing.T) {
	h := newHarness(t)
	app := h.createApp("demo")
	h.fails(CodeInvalidParams, CmdBuildCreate, BuildCreate{Build: Build{ID: uuid.NewString(), AppID: app.ID, Origin: "ftp"}})
	h.fails(CodeNotFound, CmdBuildCreate, BuildCreate{Build: Build{ID: uuid.NewString(), AppID: uuid.NewString(), Origin: BuildFromAPI}})
	b := h.createBuild(app)
	h.fails(CodeInvalidParams, CmdBuildFinish, BuildFinish{BuildID: b.ID, Status: BuildSucceeded})
	h.fails(CodeInvalidParams, CmdBuildFinish, BuildFinish{BuildID: b.ID, Status: "done"})
	h.ok(CmdBuildFinish, BuildFinish{BuildID: b.ID, Status: BuildFailed, Message: "no"}, nil)
	for i := 0; i < MaxBuildsPerApp+5; i++ {
		nb := h.createBuild(app)
		h.ok(CmdBuildFinish, BuildFinish{BuildID: nb.ID, Status: BuildFailed}, nil)
	}
	bs := h.f.Snap().Builds(app.ID)
	if len(bs) != MaxBuildsPerApp || bs[len(bs)-1].Number != MaxBuildsPerApp+6 {
		t.Fatalf("%d builds kept, newest #%d", len(bs), bs[len(bs)-1].Number)
	}
}
