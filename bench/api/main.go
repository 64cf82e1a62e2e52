// Command api measures a dev cluster's API: write throughput and latency of
// config-var writes (what `heroku config:set` does) at several client
// counts, and leader failover time (kill -9 of the leader's process to the
// first successful write through a survivor), as the median of several runs.
//
//	go run ./bench/api [-binary bin/slipway] [-duration 10s] [-clients 1,32] [-failovers 5]
//
// It starts its own `slipway dev` cluster in a temporary directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/devcluster"
)

func main() {
	binary := flag.String("binary", "", "slipway binary (default: build ./cmd/slipway)")
	duration := flag.Duration("duration", 10*time.Second, "how long each throughput run lasts")
	clientsFlag := flag.String("clients", "1,32", "comma-separated concurrent client counts")
	failovers := flag.Int("failovers", 5, "leader failover runs")
	flag.Parse()
	if err := run(*binary, *duration, *clientsFlag, *failovers); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(binary string, duration time.Duration, clientsFlag string, failovers int) error {
	tmp, err := os.MkdirTemp("", "slipway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if binary == "" {
		binary = filepath.Join(tmp, "slipway")
		build := exec.Command("go", "build", "-o", binary, "./cmd/slipway")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building slipway: %w", err)
		}
	}
	ctx := context.Background()
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: filepath.Join(tmp, "data"), BasePort: 20000 + 10*rand.IntN(3000), Binary: binary})
	if err != nil {
		return err
	}
	defer c.Stop(ctx)
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err = c.WaitReady(wctx)
	cancel()
	if err != nil {
		return err
	}
	nodes := c.Nodes()
	clients := make([]*client.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = client.New(n.API, c.Token(), client.WithHTTPClient(&http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 256}}))
	}
	if _, err := clients[0].CreateApp(ctx, api.AppCreateRequest{Name: ptr("bench")}); err != nil {
		return err
	}
	fmt.Printf("Slipway API benchmark: %d-node dev cluster on %s, %d CPUs\n", len(nodes), hostname(), runtimeCPUs())
	fmt.Printf("Writes are PATCH /apps/bench/config-vars {KEY: value} (each makes a release), spread over all nodes.\n\n")
	fmt.Printf("%-8s %10s %10s %10s %10s %10s\n", "clients", "writes", "writes/s", "p50", "p99", "errors")
	for _, s := range strings.Split(clientsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad client count %q", s)
		}
		res := throughput(ctx, clients, n, duration)
		fmt.Printf("%-8d %10d %10.0f %10s %10s %10d\n", n, res.count, float64(res.count)/duration.Seconds(),
			pct(res.lat, 50), pct(res.lat, 99), res.errors)
	}
	if failovers > 0 {
		fmt.Printf("\nLeader failover (kill -9 of the leader, then a write through a survivor every 20 ms):\n")
		var times []time.Duration
		restarted := map[string]int{}
		for i := 0; i < failovers; i++ {
			d, leader, err := failover(ctx, c, binary, restarted)
			if err != nil {
				return err
			}
			fmt.Printf("  run %d: killed %s, first successful write after %v\n", i+1, leader, d.Round(time.Millisecond))
			times = append(times, d)
		}
		slices.Sort(times)
		fmt.Printf("  median %v, min %v, max %v over %d runs\n", times[len(times)/2].Round(time.Millisecond),
			times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), len(times))
	}
	return nil
}

type result struct {
	count, errors int
	lat           []time.Duration
}

func throughput(ctx context.Context, clients []*client.Client, n int, d time.Duration) result {
	var mu sync.Mutex
	var res result
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			var lat []time.Duration
			count, errs := 0, 0
			for i := 0; time.Now().Before(deadline); i++ {
				v := strconv.Itoa(i)
				start := time.Now()
				_, err := c.UpdateConfigVars(ctx, "bench", map[string]*string{fmt.Sprintf("W%d", w): &v})
				if err != nil {
					errs++
					continue
				}
				lat = append(lat, time.Since(start))
				count++
			}
			mu.Lock()
			res.count += count
			res.errors += errs
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

// failover kills the leader, times the first successful write through a
// survivor, and restarts the killed node (recording its new pid in
// restarted, since the dev cluster only knows the first ones).
func failover(ctx context.Context, c *devcluster.Cluster, binary string, restarted map[string]int) (time.Duration, string, error) {
	nodes := c.Nodes()
	cl := func(n devcluster.NodeInfo) *client.Client {
		return client.New(n.API, c.Token(), client.WithHTTPClient(&http.Client{Timeout: 2 * time.Second}))
	}
	var leader devcluster.NodeInfo
	for start := time.Now(); leader.Name == "" && time.Since(start) < time.Minute; time.Sleep(100 * time.Millisecond) {
		for _, n := range nodes {
			if info, err := cl(n).Raft(ctx); err == nil && info.Leader != "" && healthy(info) {
				for _, m := range nodes {
					if m.Name == info.Leader {
						leader = m
					}
				}
				break
			}
		}
	}
	if leader.Name == "" {
		return 0, "", fmt.Errorf("no healthy leader")
	}
	pid, err := pidOf(leader, restarted)
	if err != nil {
		return 0, "", err
	}
	var survivor devcluster.NodeInfo
	for _, n := range nodes {
		if n.Name != leader.Name {
			survivor = n
		}
	}
	sc := cl(survivor)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, "", fmt.Errorf("killing %s: %w", leader.Name, err)
	}
	killed := time.Now()
	var took time.Duration
	for i := 0; ; i++ {
		v := strconv.Itoa(i)
		if _, err := sc.UpdateConfigVars(ctx, "bench", map[string]*string{"FAILOVER": &v}); err == nil {
			took = time.Since(killed)
			break
		}
		if time.Since(killed) > time.Minute {
			return 0, "", fmt.Errorf("no write succeeded within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Restart the killed node and wait until the cluster is healthy again.
	cmd := exec.Command(binary, "agent", "--config", leader.Config)
	lf, _ := os.OpenFile(filepath.Join(filepath.Dir(leader.Config), "agent.log"), os.O_APPEND|os.O_WRONLY, 0o600)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	restarted[leader.Name] = cmd.Process.Pid
	for start := time.Now(); time.Since(start) < 2*time.Minute; time.Sleep(200 * time.Millisecond) {
		if info, err := sc.Raft(ctx); err == nil && healthy(info) && len(info.Peers) == len(nodes) {
			return took, leader.Name, nil
		}
	}
	return 0, "", fmt.Errorf("cluster did not become healthy after restarting %s", leader.Name)
}

func pidOf(n devcluster.NodeInfo, restarted map[string]int) (int, error) {
	if pid, ok := restarted[n.Name]; ok {
		return pid, nil
	}
	if n.PID == 0 {
		return 0, fmt.Errorf("no pid for %s", n.Name)
	}
	return n.PID, nil
}

func healthy(info *api.RaftInfo) bool {
	if info.Healthy != nil && !*info.Healthy {
		return false
	}
	for _, p := range info.Peers {
		if p.Healthy != nil && !*p.Healthy {
			return false
		}
	}
	return info.Leader != ""
}

func pct(lat []time.Duration, p int) string {
	if len(lat) == 0 {
		return "-"
	}
	slices.Sort(lat)
	i := len(lat) * p / 100
	if i >= len(lat) {
		i = len(lat) - 1
	}
	return lat[i].Round(10 * time.Microsecond).String()
}

func ptr[T any](v T) *T { return &v }

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func runtimeCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
