// Command dynos measures dyno scheduling on a dev cluster: create → up
// (release a slug, time until web.1 answers), a rolling release of N web
// dynos (a config change, time until all N run the new release; the app
// must never have zero web dynos up), and rescheduling after a node loss
// (kill -9 of an agent, time until its dynos are up elsewhere). It prints
// the median of several runs of each.
//
//	go run ./bench/dynos [-binary bin/slipway] [-web 4] [-runs 5]
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/devcluster"
)

func main() {
	binary := flag.String("binary", "", "slipway binary (default: build ./cmd/slipway)")
	web := flag.Int("web", 4, "web dynos in the rolling release")
	runs := flag.Int("runs", 5, "runs of each measurement")
	flag.Parse()
	if err := run(*binary, *web, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	c      *devcluster.Cluster
	nodes  []devcluster.NodeInfo
	cl     *client.Client
	tmp    string
	binary string
	pids   map[string]int
}

func run(binary string, web, runs int) error {
	tmp, err := os.MkdirTemp("", "slipway-bench-dynos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if binary == "" {
		binary = filepath.Join(tmp, "slipway")
		if err := gobuild(binary, "./cmd/slipway"); err != nil {
			return err
		}
	}
	ctx := context.Background()
	c, err := devcluster.Start(ctx, devcluster.Options{Dir: filepath.Join(tmp, "data"), BasePort: 20000 + 10*rand.IntN(3000), Binary: binary})
	if err != nil {
		return err
	}
	b := &bench{c: c, nodes: c.Nodes(), tmp: tmp, binary: binary, pids: map[string]int{}}
	defer func() {
		c.Stop(ctx)
		for _, pid := range b.pids {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		killUnder(tmp)
	}()
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err = c.WaitReady(wctx)
	cancel()
	if err != nil {
		return err
	}
	b.cl = client.New(b.nodes[0].API, c.Token(), client.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	tgz, sum, err := b.slug()
	if err != nil {
		return err
	}
	fmt.Printf("Slipway dyno benchmark: %d-node dev cluster, process runtime, %d runs each\n\n", len(b.nodes), runs)

	var start, roll, move []time.Duration
	for i := 0; i < runs; i++ {
		app := fmt.Sprintf("bench-%d", i)
		d, err := b.createToUp(ctx, app, tgz, sum)
		if err != nil {
			return err
		}
		start = append(start, d)
		if d, err = b.rolling(ctx, app, web); err != nil {
			return err
		}
		roll = append(roll, d)
		if d, err = b.nodeLoss(ctx, app, web); err != nil {
			return err
		}
		move = append(move, d)
		_, _ = b.cl.DeleteApp(ctx, app)
	}
	report := func(what string, ds []time.Duration) {
		slices.Sort(ds)
		fmt.Printf("%-52s median %8v   min %8v   max %8v\n", what, ds[len(ds)/2].Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	report("release a slug → web.1 answering", start)
	report(fmt.Sprintf("rolling release of %d web dynos (never zero up)", web), roll)
	report("kill -9 of a node → its dynos up on others", move)
	return nil
}

func gobuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// slug builds e2e/testdata/webapp into a Heroku-layout slug.
func (b *bench) slug() ([]byte, string, error) {
	dir := filepath.Join(b.tmp, "slug")
	if err := os.MkdirAll(filepath.Join(dir, "app", "bin"), 0o755); err != nil {
		return nil, "", err
	}
	if err := gobuild(filepath.Join(dir, "app", "bin", "web"), "./e2e/testdata/webapp"); err != nil {
		return nil, "", err
	}
	out, err := exec.Command("tar", "-C", dir, "-czf", "-", "./app").Output()
	if err != nil {
		return nil, "", fmt.Errorf("tar: %w", err)
	}
	sum := sha256.Sum256(out)
	return out, "SHA256:" + hex.EncodeToString(sum[:]), nil
}

func (b *bench) createToUp(ctx context.Context, app string, tgz []byte, sum string) (time.Duration, error) {
	if _, err := b.cl.CreateApp(ctx, api.AppCreateRequest{Name: &app}); err != nil {
		return 0, err
	}
	slug, err := b.cl.CreateSlug(ctx, app, api.SlugCreateRequest{ProcessTypes: map[string]string{"web": "bin/web"}, Checksum: &sum})
	if err != nil {
		return 0, err
	}
	if _, err := b.cl.UploadSlug(ctx, slug.Blob.URL, bytes.NewReader(tgz), int64(len(tgz))); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := b.cl.ReleaseSlug(ctx, app, slug.ID, ""); err != nil {
		return 0, err
	}
	if _, err := b.waitUp(ctx, app, 1, 0); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// waitUp waits for n web dynos up on release version (0: any); it fails
// if there is ever none up after the first was (during a roll).
func (b *bench) waitUp(ctx context.Context, app string, n, version int) ([]api.Dyno, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ds, err := b.cl.Dynos(ctx, app)
		if err == nil {
			var up []api.Dyno
			for _, d := range ds {
				if d.Type == "web" && d.State == "up" && (version == 0 || d.Release.Version == version) {
					up = append(up, d)
				}
			}
			if len(up) == n && len(ds) == n {
				return up, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s: %d web dynos not up in time", app, n)
}

func (b *bench) rolling(ctx context.Context, app string, web int) (time.Duration, error) {
	q := api.Quantity{N: web}
	if _, err := b.cl.UpdateFormation(ctx, app, []api.FormationUpdate{{Type: "web", Quantity: &q}}); err != nil {
		return 0, err
	}
	if _, err := b.waitUp(ctx, app, web, 0); err != nil {
		return 0, err
	}
	rels, err := b.cl.Releases(ctx, app, client.ListOptions{All: true})
	if err != nil {
		return 0, err
	}
	next := rels[len(rels)-1].Version + 1
	v := strconv.Itoa(next)
	t0 := time.Now()
	if _, err := b.cl.UpdateConfigVars(ctx, app, map[string]*string{"ROLL": &v}); err != nil {
		return 0, err
	}
	for time.Now().Before(t0.Add(2 * time.Minute)) {
		ds, err := b.cl.Dynos(ctx, app)
		if err != nil {
			continue
		}
		up, current := 0, 0
		for _, d := range ds {
			if d.Type == "web" && d.State == "up" {
				up++
				if d.Release.Version == next {
					current++
				}
			}
		}
		if up == 0 {
			return 0, fmt.Errorf("%s had no web dyno up during the roll", app)
		}
		if current == web && len(ds) == web {
			return time.Since(t0), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: roll did not finish", app)
}

func (b *bench) nodeLoss(ctx context.Context, app string, web int) (time.Duration, error) {
	up, err := b.waitUp(ctx, app, web, 0)
	if err != nil {
		return 0, err
	}
	var info api.RaftInfo
	if _, err := b.cl.Do(ctx, "GET", "/cluster/raft", nil, &info, nil); err != nil {
		return 0, err
	}
	victim := ""
	for _, d := range up {
		if d.Node != info.Leader && d.Node != b.nodes[0].Name {
			victim = d.Node
			break
		}
	}
	if victim == "" {
		return 0, fmt.Errorf("no dyno on a follower other than %s", b.nodes[0].Name)
	}
	pid := b.pids[victim]
	for _, n := range b.nodes {
		if n.Name == victim && pid == 0 {
			pid = n.PID
		}
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, err
	}
	for time.Now().Before(t0.Add(2 * time.Minute)) {
		ds, err := b.cl.Dynos(ctx, app)
		if err == nil {
			off := 0
			for _, d := range ds {
				if d.Type == "web" && d.State == "up" && d.Node != victim {
					off++
				}
			}
			if off == web {
				took := time.Since(t0)
				return took, b.restart(ctx, victim)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("dynos of %s not moved", victim)
}

// restart starts a killed node again (it adopts or stops its old dynos) and
// waits until it is back in the cluster.
func (b *bench) restart(ctx context.Context, name string) error {
	var cfg string
	for _, n := range b.nodes {
		if n.Name == name {
			cfg = n.Config
		}
	}
	cmd := exec.Command(b.binary, "agent", "--config", cfg)
	lf, _ := os.OpenFile(filepath.Join(filepath.Dir(cfg), "agent.log"), os.O_APPEND|os.O_WRONLY, 0o600)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.pids[name] = cmd.Process.Pid
	for t0 := time.Now(); time.Since(t0) < time.Minute; time.Sleep(200 * time.Millisecond) {
		nodes, err := b.cl.Nodes(ctx)
		if err != nil {
			continue
		}
		for _, n := range nodes {
			if n.Name == name && n.GossipState == "alive" {
				return nil
			}
		}
	}
	return fmt.Errorf("%s did not rejoin", name)
}

// killUnder kills processes whose working directory is under dir (dynos
// left by killed agents).
func killUnder(dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && strings.HasPrefix(cwd, dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
