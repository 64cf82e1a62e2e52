package drills

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/testbed"
)

// slipwayBin is the binary under test and webSlug the web app the drills
// deploy, built once by TestMain.
var (
	slipwayBin string
	webSlug    *Slug
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slipway-drills-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	slipwayBin, err = testbed.BuildSlipway(ctx, dir)
	if err == nil {
		webSlug, err = BuildWebSlug(ctx, dir)
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// longVariant: `make drills` sets SLIPWAY_DRILLS=long for the longer runs.
func longVariant() bool { return os.Getenv("SLIPWAY_DRILLS") == "long" }

// TestDrills runs every drill on its own fresh testbed and prints its
// report. Run one with: go test -v -run 'TestDrills/zone-loss' ./testbed/drills
func TestDrills(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the drills need root (network namespaces); CI runs as root")
		}
		t.Skip("the drills need root (network namespaces)")
	}
	// A history that is not linearizable is saved (with porcupine's
	// visualization) in the temporary directory, kept after the test.
	opts := Options{Long: longVariant(), Slug: webSlug}
	for _, d := range All() {
		t.Run(d.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			o := opts
			o.Logf = t.Logf
			tb, err := NewTestbed(ctx, slipwayBin, o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if t.Failed() {
					t.Logf("node logs:\n%s", tb.Logs(60))
				}
				if err := tb.Close(); err != nil {
					t.Errorf("closing the testbed: %v", err)
				}
			}()
			rep, err := Run(ctx, d, tb, o)
			if rep != nil {
				// The report goes to stdout, so `go test -v` shows it
				// in one piece.
				fmt.Println(rep.String())
			}
			if err != nil {
				t.Fatal(err)
			}
			if problems := rep.Problems(d.ZeroFailures); len(problems) > 0 {
				t.Errorf("drill %s failed:\n  %s", d.Name, strings.Join(problems, "\n  "))
			}
		})
	}
}
