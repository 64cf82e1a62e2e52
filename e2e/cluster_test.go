package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

func TestQuickstartDevCluster(t *testing.T) {
	d := startDev(t, 3, "")
	ctx := context.Background()
	// A leader and 3 voters in 3 zones.
	eventually(t, 60*time.Second, "3 voters in zones a, b, c", func() error {
		info, err := d.raft()
		if err != nil {
			return err
		}
		var zones []string
		for _, p := range info.Peers {
			if p.Role == "leader" || p.Role == "voter" {
				zones = append(zones, p.Zone)
			}
		}
		sort.Strings(zones)
		if info.Leader == "" || strings.Join(zones, ",") != "a,b,c" {
			return fmt.Errorf("leader %q, voter zones %v", info.Leader, zones)
		}
		return nil
	})
	// The env file has everything the README promises.
	env := d.envVars()
	for _, k := range []string{"SLIPWAY_API_URL", "SLIPWAY_API_TOKEN", "SLIPWAY_ROUTER_URL", "SLIPWAY_DOMAIN", "HEROKU_HOST", "HEROKU_API_KEY"} {
		if env[k] == "" {
			t.Fatalf("env file lacks %s: %v", k, env)
		}
	}
	if st, err := os.Stat(d.dir + "/env"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("env file mode: %v %v", st.Mode(), err)
	}
	for _, n := range d.nodes {
		if n.PID <= 0 || syscall.Kill(n.PID, 0) != nil {
			t.Fatalf("nodes.json: %s pid %d not running", n.Name, n.PID)
		}
	}
	// The slipway CLI shows the same.
	out, err := d.run(nil, slipwayBin, "nodes")
	if err != nil {
		t.Fatalf("slipway nodes: %v\n%s", err, out)
	}
	for _, want := range []string{"node-1", "node-2", "node-3", "leader", "voter", "alive"} {
		if !strings.Contains(out, want) {
			t.Fatalf("slipway nodes output lacks %q:\n%s", want, out)
		}
	}
	// Writes through every node are visible on every node.
	c1 := d.client("node-1")
	if _, err := c1.CreateApp(ctx, api.AppCreateRequest{Name: ptr("quick")}); err != nil {
		t.Fatal(err)
	}
	for _, n := range d.nodes {
		v := "set-on-" + n.Name
		if _, err := d.client(n.Name).UpdateConfigVars(ctx, "quick", map[string]*string{strings.ToUpper(strings.ReplaceAll(n.Name, "-", "_")): &v}); err != nil {
			t.Fatalf("write through %s: %v", n.Name, err)
		}
	}
	// Reads are local: each replica shows all three writes once it has
	// applied them (within the replication lag).
	for _, n := range d.nodes {
		eventually(t, 10*time.Second, n.Name+" sees all three writes", func() error {
			cfg, err := d.client(n.Name).ConfigVars(ctx, "quick")
			if err != nil || len(cfg) != 3 {
				return fmt.Errorf("config %v (%v)", cfg, err)
			}
			return nil
		})
	}
	// Metrics.
	noAuth, err := http.Get(d.node("node-1").API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	noAuth.Body.Close()
	if noAuth.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %s", noAuth.Status)
	}
	req, _ := http.NewRequest("GET", d.node("node-1").API+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"slipway_api_request", "slipway_fsm_records", "raft_"} {
		if !strings.Contains(string(body), m) {
			t.Fatalf("/metrics lacks %s", m)
		}
	}
	// Drain a node: recorded, and advertised in gossip.
	if _, err := c1.DrainNode(ctx, "node-3", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "node-3 advertises draining", func() error {
		nodes, err := c1.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Name == "node-3" && n.Draining {
				return nil
			}
		}
		return fmt.Errorf("not draining yet")
	})
}

func ptr[T any](v T) *T { return &v }

