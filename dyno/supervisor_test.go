package dyno

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
)

func get(t testing.TB, port int, path string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// profileFiles check Heroku's start-up: .profile.d scripts, then .profile.
var profileFiles = []slugFile{
	{name: ".profile.d/a.sh", body: "export FROM_PROFILE_D=yes\nexport ORDER=profile.d\n"},
	{name: ".profile", body: "export FROM_PROFILE=\"after-$FROM_PROFILE_D\"\nexport ORDER=\"$ORDER,profile\"\n"},
}

func TestWebDynoComesUpWithHerokusEnvironment(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.config("GREETING", "hi there", "PATH", "/custom/bin:/usr/bin:/bin")
	h.deploy(makeSlug(t, profileFiles...), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	up := h.waitState(d.ID, fsm.DynoUp)
	if up.Instance != d.Instance || up.UpAt.IsZero() {
		t.Fatalf("dyno after up: %+v", up)
	}
	if body := get(t, d.Port, "/"); !strings.HasPrefix(body, "hello from web.1") {
		t.Fatalf("GET / = %q", body)
	}
	env := get(t, d.Port, "/env")
	for _, want := range []string{
		fmt.Sprintf("PORT=%d", d.Port), "DYNO=web.1", "GREETING=hi there", "PATH=/custom/bin:/usr/bin:/bin",
		"FROM_PROFILE_D=yes", "FROM_PROFILE=after-yes", "ORDER=profile.d,profile",
	} {
		if !strings.Contains(env, "\n"+want+"\n") && !strings.HasPrefix(env, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if !strings.Contains(env, "HOME="+h.dir) || strings.Contains(env, "HEROKU_APP_NAME") || strings.Contains(env, "PS1=") {
		t.Errorf("HOME is not the unpacked slug, or metadata is set without the feature:\n%s", env)
	}
	h.waitLog("web.1", "heroku[web.1]: Starting process with command `bin/dynoapp web`")
	h.waitLog("web.1", "heroku[web.1]: State changed from starting to up")
	h.waitLog("web.1", fmt.Sprintf("app[web.1]: listening on %d", d.Port))
	if n := len(shims(h.node, d.ID)); n != 1 {
		t.Fatalf("%d processes run web.1", n)
	}
}

func TestRuntimeDynoMetadata(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.apply(fsm.CmdFeatureSet, fsm.FeatureSet{AppID: h.app.ID, Name: "runtime-dyno-metadata", Enabled: true}, nil)
	rel := h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	h.waitState(d.ID, fsm.DynoUp)
	env := get(t, d.Port, "/env")
	for _, want := range []string{
		"HEROKU_APP_ID=" + h.app.ID, "HEROKU_APP_NAME=" + h.app.Name, fmt.Sprintf("HEROKU_RELEASE_VERSION=v%d", rel.Version),
		"HEROKU_SLUG_COMMIT=0123456789abcdef0123456789abcdef01234567", "HEROKU_SLUG_DESCRIPTION=Deploy 0123456",
		"HEROKU_DYNO_ID=" + d.ID, "HEROKU_RELEASE_CREATED_AT=" + rel.CreatedAt.UTC().Format(time.RFC3339),
	} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
}

func TestCrashIsReportedWithStatusAndNotRestarted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "echo oops; exit 3"})
	h.start()
	d := h.place(dynoSpec{name: "worker.1", command: "echo oops; exit 3"})
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if got.ExitStatus == nil || *got.ExitStatus != 3 || got.Reason != "Process exited with status 3" || got.Crashes != 1 {
		t.Fatalf("crashed dyno: %+v", got)
	}
	h.waitLog("worker.1", "app[worker.1]: oops")
	h.waitLog("worker.1", "heroku[worker.1]: Process exited with status 3")
	h.waitLog("worker.1", "heroku[worker.1]: State changed from up to crashed")
	// The supervisor never restarts it itself: several resyncs later it is
	// still crashed, started once.
	time.Sleep(5 * h.cfg.Resync)
	starts := 0
	for _, l := range h.sink.all("worker.1") {
		if strings.Contains(l, "Starting process") {
			starts++
		}
	}
	if d := h.dyno(d.ID); starts != 1 || d.State != fsm.DynoCrashed {
		t.Fatalf("started %d times, state %s", starts, d.State)
	}
	// The scheduler's restart (a new instance) runs it again.
	inst := uuid.NewString()
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Restart: []fsm.Restart{{ID: d.ID, Instance: inst}}}, nil)
	h.waitLog("worker.1", "State changed from crashed to starting")
	h.waitFor("second crash", func() bool {
		d := h.dyno(d.ID)
		return d.Instance == inst && d.State == fsm.DynoCrashed && d.Crashes == 2
	})
}

