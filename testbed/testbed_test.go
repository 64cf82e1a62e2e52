package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/agent"
	"github.com/slipwayhq/slipway/api"
)

func TestPlanDefault(t *testing.T) {
	p, err := NewPlan(DefaultSpec(2), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 6 {
		t.Fatalf("want 6 nodes, got %d", len(p.Nodes))
	}
	want := []struct{ name, zone, addr string }{
		{"n1", "a", "10.213.49.11"}, {"n2", "b", "10.213.50.11"}, {"n3", "c", "10.213.51.11"},
		{"n4", "a", "10.213.49.12"}, {"n5", "b", "10.213.50.12"}, {"n6", "c", "10.213.51.12"},
	}
	for i, w := range want {
		n := p.Nodes[i]
		if n.Name != w.name || n.Zone != w.zone || n.Addr.String() != w.addr || n.Region != "local" {
			t.Errorf("node %d = %s %s/%s %s, want %s local/%s %s", i, n.Name, n.Region, n.Zone, n.Addr, w.name, w.zone, w.addr)
		}
		wantExpect := 0
		if i < 3 {
			wantExpect = 3
		}
		if n.BootstrapExpect != wantExpect {
			t.Errorf("%s bootstrap_expect %d, want %d", n.Name, n.BootstrapExpect, wantExpect)
		}
		if strings.Join(n.Join, ",") != "10.213.49.11:5002,10.213.50.11:5002,10.213.51.11:5002" {
			t.Errorf("%s joins %v", n.Name, n.Join)
		}
		if strings.Join(n.JoinWAN, ",") != "10.213.49.11:5004" {
			t.Errorf("%s joins WAN %v", n.Name, n.JoinWAN)
		}
	}
	for _, z := range p.Zones {
		if !SlotPrefix(3).Contains(z.Gateway) || !z.Subnet.Contains(z.Gateway) {
			t.Errorf("zone %s: gateway %s outside %s or %s", z.Name, z.Gateway, SlotPrefix(3), z.Subnet)
		}
	}
}

func TestPlanRegions(t *testing.T) {
	p, err := NewPlan(Spec{Regions: []Region{{Name: "us"}, {Name: "eu", Zones: []string{"x", "y"}, NodesPerZone: 1}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Regions(), ","); got != "us,eu" {
		t.Fatalf("regions %s", got)
	}
	seen := map[string]bool{}
	for _, n := range p.Nodes {
		if seen[n.Addr.String()] {
			t.Errorf("address %s used twice", n.Addr)
		}
		seen[n.Addr.String()] = true
		if strings.Join(n.JoinWAN, ",") != "10.213.0.11:5004,10.213.0.11:5004" && len(n.JoinWAN) != 2 {
			t.Errorf("%s WAN join %v", n.Name, n.JoinWAN)
		}
	}
	eu := p.Nodes[3:]
	if len(eu) != 2 || eu[0].BootstrapExpect != 2 || eu[1].BootstrapExpect != 2 || len(eu[0].Join) != 2 {
		t.Errorf("a two-node region bootstraps with 2: %+v", eu)
	}
	for _, bad := range []Spec{
		{Regions: []Region{{Name: "US"}}},
		{Regions: []Region{{Name: "us"}, {Name: "us"}}},
		{Regions: []Region{{Name: "us", Zones: []string{"a", "a"}}}},
		{Regions: []Region{{Name: "a-very-long-region"}}},
		{Regions: []Region{{Name: "us", NodesPerZone: -1}}},
	} {
		if _, err := NewPlan(bad, 0); err == nil {
			t.Errorf("NewPlan(%+v) accepted a bad spec", bad)
		}
	}
	if _, err := NewPlan(DefaultSpec(1), MaxSlots); err == nil {
		t.Error("slot out of range accepted")
	}
}

// Done means (issue 7): install.sh brings up a 3-node cluster in the
// testbed's namespaces, and `slipway nodes` shows 3 voters in 3 zones.
func TestInstallThreeNodeCluster(t *testing.T) {
	tb := newTestbed(t, DefaultSpec(1))
	ctx := context.Background()

	for _, n := range tb.Nodes() {
		cfg := agent.DefaultConfig()
		if err := agent.LoadFile(&cfg, n.Config); err != nil {
			t.Fatalf("%s: install.sh wrote a config the agent refuses: %v", n.Name, err)
		}
		if cfg.NodeName != n.Name || cfg.Zone != n.Zone || cfg.BindAddr != n.Addr || cfg.DataDir != filepath.Join(n.Root, "var/lib/slipway") {
			t.Errorf("%s: config %+v does not match the node", n.Name, cfg)
		}
		if _, err := os.Stat(filepath.Join(n.Root, "usr/local/bin/slipway")); err != nil {
			t.Errorf("%s: binary not installed: %v", n.Name, err)
		}
	}

	var nodes []api.NodeInfo
	eventually(t, time.Minute, "3 voters in 3 zones in `slipway nodes`", func() error {
		out, err := tb.CLI(ctx, "n2", "nodes", "--json")
		if err != nil {
			return err
		}
		nodes = nil
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			return fmt.Errorf("slipway nodes --json: %w: %s", err, out)
		}
		zones := map[string]bool{}
		voters := 0
		for _, n := range nodes {
			if n.RaftRole == "leader" || n.RaftRole == "voter" {
				voters++
				zones[n.Zone] = true
			}
		}
		if len(nodes) != 3 || voters != 3 || len(zones) != 3 {
			return fmt.Errorf("%d nodes, %d voters in zones %v", len(nodes), voters, zones)
		}
		return nil
	})
	table, err := tb.CLI(ctx, "n1", "nodes")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("slipway nodes:\n%s", table)
	for _, n := range tb.Nodes() {
		if !strings.Contains(table, n.Name) || !strings.Contains(table, n.Addr) {
			t.Errorf("`slipway nodes` does not list %s at %s", n.Name, n.Addr)
		}
	}
}

// curl asks a node's API from inside another node's namespace.
func curlFrom(tb *Testbed, from, to string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := tb.Exec(ctx, from, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", tb.APIURL(to)+"/health")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "200" {
		return fmt.Errorf("HTTP %s", out)
	}
	return nil
}

func TestFaults(t *testing.T) {
	tb := newTestbed(t, DefaultSpec(1))
	ctx := context.Background()
	reach := func(from, to string, want bool) {
		t.Helper()
		err := curlFrom(tb, from, to)
		if want && err != nil {
			t.Errorf("%s cannot reach %s: %v", from, to, err)
		}
		if !want && err == nil {
			t.Errorf("%s reaches %s; it should not", from, to)
		}
	}
	hostReaches := func(name string) bool {
		_, err := tb.Health(ctx, name)
		return err == nil
	}

	t.Run("partition", func(t *testing.T) {
		if err := tb.IsolateZone(ctx, "local", "c"); err != nil {
			t.Fatal(err)
		}
		reach("n3", "n1", false)
		reach("n1", "n3", false)
		reach("n1", "n2", true)
		if !hostReaches("n3") {
			t.Error("the machine must still reach an isolated node")
		}
		// Cut off from a quorum, n3 loses its leader.
		eventually(t, 30*time.Second, "n3 to lose its leader", func() error {
			h, err := tb.Health(ctx, "n3")
			if err != nil {
				return err
			}
			if h.Leader != "" {
				return fmt.Errorf("n3 still follows %s", h.Leader)
			}
			return nil
		})
		if err := tb.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		reach("n3", "n1", true)
		if err := tb.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("power", func(t *testing.T) {
		if err := tb.PowerOff(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		if n, _ := tb.Node("n2"); n.Running || !n.Dark {
			t.Fatalf("n2 after PowerOff: %+v", n)
		}
		if hostReaches("n2") {
			t.Error("a powered-off node answered")
		}
		if err := tb.PowerOn(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		if err := tb.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kill-restart", func(t *testing.T) {
		n, _ := tb.Node("n1")
		if err := tb.KillNode("n1"); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(n.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("n1's agent (pid %d) is still there after kill -9: %v", n.PID, err)
		}
		if err := tb.KillNode("n1"); err == nil {
			t.Error("killing a dead node should say it is not running")
		}
		if err := tb.StartNode("n1"); err != nil {
			t.Fatal(err)
		}
		if err := tb.RestartNode(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if err := tb.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if st := tb.ExitError("n1"); st != nil {
			t.Errorf("a graceful stop should exit 0, got %v", st)
		}
	})

	t.Run("loss", func(t *testing.T) {
		if err := tb.Impair(ctx, "n2", Impairment{Loss: 100}); err != nil {
			t.Fatal(err)
		}
		reach("n2", "n1", false)
		if err := tb.ClearImpairment(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		reach("n2", "n1", true)
	})

	t.Run("latency", func(t *testing.T) {
		err := tb.Impair(ctx, "n2", Impairment{Delay: 300 * time.Millisecond})
		if errors.Is(err, ErrNoNetem) {
			// This kernel (CONFIG_NET_SCH_NETEM unset) cannot delay
			// packets; the error must say so, and nothing is left behind.
			t.Logf("no netem on this kernel: %v", err)
			if n, _ := tb.Node("n2"); n.Impaired != "" {
				t.Errorf("a failed impairment is recorded: %s", n.Impaired)
			}
			reach("n2", "n1", true)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := tb.Exec(ctx, "n2", "curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}", "--max-time", "5", tb.APIURL("n1")+"/health")
		if err != nil {
			t.Fatal(err)
		}
		// A request needs at least two of n2's packets to go out one
		// after the other (SYN, then the request): at least 2 × 300 ms.
		if secs, _ := strconv.ParseFloat(strings.TrimSpace(out), 64); secs < 0.6 {
			t.Errorf("a request from n2 took %ss with 300ms of added latency", out)
		}
		if err := tb.ClearImpairment(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
	})
}

const helperEnv = "SLIPWAY_TESTBED_CRASH_HELPER"

// crashHelper starts a one-node testbed, prints its slot and the agent's
// pid, and waits to be killed.
func crashHelper() int {
	ctx := context.Background()
	tb, err := New(ctx, Options{Spec: Spec{Regions: []Region{{Name: "crash", Zones: []string{"a"}}}},
		Binary: os.Getenv(helperEnv)})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	if err := tb.Start(); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	n, _ := tb.Node("n1")
	fmt.Printf("READY %d %d %s\n", tb.Slot(), n.PID, tb.Dir())
	select {}
}

// A testbed whose process dies without closing it leaves namespaces behind;
// its agents die with it, and the next testbed (or CleanLeftovers) removes
// the rest.
func TestCrashedRunIsCleanedUp(t *testing.T) {
	needRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+slipwayBin)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var slot, pid int
	var dir string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERROR") {
			t.Fatal(line)
		}
		if _, err := fmt.Sscanf(line, "READY %d %d %s", &slot, &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatal("the helper did not start its testbed")
	}
	defer os.RemoveAll(dir)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	eventually(t, 10*time.Second, "the agent to die with the testbed process", func() error {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("agent pid %d still exists (%v)", pid, err)
		}
		return nil
	})
	ctx := context.Background()
	left, err := namespaces(ctx, prefix(slot))
	if err != nil || len(left) == 0 {
		t.Fatalf("expected the crashed run's namespaces to be left over: %v %v", left, err)
	}
	removed, err := CleanLeftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("removed: %s", strings.Join(removed, ", "))
	if left, _ := namespaces(ctx, prefix(slot)); len(left) != 0 {
		t.Errorf("namespaces left after CleanLeftovers: %v", left)
	}
	if linkExists(ctx, "", uplinkName(slot)) {
		t.Errorf("link %s left after CleanLeftovers", uplinkName(slot))
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}
