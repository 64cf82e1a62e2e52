package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
)

// dynoPIDs finds the processes of the dev cluster in dir that serve on
// port (a dyno's process group: its $PORT is in their environment).
func dynoPIDs(dir string, port int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || !strings.HasPrefix(cwd, dir) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "PORT="+strconv.Itoa(port) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// Done means 1 of the router issue: with an app scaled to 3 web dynos,
// requests to any node's router reach all three dynos, and kill -9 of one
// dyno's process during a steady request stream fails no request.
func TestRouterMeshReachesAllDynosAndSurvivesKillNine(t *testing.T) {
	d := startDev(t, 3, "")
	t.Cleanup(func() { killDynoProcesses(d.dir) })
	ctx := context.Background()
	deployWebapp(t, d, "mesh")
	q := api.Quantity{N: 3}
	if _, err := d.client("node-1").UpdateFormation(ctx, "mesh", []api.FormationUpdate{{Type: "web", Quantity: &q}}); err != nil {
		t.Fatal(err)
	}
	web := upDynos(t, d, "mesh", "web", 3)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	get := func(node string) (string, error) {
		req, _ := http.NewRequest(http.MethodGet, d.node(node).Router+"/", nil)
		req.Host = "mesh.localhost"
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %.100s", resp.Status, b)
		}
		return string(b), nil
	}
	nodes := []string{"node-1", "node-2", "node-3"}
	// The routers learn the dynos from the replicated state: every node's
	// router reaches all three.
	for _, node := range nodes {
		eventually(t, 30*time.Second, node+"'s router reaching web.1, web.2 and web.3", func() error {
			seen := map[string]bool{}
			for i := 0; i < 60 && len(seen) < 3; i++ {
				body, err := get(node)
				if err != nil {
					return err
				}
				if f := strings.Fields(body); len(f) > 2 {
					seen[f[2]] = true
				}
			}
			if len(seen) != 3 {
				var addrs []string
				for _, dy := range web {
					addrs = append(addrs, dy.Name+"@"+dy.Node+"="+d.dynoAddr(t, "mesh", dy))
				}
				logs, _ := d.run(nil, slipwayBin, "logs", "-a", "mesh", "-n", "20")
				return fmt.Errorf("reached %v; dynos %v; logs:\n%s", seen, addrs, logs)
			}
			return nil
		})
	}

	// A steady stream through all three routers; kill -9 of web.2's
	// process in the middle of it.
	victim := web[1]
	_, portS, _ := strings.Cut(d.dynoAddr(t, "mesh", victim), ":")
	port, _ := strconv.Atoi(portS)
	pids := dynoPIDs(d.dir, port)
	if len(pids) == 0 {
		t.Fatalf("no process found for %s on port %d", victim.Name, port)
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(node string) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(node); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, node+": "+err.Error())
					continue
				}
				ok.Add(1)
			}
		}(nodes[g%3])
	}
	eventually(t, 30*time.Second, "a steady stream", func() error {
		if n := ok.Load(); n < 300 {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	})
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	before := ok.Load()
	eventually(t, 60*time.Second, "the stream to go on after the kill", func() error {
		if n := ok.Load() - before; n < 1000 {
			return fmt.Errorf("%d requests since the kill", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	t.Logf("%d requests ok, %d failed; killed %s (pids %v)", ok.Load(), failed.Load(), victim.Name, pids)
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed around kill -9 of %s (first: %v)", failed.Load(), victim.Name, firstErr.Load())
	}
}