func TestExitZeroOfAFormationDynoIsACrash(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "true"})
	h.start()
	d := h.place(dynoSpec{name: "worker.1", command: "true"})
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if got.ExitStatus == nil || *got.ExitStatus != 0 {
		t.Fatalf("crashed dyno: %+v", got)
	}
}

func TestBootTimeoutR10(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.cfg.BootTimeout = time.Second
	h.deploy(makeSlug(t), map[string]string{"web": "sleep 1000"})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "sleep 1000"})
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if got.Reason != "R10 Boot timeout" || got.ExitStatus == nil || *got.ExitStatus != 137 {
		t.Fatalf("crashed dyno: %+v (status %v)", got, got.ExitStatus)
	}
	h.waitLog("web.1", "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 1 seconds of launch")
	h.waitLog("web.1", "Stopping process with SIGKILL")
	h.waitLog("web.1", "Process exited with status 137")
	h.waitLog("web.1", "State changed from starting to crashed")
	h.waitFor("no process left", func() bool { return len(shims(h.node, d.ID)) == 0 })
}

func TestStopSendsSIGTERM(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	d := h.webUp("bin/dynoapp web")
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Stop: []string{d.ID}}, nil)
	got := h.waitState(d.ID, fsm.DynoDown)
	if got.ExitStatus == nil || *got.ExitStatus != 143 || got.Reason != "" {
		t.Fatalf("stopped dyno: %+v", got)
	}
	h.waitLog("web.1", "Stopping all processes with SIGTERM")
	h.waitLog("web.1", "Process exited with status 143")
	h.waitLog("web.1", "State changed from up to down")
	if h.hasLog("web.1", "R12") || len(shims(h.node, d.ID)) != 0 {
		t.Fatalf("R12 or processes left: %v", h.sink.all("web.1"))
	}
}

func TestStopEscalatesToSIGKILLWithR12(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.cfg.StopTimeout = time.Second
	d := h.webUp("bin/dynoapp stubborn")
	h.waitLog("web.1", "ignoring SIGTERM")
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Stop: []string{d.ID}}, nil)
	got := h.waitState(d.ID, fsm.DynoDown)
	if got.ExitStatus == nil || *got.ExitStatus != 137 || got.Reason != "R12 Exit timeout" {
		t.Fatalf("stopped dyno: %+v", got)
	}
	h.waitLog("web.1", "Error R12 (Exit timeout) -> At least one process failed to exit within 1 seconds of SIGTERM")
	h.waitLog("web.1", "Stopping remaining processes with SIGKILL")
	h.waitFor("no process left", func() bool { return len(shims(h.node, d.ID)) == 0 })
}

func TestNewInstanceReplacesTheOldOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	d := h.webUp("bin/dynoapp web")
	old := shims(h.node, d.ID)
	if len(old) != 1 {
		t.Fatalf("shims %v", old)
	}
	inst := uuid.NewString()
	h.apply(fsm.CmdDynoRestart, fsm.DynoRestart{AppID: h.app.ID, Dyno: "web.1", Instances: map[string]string{d.ID: inst}}, nil)
	h.waitFor("new instance up", func() bool {
		d := h.dyno(d.ID)
		return d.Instance == inst && d.State == fsm.DynoUp
	})
	now := shims(h.node, d.ID)
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("old %v, now %v", old, now)
	}
	h.waitLog("web.1", "State changed from up to starting")
	if body := get(t, d.Port, "/"); !strings.Contains(body, "hello from web.1") {
		t.Fatalf("GET / = %q", body)
	}
}

func TestDeletedDynoIsStoppedWithoutReport(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "sleep 1000"})
	h.start()
	d := h.place(dynoSpec{name: "worker.1", command: "sleep 1000"})
	h.waitState(d.ID, fsm.DynoUp)
	n := len(h.reportsFor(d.ID))
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Remove: []string{d.ID}}, nil)
	h.waitFor("process stopped", func() bool { return len(shims(h.node, d.ID)) == 0 && len(h.sup.Running()) == 0 })
	h.waitLog("worker.1", "State changed from up to down")
	if got := len(h.reportsFor(d.ID)); got != n {
		t.Fatalf("reports after deletion: %v", h.reportsFor(d.ID)[n:])
	}
}

func TestDynoMovedElsewhereIsStopped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "sleep 1000"})
	h.start()
	d := h.place(dynoSpec{name: "worker.1", command: "sleep 1000"})
	h.waitState(d.ID, fsm.DynoUp)
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Place: []fsm.Placement{{ID: d.ID, Node: "elsewhere", Port: 1, Instance: uuid.NewString()}}}, nil)
	h.waitFor("process stopped", func() bool { return len(shims(h.node, d.ID)) == 0 })
}

