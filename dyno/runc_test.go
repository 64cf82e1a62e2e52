package dyno

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
)

// needRunc skips a test without root or runc, except on CI (CI=true), where
// .ci/run installs runc and tests run as root.
func needRunc(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("runc")
	if os.Geteuid() == 0 && err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("runc tests need root and runc (euid %d, runc: %v)", os.Geteuid(), err)
	}
	t.Skip("runc tests need root and runc")
}

// newRuncHarness is a harness whose runtime is runc on the host stack
// (or the given root filesystem), hiding the supervisor's directory.
func newRuncHarness(t testing.TB, stack string) *harness {
	needRunc(t)
	h := newHarness(t, nil)
	base := t.TempDir()
	rt, err := NewRunc(RuncConfig{StateDir: filepath.Join(base, "runc"), StackDir: filepath.Join(base, "stacks"), Stack: stack, Hide: []string{h.dir}})
	if err != nil {
		t.Fatal(err)
	}
	h.rt = rt
	return h
}

func TestRuncWebDyno(t *testing.T) {
	t.Parallel()
	h := newRuncHarness(t, HostStack)
	h.config("GREETING", "hi")
	h.deploy(makeSlug(t, profileFiles...), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	h.waitState(d.ID, fsm.DynoUp)
	if body := get(t, d.Port, "/"); !strings.HasPrefix(body, "hello from web.1") {
		t.Fatalf("GET / = %q", body)
	}
	env := get(t, d.Port, "/env")
	for _, want := range []string{"HOME=/app", "DYNO=web.1", "GREETING=hi", "FROM_PROFILE=after-yes", fmt.Sprintf("PORT=%d", d.Port)} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	h.waitLog("web.1", "app[web.1]: listening on")
	h.apply(fsm.CmdDynoPlan, fsm.DynoPlan{Stop: []string{d.ID}}, nil)
	got := h.waitState(d.ID, fsm.DynoDown)
	if got.ExitStatus == nil || *got.ExitStatus != 143 {
		t.Fatalf("stopped: %+v", got)
	}
}

// TestRuncIsolation: a runc dyno runs as non-root, cannot see the node's
// processes or the agent's data directory, cannot read node secrets, and
// has a read-only system with a writable /app and a private /tmp.
func TestRuncIsolation(t *testing.T) {
	t.Parallel()
	h := newRuncHarness(t, HostStack)
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	hostTmp, err := os.CreateTemp("", "host-secret-")
	if err != nil {
		t.Fatal(err)
	}
	hostTmp.Close()
	defer os.Remove(hostTmp.Name())
	h.start()
	script := strings.Join([]string{
		`check() { if eval "$2" >/dev/null 2>&1; then echo "check $1 yes"; else echo "check $1 no"; fi; }`,
		`echo "uid=$(id -u) gid=$(id -g)"`,
		`echo "pids=$(ls /proc | grep -c '^[0-9]')"`,
		`echo "pid1=$(cat /proc/1/cmdline | tr '\0' ' ' | cut -c1-40)"`,
		fmt.Sprintf(`check agent-pid-visible "test -e /proc/%d"`, os.Getpid()),
		fmt.Sprintf(`check data-dir-visible "test -e %s"`, h.dir),
		fmt.Sprintf(`check host-tmp-visible "test -e %s"`, hostTmp.Name()),
		`check shadow-readable "test -s /etc/shadow"`,
		`check usr-writable "touch /usr/slipway-test"`,
		`check root-writable "touch /slipway-test"`,
		`check app-writable "touch /app/x"`,
		`check tmp-writable "touch /tmp/x"`,
		`check can-become-root "test $(id -u) = 0"`,
		`echo "hostname=$(hostname)"`,
	}, "\n")
	d := h.place(dynoSpec{name: "run.1", command: script, oneOff: true})
	got := h.waitState(d.ID, fsm.DynoDown)
	if *got.ExitStatus != 0 {
		t.Logf("exit %d", *got.ExitStatus)
	}
	logs := strings.Join(h.sink.all("run.1"), "\n")
	want := map[string]string{
		"agent-pid-visible": "no", "data-dir-visible": "no", "host-tmp-visible": "no", "shadow-readable": "no",
		"usr-writable": "no", "root-writable": "no", "app-writable": "yes", "tmp-writable": "yes", "can-become-root": "no",
	}
	for k, v := range want {
		if !strings.Contains(logs, "app[run.1]: check "+k+" "+v) {
			t.Errorf("check %s: want %s\n%s", k, v, logs)
		}
	}
	if !strings.Contains(logs, fmt.Sprintf("uid=%d gid=%d", DefaultDynoUID, DefaultDynoUID)) {
		t.Errorf("not running as the dyno user:\n%s", logs)
	}
	if !strings.Contains(logs, "hostname="+d.ID) {
		t.Errorf("hostname is not the dyno id:\n%s", logs)
	}
	// Only the dyno's own processes: the shim (pid 1), bash and ls.
	for _, l := range strings.Split(logs, "\n") {
		if v, ok := strings.CutPrefix(l, "app[run.1]: pids="); ok {
			if n, _ := strconv.Atoi(v); n == 0 || n > 6 {
				t.Errorf("the dyno sees %d processes", n)
			}
		}
	}
	if !strings.Contains(logs, "pid1=/bin/bash -c trap") {
		t.Errorf("pid 1 is not the dyno's shim:\n%s", logs)
	}
}

// TestRuncMemoryLimit: a memory hog is held to its cgroup limit (twice the
// quota) and reported: R14 over the quota, R15 when the kernel kills it at
// the limit.
func TestRuncMemoryLimit(t *testing.T) {
	t.Parallel()
	h := newRuncHarness(t, HostStack)
	h.cfg.QuotaMB = func(string) int { return 64 }
	h.deploy(makeSlug(t), map[string]string{"worker": "bin/dynoapp hog 96"})
	h.start()
	over := h.place(dynoSpec{name: "worker.1", command: "bin/dynoapp hog 96"})
	h.waitLog("worker.1", "app[worker.1]: holding 96 MB")
	h.waitLog("worker.1", "Error R14 (Memory quota exceeded)")
	if d := h.dyno(over.ID); d.State != fsm.DynoUp {
		t.Fatalf("dyno over its quota: %+v", d)
	}
	vast := h.place(dynoSpec{name: "worker.2", command: "bin/dynoapp hog -1"})
	h.waitLog("worker.2", "allocated 1 MB")
	rt := h.rt.(*Runc)
	cg := (&runcProc{r: rt, rec: Record{ContainerID: containerID(vast.ID, vast.Instance)}}).cgroupDir()
	limitFile, peakFile := "memory.limit_in_bytes", "memory.max_usage_in_bytes"
	if rt.cgroupV2 {
		limitFile, peakFile = "memory.max", "memory.peak"
	}
	var peak int64
	h.waitFor("the hog to be killed", func() bool {
		if b, err := os.ReadFile(filepath.Join(cg, limitFile)); err == nil {
			if v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); v != 128<<20 {
				t.Fatalf("memory limit %d, want %d", v, 128<<20)
			}
		}
		if b, err := os.ReadFile(filepath.Join(cg, peakFile)); err == nil {
			if v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); v > peak {
				peak = v
			}
		}
		return h.dyno(vast.ID).State == fsm.DynoCrashed
	})
	got := h.dyno(vast.ID)
	if got.Reason != "R15 Memory quota vastly exceeded" || got.ExitStatus == nil || *got.ExitStatus != 137 {
		t.Fatalf("hog: %+v", got)
	}
	if peak > 128<<20+1<<20 { // the kernel counts by pages: allow a little
		t.Fatalf("the hog used %d bytes, over its limit", peak)
	}
	h.waitLog("worker.2", "Error R15 (Memory quota vastly exceeded)")
	t.Logf("peak memory of the hog: %d MB (limit 128 MB)", peak>>20)
}

