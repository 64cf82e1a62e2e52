package testbed

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// slipwayBin is the binary under test, built once by TestMain.
var slipwayBin string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// A child process of TestCrashedRunIsCleanedUp.
		os.Exit(crashHelper())
	}
	dir, err := os.MkdirTemp("", "slipway-testbed-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	slipwayBin, err = BuildSlipway(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needRoot skips a test that needs root and the network tools, except in
// CI, where they must be there (.ci/run installs them).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the testbed needs root; CI runs as root")
	}
	t.Skip("the testbed needs root (network namespaces)")
}

// newTestbed starts a testbed that the test's cleanup removes, even when
// the test fails; on failure the nodes' logs are printed first.
func newTestbed(t *testing.T, spec Spec) *Testbed {
	t.Helper()
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tb, err := New(ctx, Options{Spec: spec, Binary: slipwayBin, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", tb.Logs(40))
		}
		if err := tb.Close(); err != nil {
			t.Errorf("closing the testbed: %v", err)
		}
	})
	if err := tb.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tb.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return tb
}