func TestAgentRestartAdoptsRunningDynos(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	web := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	worker := h.place(dynoSpec{name: "worker.1", command: "while sleep 0.2; do echo tick; done"})
	h.waitState(web.ID, fsm.DynoUp)
	h.waitState(worker.ID, fsm.DynoUp)
	before := map[string][]int{web.ID: shims(h.node, web.ID), worker.ID: shims(h.node, worker.ID)}
	pid := get(t, web.Port, "/")

	h.detach()
	// While no agent runs, the dynos keep running and serving.
	if got := get(t, web.Port, "/"); got != pid {
		t.Fatalf("web answered %q, then %q", pid, got)
	}
	mark := len(h.sink.all("worker.1"))
	h.start()
	time.Sleep(5 * h.cfg.Resync)
	for id, pids := range before {
		if now := shims(h.node, id); len(now) != 1 || now[0] != pids[0] {
			t.Fatalf("%s: shims before %v, after the restart %v", id, pids, now)
		}
		if d := h.dyno(id); d.State != fsm.DynoUp {
			t.Fatalf("%s is %s", id, d.State)
		}
	}
	if got := get(t, web.Port, "/"); got != pid {
		t.Fatalf("web answered %q, then %q", pid, got)
	}
	// Output written while no agent read it, and after, still arrives.
	h.waitFor("output after the restart", func() bool { return len(h.sink.all("worker.1")) > mark+3 })
	// An adopted dyno is stopped like any other, with its exit status.
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Stop: []string{web.ID}}, nil)
	got := h.waitState(web.ID, fsm.DynoDown)
	if got.ExitStatus == nil || *got.ExitStatus != 143 {
		t.Fatalf("stopped adopted dyno: %+v", got)
	}
	// An adopted dyno that crashes is reported with its status (which the
	// shim records: it is not the agent's child any more).
	pids := shims(h.node, worker.ID)
	for _, pid := range groupPids(pids[0], 0) {
		if pid != pids[0] {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	got = h.waitState(worker.ID, fsm.DynoCrashed)
	if got.ExitStatus == nil || *got.ExitStatus != 137 {
		t.Fatalf("crashed adopted dyno: %+v", got)
	}
}

// A restarted agent's replica may be empty until it catches up: the
// supervisor must not act on it (it would stop every dyno).
func TestAgentRestartWaitsForTheReplicaToCatchUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	d := h.webUp("bin/dynoapp web")
	before := shims(h.node, d.ID)
	h.detach()

	empty, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{})
	var caughtUp atomic.Bool
	h.cfg.Snap = func() *fsm.Snap {
		if caughtUp.Load() {
			return h.f.Snap()
		}
		return empty.Snap()
	}
	h.cfg.Synced = func(ctx context.Context) error {
		select {
		case <-synced:
			caughtUp.Store(true)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.start()
	time.Sleep(5 * h.cfg.Resync)
	if now := shims(h.node, d.ID); len(now) != 1 || now[0] != before[0] {
		t.Fatalf("before the replica caught up: shims %v, before %v", now, before)
	}
	close(synced)
	<-h.sup.Ready()
	time.Sleep(5 * h.cfg.Resync)
	if now := shims(h.node, d.ID); len(now) != 1 || now[0] != before[0] || h.sup.Running()[d.ID] != d.Instance {
		t.Fatalf("after: shims %v, before %v, running %v", now, before, h.sup.Running())
	}
	if h.hasLog("web.1", "SIGTERM") {
		t.Fatalf("the dyno was stopped: %v", h.sink.all("web.1"))
	}
}

func TestAgentRestartReportsDynosThatDiedMeanwhile(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "sleep 1000"})
	h.start()
	d := h.place(dynoSpec{name: "worker.1", command: "read x < /dev/null; sleep 1000; exit 7"})
	h.waitState(d.ID, fsm.DynoUp)
	h.detach()
	pids := shims(h.node, d.ID)
	// Kill the command, not the shim: the shim records its status.
	for _, pid := range groupPids(pids[0], 0) {
		if pid != pids[0] {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	h.waitFor("dyno ended", func() bool { return len(shims(h.node, d.ID)) == 0 })
	h.start()
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if got.ExitStatus == nil || *got.ExitStatus != 143 {
		t.Fatalf("dyno that died while the agent was down: %+v", got)
	}
	time.Sleep(5 * h.cfg.Resync)
	if len(shims(h.node, d.ID)) != 0 {
		t.Fatalf("crashed dyno restarted by the supervisor")
	}
}

func TestAgentRestartRemovesUnrecordedLeftovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "sleep 1000"})
	// A dyno started by an agent that died before recording it.
	mine, err := markerNode(h.node, h.dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", shimScript, dynoMarker(mine, "lost", "inst"), startScript, "sleep 1000")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + DefaultPath}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	status, _ := os.Create(t.TempDir() + "/status")
	cmd.ExtraFiles = []*os.File{status}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	// Another node's dyno on the same host must survive, and so must a dyno
	// of a node with the same name in another cluster (another directory).
	theirs, _ := markerNode("other-"+h.node, h.dir)
	other := exec.Command("bash", "-c", shimScript, dynoMarker(theirs, "x", "y"), startScript, "sleep 1000")
	other.Env = cmd.Env
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	other.ExtraFiles = []*os.File{status}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-other.Process.Pid, syscall.SIGKILL); _ = other.Wait() }()
	twinMarker, _ := markerNode(h.node, t.TempDir())
	twin := exec.Command("bash", "-c", shimScript, dynoMarker(twinMarker, "twin", "z"), startScript, "sleep 1000")
	twin.Env, twin.SysProcAttr, twin.ExtraFiles = cmd.Env, &syscall.SysProcAttr{Setpgid: true}, []*os.File{status}
	if err := twin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-twin.Process.Pid, syscall.SIGKILL); _ = twin.Wait() }()
	h.waitFor("leftover running", func() bool { return len(shims(h.node, "lost")) == 1 })
	h.start()
	h.waitFor("leftover removed", func() bool { return len(shims(h.node, "lost")) == 0 })
	if len(shims("other-"+h.node, "x")) != 1 {
		t.Fatal("another node's dyno was killed")
	}
	if len(shims(h.node, "twin")) != 1 {
		t.Fatal("the dyno of a same-named node of another cluster was killed")
	}
}