func TestRuncAdoptAfterAgentRestart(t *testing.T) {
	t.Parallel()
	h := newRuncHarness(t, HostStack)
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	h.waitState(d.ID, fsm.DynoUp)
	first := get(t, d.Port, "/")
	h.restart()
	time.Sleep(5 * h.cfg.Resync)
	if got := get(t, d.Port, "/"); got != first {
		t.Fatalf("after the restart the dyno answers %q, before %q", got, first)
	}
	if running := h.sup.Running(); running[d.ID] != d.Instance || len(running) != 1 {
		t.Fatalf("running %v", running)
	}
	inst := uuid.NewString()
	h.apply(fsm.CmdDynoRestart, fsm.DynoRestart{AppID: h.app.ID, Dyno: "web.1", Instances: map[string]string{d.ID: inst}}, nil)
	h.waitFor("new instance up", func() bool { x := h.dyno(d.ID); return x.Instance == inst && x.State == fsm.DynoUp })
	if got := get(t, d.Port, "/"); got == first {
		t.Fatalf("the old instance still answers")
	}
	out, _ := exec.Command("runc", "--root", h.rt.(*Runc).cfg.StateDir, "list", "-q").Output()
	if ids := strings.Fields(string(out)); len(ids) != 1 || ids[0] != containerID(d.ID, inst) {
		t.Fatalf("containers %v", ids)
	}
}

func TestRuncAttachedOneOff(t *testing.T) {
	t.Parallel()
	h := newRuncHarness(t, HostStack)
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "run.7", command: "tty >/dev/null && echo on-a-tty; read line; echo \"got $line\"", oneOff: true, attach: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := h.sup.Attach(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(st, "pong\n"); err != nil {
		t.Fatal(err)
	}
	out := readAll(t, st)
	st.Close()
	if !strings.Contains(out, "on-a-tty") || !strings.Contains(out, "got pong") {
		t.Fatalf("attached output %q", out)
	}
	h.waitState(d.ID, fsm.DynoDown)
}

// A node that changes runtimes stops the dynos of the old one and starts
// them again under the new one.
func TestRuntimeSwitchRestartsDynos(t *testing.T) {
	t.Parallel()
	h := newRuncHarness(t, HostStack)
	runc := h.rt
	h.rt = Process{}
	h.deploy(makeSlug(t), map[string]string{"worker": "sleep 1000"})
	h.start()
	d := h.place(dynoSpec{name: "worker.1", command: "sleep 1000"})
	h.waitState(d.ID, fsm.DynoUp)
	old := shims(h.node, d.ID)
	h.detach()
	h.rt = runc
	h.start()
	h.waitFor("the process dyno to be stopped", func() bool {
		for _, p := range shims(h.node, d.ID) {
			if p == old[0] {
				return false
			}
		}
		return true
	})
	h.waitFor("the dyno to run under runc", func() bool {
		out, _ := exec.Command("runc", "--root", runc.(*Runc).cfg.StateDir, "list", "-q").Output()
		return strings.TrimSpace(string(out)) == containerID(d.ID, d.Instance)
	})
}
