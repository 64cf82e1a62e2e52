// Command testbed runs the Slipway testbed by hand: `testbed up` starts a
// cluster of real `slipway agent` nodes in network namespaces and keeps it
// running; other invocations, from another shell, break it (kill, isolate,
// impair, ...) and repair it; `testbed drill NAME` runs a failure drill on a
// fresh testbed and prints its report. It needs root. See docs/drills.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/testbed"
	"github.com/slipwayhq/slipway/testbed/drills"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "testbed",
		Short: "Slipway's multi-host testbed on network namespaces, and its failure drills",
		Long: `Run a Slipway cluster of real hosts on this machine (each node a slipway agent
in its own network namespace, installed by install/install.sh), break it, and
run the failure drills. Needs root.

  testbed up                      start a 3-node cluster and keep it running (Ctrl-C removes it)
  testbed status                  from another shell: the nodes
  testbed kill n2                 kill -9 a node; "testbed start n2" starts it again
  testbed isolate zone:c          cut a zone off; "testbed heal" reconnects it
  testbed drill zone-loss         run a drill on a fresh testbed and print its report

Operations on a running testbed:
` + indent(testbed.Ops),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var slot int
	root.PersistentFlags().IntVar(&slot, "slot", -1, "the running testbed to act on, when several run")
	root.AddCommand(upCommand(), drillCommand(), cleanCommand())
	for _, op := range []string{"status", "kill", "stop", "start", "restart", "power-off", "power-on",
		"kill-zone", "revive-zone", "isolate", "partition", "heal", "impair", "clear"} {
		root.AddCommand(opCommand(op, &slot))
	}
	return root
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func buildBinary(ctx context.Context, binary string) (string, func(), error) {
	if binary != "" {
		abs, err := filepath.Abs(binary)
		return abs, func() {}, err
	}
	dir, err := os.MkdirTemp("", "slipway-testbed-build-")
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintln(os.Stderr, "building ./cmd/slipway ...")
	bin, err := testbed.BuildSlipway(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func upCommand() *cobra.Command {
	var regions, zones, dir, binary string
	var perZone int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a testbed and keep it running until Ctrl-C",
		Long: `Start a testbed: namespaces, bridges and links, every node installed by
install/install.sh into its own root under --dir and started, then wait for the
cluster to form. It prints the nodes and writes DIR/env, which points the
slipway and heroku CLIs at the first node. Ctrl-C stops every node and removes
the network (the files stay when --dir is given).`,
		Example: `  testbed up
  testbed up --per-zone 2
  testbed up --regions us,eu --dir /tmp/tb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			bin, cleanup, err := buildBinary(ctx, binary)
			if err != nil {
				return err
			}
			defer cleanup()
			var spec testbed.Spec
			for _, r := range strings.Split(regions, ",") {
				spec.Regions = append(spec.Regions, testbed.Region{Name: strings.TrimSpace(r),
					Zones: strings.Split(zones, ","), NodesPerZone: perZone})
			}
			tb, err := testbed.New(ctx, testbed.Options{Spec: spec, Binary: bin, Dir: dir,
				Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
			if err != nil {
				return err
			}
			defer func() {
				fmt.Fprintln(os.Stderr, "removing the testbed ...")
				if err := tb.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "testbed:", err)
				}
			}()
			if err := tb.Start(); err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err = tb.WaitReady(wctx)
			cancel()
			if err != nil {
				return err
			}
			envPath := filepath.Join(tb.Dir(), "env")
			if err := os.WriteFile(envPath, []byte(tb.Env()), 0o600); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprint(out, tb.Status())
			fmt.Fprintf(out, `
The testbed is up (slot %d). In another shell:

  . %s                    # SLIPWAY_API_URL, SLIPWAY_API_TOKEN, HEROKU_HOST, ...
  slipway nodes
  go run ./testbed/cmd/testbed kill n1     # or isolate zone:a, impair n2 --loss 20, heal, status ...

Ctrl-C removes it.
`, tb.Slot(), envPath)
			err = tb.ServeControl(ctx)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&regions, "regions", "local", "comma-separated region names")
	f.StringVar(&zones, "zones", "a,b,c", "comma-separated zone names (in every region)")
	f.IntVar(&perZone, "per-zone", 1, "nodes per zone")
	f.StringVar(&dir, "dir", "", "directory for the nodes' roots and logs (default: a temporary directory, removed at the end)")
	f.StringVar(&binary, "binary", "", "slipway binary to install (default: build ./cmd/slipway)")
	return cmd
}

func opCommand(op string, slot *int) *cobra.Command {
	var c testbed.Command
	short := ""
	for _, line := range strings.Split(testbed.Ops, "\n") {
		if strings.HasPrefix(line, op+" ") {
			short = strings.TrimSpace(line[len(op):])
		}
	}
	cmd := &cobra.Command{
		Use:   op,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			s := *slot
			if s < 0 {
				running := testbed.RunningSlots()
				switch len(running) {
				case 0:
					return errors.New("no testbed is running: start one with `testbed up`")
				case 1:
					s = running[0]
				default:
					return fmt.Errorf("testbeds run in slots %v: choose one with --slot", running)
				}
			}
			c.Op, c.Args = op, args
			out, err := testbed.SendCommand(cmd.Context(), s, c)
			fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	if op == "impair" {
		cmd.Flags().DurationVar(&c.Delay, "delay", 0, "latency added to every packet (needs tc netem)")
		cmd.Flags().DurationVar(&c.Jitter, "jitter", 0, "random variation of the latency")
		cmd.Flags().Float64Var(&c.Loss, "loss", 0, "percentage of packets dropped")
	}
	return cmd
}

func drillCommand() *cobra.Command {
	var long bool
	var binary string
	cmd := &cobra.Command{
		Use:   "drill NAME|all",
		Short: "Run a failure drill on a fresh testbed and print its report",
		Long: `Run a failure drill on a fresh testbed (removed afterwards) and print its
report; docs/drills.md explains how to read it. Drills: ` + strings.Join(drillNames(), ", ") + `.
It exits non-zero when a drill finds a problem.`,
		Example: `  testbed drill zone-loss
  testbed drill all --long`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var list []drills.Drill
			if args[0] == "all" {
				list = drills.All()
			} else {
				d, err := drills.ByName(args[0])
				if err != nil {
					return err
				}
				list = []drills.Drill{d}
			}
			bin, cleanup, err := buildBinary(ctx, binary)
			if err != nil {
				return err
			}
			defer cleanup()
			slugDir, err := os.MkdirTemp("", "slipway-drill-slug-")
			if err != nil {
				return err
			}
			slug, err := drills.BuildWebSlug(ctx, slugDir)
			os.RemoveAll(slugDir)
			if err != nil {
				return err
			}
			opts := drills.Options{Long: long, Slug: slug, Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
			failed := 0
			for _, d := range list {
				problems, err := runDrill(ctx, d, bin, opts, cmd)
				if err != nil {
					return err
				}
				if len(problems) > 0 {
					failed++
					fmt.Fprintf(cmd.OutOrStdout(), "FAILED: %s\n\n", strings.Join(problems, "; "))
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "PASSED\n\n")
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d drills failed", failed, len(list))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&long, "long", false, "the longer variant: two nodes per zone, longer phases")
	cmd.Flags().StringVar(&binary, "binary", "", "slipway binary to install (default: build ./cmd/slipway)")
	return cmd
}

func runDrill(ctx context.Context, d drills.Drill, bin string, opts drills.Options, cmd *cobra.Command) ([]string, error) {
	tb, err := drills.NewTestbed(ctx, bin, opts)
	if err != nil {
		return nil, err
	}
	defer tb.Close()
	rep, err := drills.Run(ctx, d, tb, opts)
	if rep != nil {
		fmt.Fprint(cmd.OutOrStdout(), rep.String())
	}
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, tb.Logs(30))
	}
	return rep.Problems(d.ZeroFailures), nil
}

func drillNames() []string {
	var out []string
	for _, d := range drills.All() {
		out = append(out, d.Name)
	}
	return out
}

func cleanCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove what crashed testbeds left behind (namespaces, links, processes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, err := testbed.CleanLeftovers(cmd.Context())
			for _, r := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), "removed", r)
			}
			if len(removed) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to clean")
			}
			return err
		},
	}
}