func TestOneOffDetachedRunsOnceAndCompletes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "run.1234", command: "echo hello $FOO", oneOff: true, env: map[string]string{"FOO": "world"}})
	got := h.waitState(d.ID, fsm.DynoDown)
	if got.ExitStatus == nil || *got.ExitStatus != 0 {
		t.Fatalf("one-off: %+v", got)
	}
	h.waitLog("run.1234", "app[run.1234]: hello world")
	h.waitLog("run.1234", "State changed from up to complete")
	f := h.place(dynoSpec{name: "run.99", command: "exit 4", oneOff: true})
	if got := h.waitState(f.ID, fsm.DynoCrashed); *got.ExitStatus != 4 {
		t.Fatalf("failed one-off: %+v", got)
	}
}

func TestOneOffTimeToLive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "run.77", command: "sleep 1000", oneOff: true, ttl: 2 * time.Second})
	got := h.waitState(d.ID, fsm.DynoDown)
	if got.ExitStatus == nil || *got.ExitStatus != 143 {
		t.Fatalf("one-off past its time to live: %+v", got)
	}
	h.waitLog("run.77", "Stopping all processes with SIGTERM")
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	select {
	case s := <-done:
		return s
	case <-time.After(60 * time.Second):
		t.Fatal("attached output did not end")
		return ""
	}
}

func TestAttachedOneOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "run.1", command: "tty >/dev/null && echo on-a-tty; read line; echo \"got $line\"; exit 5", oneOff: true, attach: true,
		env: map[string]string{"TERM": "xterm", "COLUMNS": "100", "LINES": "30"}})
	time.Sleep(3 * h.cfg.Resync)
	if len(shims(h.node, d.ID)) != 0 {
		t.Fatal("an attached one-off started before its client attached")
	}
	st, err := h.sup.Attach(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.sup.Attach(context.Background(), d.ID); err == nil {
		t.Fatal("a second client attached")
	}
	if _, err := io.WriteString(st, "ping\n"); err != nil {
		t.Fatal(err)
	}
	out := readAll(t, st)
	st.Close()
	if !strings.Contains(out, "on-a-tty") || !strings.Contains(out, "got ping") {
		t.Fatalf("attached output %q", out)
	}
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if *got.ExitStatus != 5 {
		t.Fatalf("one-off: %+v", got)
	}
}

func TestAttachedOneOffEndOfInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "run.2", command: "cat; echo done", oneOff: true, attach: true})
	st, err := h.sup.Attach(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = io.WriteString(st, "abc\n")
		_ = st.CloseWrite()
	}()
	out := readAll(t, st)
	if !strings.Contains(out, "abc") || !strings.Contains(out, "done") {
		t.Fatalf("attached output %q", out)
	}
	h.waitState(d.ID, fsm.DynoDown)
}

func TestAttachedOneOffClientLeavesR16(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.cfg.StopTimeout = time.Second
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	// Ignores SIGHUP: killed after the stop timeout.
	d := h.place(dynoSpec{name: "run.3", command: "trap '' HUP; echo ready; sleep 1000", oneOff: true, attach: true})
	st, err := h.sup.Attach(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(st)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "ready") {
		t.Fatalf("first line %q, %v", line, err)
	}
	st.Close()
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if got.Reason != "R16 Detached" {
		t.Fatalf("one-off after its client left: %+v", got)
	}
	h.waitLog("run.3", "Error R16 (Detached)")
}

func TestAttachTimeoutR13(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.cfg.AttachTimeout = time.Second
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "run.4", command: "echo never", oneOff: true, attach: true})
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if !strings.HasPrefix(got.Reason, "R13 Attach error") {
		t.Fatalf("unattached one-off: %+v", got)
	}
	h.waitLog("run.4", "Error R13 (Attach error) -> Failed to attach to process")
	if h.hasLog("run.4", "never") {
		t.Fatal("the command ran")
	}
}

