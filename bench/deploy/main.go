// Command deploy measures Slipway's deploys on a dev cluster: the time from
// `git push` of a small Go web app to the new release answering HTTP
// through the router, for a first push (no build cache) and a cached push
// (a one-line change, pushed through another node), as the median of
// several runs; the compressed slug size; and the peak memory (RSS) of the
// busiest node during a build — the agent and every process under it
// (build dyno, buildpack, go compiler, the app's dynos).
//
//	go run ./bench/deploy [-binary bin/slipway] [-runs 5]
//
// It starts its own `slipway dev` cluster in a temporary directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/devcluster"
)

const appSource = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, MESSAGE) })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`

func main() {
	binary := flag.String("binary", "", "slipway binary (default: build ./cmd/slipway)")
	runs := flag.Int("runs", 5, "runs (apps) to take the median of")
	flag.Parse()
	if err := run(*binary, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(binary string, runs int) error {
	tmp, err := os.MkdirTemp("", "slipway-bench-deploy-")
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
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = c.WaitReady(wctx)
	cancel()
	if err != nil {
		return err
	}
	nodes := c.Nodes()
	cl := client.New(nodes[0].API, c.Token())
	mem := &sampler{pids: map[string]int{}}
	for _, n := range nodes {
		mem.pids[n.Name] = n.PID
	}
	go mem.run()
	var first, cached []time.Duration
	var slugSize int64
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("bench%d", i)
		if _, err := cl.CreateApp(ctx, api.AppCreateRequest{Name: &name}); err != nil {
			return err
		}
		repo := filepath.Join(tmp, name)
		if err := gitInit(repo); err != nil {
			return err
		}
		for j, node := range []devcluster.NodeInfo{nodes[i%len(nodes)], nodes[(i+1)%len(nodes)]} {
			msg := fmt.Sprintf("%s push %d at %d", name, j, time.Now().UnixNano())
			if err := commit(repo, msg); err != nil {
				return err
			}
			start := time.Now()
			url := strings.Replace(node.API, "http://", "http://heroku:"+c.Token()+"@", 1) + "/" + name + ".git"
			if out, err := git(repo, "push", "--quiet", url, "main"); err != nil {
				return fmt.Errorf("push: %v\n%s", err, out)
			}
			if err := waitAnswer(nodes[0].Router, name, msg); err != nil {
				return err
			}
			d := time.Since(start)
			if j == 0 {
				first = append(first, d)
			} else {
				cached = append(cached, d)
			}
			fmt.Printf("run %d %-6s push via %s: %v\n", i+1, map[int]string{0: "first", 1: "cached"}[j], node.Name, d.Round(10*time.Millisecond))
		}
		if sl, err := cl.Slugs(ctx, name, client.ListOptions{}); err == nil && len(sl) > 0 && sl[len(sl)-1].Size != nil {
			slugSize = *sl[len(sl)-1].Size
		}
	}
	node, peak := mem.peak()
	fmt.Printf("\ngit push → new release answering HTTP (median of %d): first push %v, cached push %v\n", runs, median(first), median(cached))
	fmt.Printf("slug size: %.1f MB (%d bytes)\n", float64(slugSize)/(1<<20), slugSize)
	fmt.Printf("peak memory of a node during the builds (agent + build dyno + go + dynos, RSS): %.0f MB on %s\n", float64(peak)/(1<<20), node)
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2].Round(10 * time.Millisecond)
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.com", "GIT_COMMITTER_NAME=bench",
		"GIT_COMMITTER_EMAIL=bench@example.com", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func gitInit(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if out, err := git(dir, "init", "--quiet", "--initial-branch=main"); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/benchapp\n\ngo 1.22\n"), 0o644)
}

func commit(dir, msg string) error {
	src := strings.Replace(appSource, "MESSAGE", strconv.Quote(msg), 1)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return err
	}
	if out, err := git(dir, "add", "-A"); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if out, err := git(dir, "commit", "--quiet", "-m", msg); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func waitAnswer(router, app, want string) error {
	deadline := time.Now().Add(3 * time.Minute)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, router+"/", nil)
		req.Host = app + ".localhost"
		if resp, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), want) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered %q", app, want)
}

// sampler records the peak RSS of each node's process tree.
type sampler struct {
	mu    sync.Mutex
	pids  map[string]int
	peaks map[string]int64
}

func (s *sampler) run() {
	s.peaks = map[string]int64{}
	for {
		children := childrenMap()
		for name, pid := range s.pids {
			total := treeRSS(pid, children)
			s.mu.Lock()
			if total > s.peaks[name] {
				s.peaks[name] = total
			}
			s.mu.Unlock()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *sampler) peak() (string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, max := "", int64(0)
	for n, p := range s.peaks {
		if p > max {
			best, max = n, p
		}
	}
	return best, max
}

// childrenMap maps each pid to its children (from /proc/*/stat).
func childrenMap() map[int][]int {
	out := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[ppid] = append(out[ppid], pid)
	}
	return out
}

func treeRSS(pid int, children map[int][]int) int64 {
	total := rss(pid)
	for _, c := range children[pid] {
		total += treeRSS(c, children)
	}
	return total
}

func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
