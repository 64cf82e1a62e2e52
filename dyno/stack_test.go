package dyno

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/fsm"
)

const buildStack = "../install/build-stack.sh"

func runScript(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command("bash", append([]string{buildStack}, args...)...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestBuildStackScript checks install/build-stack.sh without running
// debootstrap: syntax, usage, refusals, and the command it would run.
func TestBuildStackScript(t *testing.T) {
	if out, err := exec.Command("bash", "-n", buildStack).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if out, code := runScript(t, "--help"); code != 0 || !strings.Contains(out, "dyno_stack") {
		t.Fatalf("--help: %d %s", code, out)
	}
	if _, code := runScript(t); code != 2 {
		t.Fatalf("no DEST: exit %d", code)
	}
	if out, code := runScript(t, "--suite", "bad suite!", "/tmp/x"); code == 0 || !strings.Contains(out, "invalid suite") {
		t.Fatalf("bad suite: %d %s", code, out)
	}
	if out, code := runScript(t, "--include", "x;rm -rf /", "/tmp/x"); code == 0 || !strings.Contains(out, "invalid package list") {
		t.Fatalf("bad packages: %d %s", code, out)
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runScript(t, full); code == 0 || !strings.Contains(out, "not empty") {
		t.Fatalf("non-empty DEST: %d %s", code, out)
	}
	dest := filepath.Join(t.TempDir(), "stack")
	out, code := runScript(t, "--dry-run", "--suite", "trixie", "--include", "imagemagick", dest)
	if code != 0 || !strings.Contains(out, "debootstrap --variant=minbase") || !strings.Contains(out, " trixie "+dest+".tmp-") ||
		!strings.Contains(out, ",imagemagick ") {
		t.Fatalf("--dry-run: %d %s", code, out)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("--dry-run created DEST")
	}
}

// TestRuncDebootstrapStack runs a dyno on a stack built by
// install/build-stack.sh. It is a slow test (debootstrap downloads ~150 MB),
// run only on request: SLIPWAY_TEST_STACK=DIR uses a stack built before,
// SLIPWAY_TEST_DEBOOTSTRAP=1 builds one first.
func TestRuncDebootstrapStack(t *testing.T) {
	stack := os.Getenv("SLIPWAY_TEST_STACK")
	if stack == "" && os.Getenv("SLIPWAY_TEST_DEBOOTSTRAP") != "1" {
		t.Skip("slow: set SLIPWAY_TEST_STACK=DIR or SLIPWAY_TEST_DEBOOTSTRAP=1")
	}
	needRunc(t)
	if stack == "" {
		stack = filepath.Join(t.TempDir(), "stack")
		if out, code := runScript(t, stack); code != 0 {
			t.Fatalf("build-stack.sh: %d\n%s", code, out)
		}
	}
	h := newRuncHarness(t, stack)
	h.deploy(makeSlug(t), map[string]string{"web": "bin/dynoapp web"})
	h.start()
	d := h.place(dynoSpec{name: "web.1", command: "bin/dynoapp web"})
	h.waitState(d.ID, fsm.DynoUp)
	if body := get(t, d.Port, "/"); !strings.HasPrefix(body, "hello from web.1") {
		t.Fatalf("GET / = %q", body)
	}
	r := h.place(dynoSpec{name: "run.1", command: "cat /etc/slipway-stack; whoami; echo home=$HOME; touch /etc/x || echo read-only", oneOff: true})
	h.waitState(r.ID, fsm.DynoDown)
	for _, want := range []string{"app[run.1]: SUITE=", "app[run.1]: dyno", "app[run.1]: home=/app", "app[run.1]: read-only"} {
		h.waitLog("run.1", want)
	}
}