func TestMemoryQuotaR14AndR15(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.cfg.QuotaMB = func(string) int { return 64 }
	h.deploy(makeSlug(t), map[string]string{"worker": "bin/dynoapp hog 96"})
	h.start()
	over := h.place(dynoSpec{name: "worker.1", command: "bin/dynoapp hog 96"})
	h.waitLog("worker.1", "Error R14 (Memory quota exceeded)")
	h.waitLog("worker.1", "Process running mem=")
	if d := h.dyno(over.ID); d.State != fsm.DynoUp {
		t.Fatalf("dyno over its quota: %+v", d)
	}
	vast := h.place(dynoSpec{name: "worker.2", command: "bin/dynoapp hog -1"})
	got := h.waitState(vast.ID, fsm.DynoCrashed)
	if got.Reason != "R15 Memory quota vastly exceeded" || *got.ExitStatus != 137 {
		t.Fatalf("hog: %+v", got)
	}
	h.waitLog("worker.2", "Error R15 (Memory quota vastly exceeded)")
}

func TestBadSlugsAreNotRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.slugs.mu.Lock()
	h.slugs.corrupt = map[string]bool{}
	for dg := range h.slugs.blobs {
		h.slugs.corrupt[dg] = true
	}
	h.slugs.mu.Unlock()
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	got := h.waitState(d.ID, fsm.DynoCrashed)
	if !strings.HasPrefix(got.Reason, "R17 Checksum error") {
		t.Fatalf("dyno of a corrupt slug: %+v", got)
	}
	h.waitLog("web.1", "Error R17")

	// A slug with a path traversal.
	h2 := newHarness(t, Process{})
	h2.deploy(tarGz(t, tarEntry{name: "./app/", dir: true}, tarEntry{name: "./app/../../evil", body: "x"}), map[string]string{"web": "x"})
	h2.start()
	d2 := h2.place(dynoSpec{name: "web.1", command: "x"})
	got = h2.waitState(d2.ID, fsm.DynoCrashed)
	if !strings.Contains(got.Reason, "path traversal") {
		t.Fatalf("dyno of a bad slug: %+v", got)
	}
}

func TestSlugIsFetchedOncePerNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Process{})
	h.deploy(makeSlug(t), map[string]string{"worker": "sleep 1000"})
	h.start()
	var ids []string
	for i := 1; i <= 3; i++ {
		ids = append(ids, h.place(dynoSpec{name: fmt.Sprintf("worker.%d", i), command: "ls; touch mine; sleep 1000"}).ID)
	}
	for _, id := range ids {
		h.waitState(id, fsm.DynoUp)
	}
	h.slugs.mu.Lock()
	opens := h.slugs.opens
	h.slugs.mu.Unlock()
	if opens != 1 {
		t.Fatalf("slug fetched %d times", opens)
	}
	// Each dyno has its own copy: a restart starts from a clean slug.
	h.waitLog("worker.1", "app[worker.1]: bin")
	inst := uuid.NewString()
	h.apply(fsm.CmdDynoRestart, fsm.DynoRestart{AppID: h.app.ID, Dyno: "worker.1", Instances: map[string]string{ids[0]: inst}}, nil)
	h.waitFor("restarted", func() bool { d := h.dyno(ids[0]); return d.Instance == inst && d.State == fsm.DynoUp })
	h.waitFor("second listing", func() bool {
		n := 0
		for _, l := range h.sink.all("worker.1") {
			if strings.HasSuffix(l, ": bin") {
				n++
			}
		}
		return n == 2
	})
	if h.hasLog("worker.1", ": mine") {
		t.Fatalf("the restarted dyno saw the previous instance's file: %v", h.sink.all("worker.1"))
	}
}