// TestLeaderKillFailover kills the leader's process during a steady stream of
// writes through every node: writes resume on the survivors within seconds,
// no acknowledged write is lost, no write is applied twice, and the killed
// node catches up after a restart.
func TestLeaderKillFailover(t *testing.T) {
	d := startDev(t, 3, "")
	ctx := context.Background()
	if _, err := d.client("node-1").CreateApp(ctx, api.AppCreateRequest{Name: ptr("failover")}); err != nil {
		t.Fatal(err)
	}
	leader := d.leader()
	leaderPID := d.node(leader).PID

	type result struct {
		key     string
		ok      bool
		started time.Time
		at      time.Time
		err     error
	}
	var (
		mu       sync.Mutex
		results  []result
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		isKilled atomic.Bool
	)
	for _, n := range d.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := d.client(n.Name)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if n.Name == leader && isKilled.Load() {
					return // its node is dead
				}
				key := fmt.Sprintf("W_%s_%d", strings.ReplaceAll(n.Name, "-", "_"), i)
				v := fmt.Sprint(i)
				began := time.Now()
				_, err := c.UpdateConfigVars(ctx, "failover", map[string]*string{key: &v})
				mu.Lock()
				results = append(results, result{key: key, ok: err == nil, started: began, at: time.Now(), err: err})
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	killAt := time.Now()
	isKilled.Store(true)
	d.kill9(leader, leaderPID)
	// Wait until every survivor has had a successful write after the kill.
	var firstOK time.Time
	eventually(t, 60*time.Second, "writes through the survivors after the kill", func() error {
		mu.Lock()
		defer mu.Unlock()
		okAfter := map[string]bool{}
		for _, r := range results {
			if r.ok && r.started.After(killAt) {
				if firstOK.IsZero() || r.at.Before(firstOK) {
					firstOK = r.at
				}
				okAfter[r.key[:len("W_node_1")]] = true
			}
		}
		if len(okAfter) < 2 {
			return fmt.Errorf("survivors writing: %v", okAfter)
		}
		return nil
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("leader %s killed; the first write begun after the kill succeeded %v after it", leader, firstOK.Sub(killAt).Round(time.Millisecond))

	survivor := ""
	for _, n := range d.nodes {
		if n.Name != leader {
			survivor = n.Name
		}
	}
	sc := d.client(survivor)
	// A linearizable read: everything committed before it is included.
	var cfg map[string]string
	if _, err := sc.Do(ctx, "GET", "/apps/failover/config-vars", nil, &cfg, http.Header{"X-Slipway-Consistency": {"linearizable"}}); err != nil {
		t.Fatal(err)
	}
	acked, failed := 0, 0
	for _, r := range results {
		if r.ok {
			acked++
			if _, present := cfg[r.key]; !present {
				t.Fatalf("acknowledged write %s was lost", r.key)
			}
		} else {
			failed++
			if !strings.Contains(r.err.Error(), "503") && !strings.Contains(r.err.Error(), "unavailable") &&
				!strings.Contains(r.err.Error(), "connection refused") && !strings.Contains(r.err.Error(), "EOF") && !strings.Contains(r.err.Error(), "reset") {
				t.Errorf("write %s failed with an unclear error: %v", r.key, r.err)
			}
		}
	}
	// No write was applied twice: one release per key.
	rels, err := sc.Releases(ctx, "failover", client.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rels {
		seen[r.Description]++
		if seen[r.Description] > 1 && strings.HasPrefix(r.Description, "Set W_") {
			t.Fatalf("release %q applied twice", r.Description)
		}
	}
	t.Logf("%d writes acknowledged, %d failed during the failover (clear errors), %d releases", acked, failed, len(rels))

	// The killed node restarts from its data and catches up.
	d.restart(leader)
	lc := d.client(leader)
	eventually(t, 60*time.Second, leader+" catches up", func() error {
		got, err := lc.ConfigVars(ctx, "failover")
		if err != nil {
			return err
		}
		if len(got) != len(cfg) {
			return fmt.Errorf("%d of %d vars", len(got), len(cfg))
		}
		return nil
	})
}

// TestPowerCycleRestoresState kills every node at once, then starts the
// cluster again: it re-forms by itself with all its state.
func TestPowerCycleRestoresState(t *testing.T) {
	d := startDev(t, 3, "")
	ctx := context.Background()
	c := d.client("node-2")
	if _, err := c.CreateApp(ctx, api.AppCreateRequest{Name: ptr("powercycle")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		v := fmt.Sprint(i)
		if _, err := c.UpdateConfigVars(ctx, "powercycle", map[string]*string{fmt.Sprintf("K%d", i): &v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddDomain(ctx, "powercycle", "pc.example.com"); err != nil {
		t.Fatal(err)
	}
	before, err := c.Releases(ctx, "powercycle", client.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range d.nodes {
		d.kill9(n.Name, n.PID)
	}
	d.stop()
	d.launch()
	c = d.client("node-1")
	var after []api.Release
	eventually(t, 60*time.Second, "state after the power cycle", func() error {
		after, err = c.Releases(ctx, "powercycle", client.ListOptions{All: true})
		return err
	})
	if len(after) != len(before) || len(after) != 21 {
		t.Fatalf("releases before %d, after %d", len(before), len(after))
	}
	cfg, err := c.ConfigVars(ctx, "powercycle")
	if err != nil || len(cfg) != 20 || cfg["K19"] != "19" {
		t.Fatalf("config after power cycle: %v %v", cfg, err)
	}
	ds, err := c.Domains(ctx, "powercycle")
	if err != nil || len(ds) != 2 {
		t.Fatalf("domains after power cycle: %v %v", ds, err)
	}
	// And it takes writes again.
	v := "yes"
	if _, err := c.UpdateConfigVars(ctx, "powercycle", map[string]*string{"AFTER": &v}); err != nil {
		t.Fatal(err)
	}
}
