package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/devcluster"
)

// slipwayBin is the binary under test, built once by TestMain.
var slipwayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slipway-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	slipwayBin = filepath.Join(dir, "slipway")
	build := exec.Command("go", "build", "-o", slipwayBin, "../cmd/slipway")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building slipway:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dev is a `slipway dev` process and its cluster.
type dev struct {
	t     *testing.T
	dir   string
	base  int
	n     int
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	token string
	nodes []devcluster.NodeInfo

	mu       sync.Mutex
	restarts []*exec.Cmd
}

// freeBase finds a base port with n*10 free ports after it.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		base := 20000 + 10*rand.IntN(3000)
		ok := true
		var ls []net.Listener
		for p := base; p < base+10*n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
			u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			u.Close()
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// startDev runs `slipway dev` on a fresh directory (or dir, to resume).
func startDev(t *testing.T, nodes int, dir string) *dev {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	d := &dev{t: t, dir: dir, n: nodes, base: freeBase(t, nodes), out: &syncBuffer{}, done: make(chan struct{})}
	d.launch()
	t.Cleanup(d.cleanup)
	return d
}

func (d *dev) launch() {
	t := d.t
	t.Helper()
	d.out = &syncBuffer{}
	d.done = make(chan struct{})
	d.cmd = exec.Command(slipwayBin, "dev", "--data", d.dir, "--base-port", fmt.Sprint(d.base), "--nodes", fmt.Sprint(d.n))
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// If the test binary dies (a panic, go test's timeout), the cluster
	// goes with it: dev stops its nodes on SIGTERM.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(d.out.String(), "The cluster is up") {
		select {
		case <-d.done:
			t.Fatalf("slipway dev exited:\n%s\n%s", d.out.String(), d.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slipway dev did not come up:\n%s\n%s", d.out.String(), d.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(d.dir, "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d.nodes); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(d.dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	d.token = strings.TrimSpace(string(tok))
}

// logs returns the tail of every node's log (for failure messages).
func (d *dev) logs() string {
	var b strings.Builder
	for i := 1; i <= d.n; i++ {
		p := filepath.Join(d.dir, fmt.Sprintf("node-%d", i), "agent.log")
		data, _ := os.ReadFile(p)
		lines := strings.Split(string(data), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", p, strings.Join(lines, "\n"))
	}
	return b.String()
}

func (d *dev) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(40 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *dev) cleanup() {
	d.stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.restarts {
		if c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = c.Process.Kill()
			}
		}
	}
	if d.t.Failed() {
		d.t.Logf("slipway dev output:\n%s\n%s", d.out.String(), d.logs())
	}
}

func (d *dev) node(name string) devcluster.NodeInfo {
	for _, n := range d.nodes {
		if n.Name == name {
			return n
		}
	}
	d.t.Fatalf("no node %s", name)
	return devcluster.NodeInfo{}
}

func (d *dev) client(name string) *client.Client {
	return client.New(d.node(name).API, d.token, client.WithHTTPClient(&http.Client{Timeout: 20 * time.Second}))
}

// raft asks the first answering node for the Raft status.
func (d *dev) raft(skip ...string) (api.RaftInfo, error) {
	var last error
	for _, n := range d.nodes {
		if slices.Contains(skip, n.Name) {
			continue
		}
		info, err := d.client(n.Name).Raft(context.Background())
		if err == nil {
			return *info, nil
		}
		last = err
	}
	return api.RaftInfo{}, last
}

// leader waits for a leader and returns its name.
func (d *dev) leader(skip ...string) string {
	var name string
	eventually(d.t, 60*time.Second, "a leader", func() error {
		info, err := d.raft(skip...)
		if err != nil {
			return err
		}
		if info.Leader == "" || slices.Contains(skip, info.Leader) {
			return fmt.Errorf("no leader (state %s)", info.State)
		}
		name = info.Leader
		return nil
	})
	return name
}

// kill9 kills a node's agent process.
func (d *dev) kill9(name string, pid int) {
	d.t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		d.t.Fatalf("kill -9 %s (pid %d): %v", name, pid, err)
	}
}

// restart starts a node again by hand with its agent config, as the
// `slipway dev` message tells people to.
func (d *dev) restart(name string) {
	d.t.Helper()
	n := d.node(name)
	lf, err := os.OpenFile(filepath.Join(filepath.Dir(n.Config), "agent.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	cmd := exec.Command(slipwayBin, "agent", "--config", n.Config)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	d.restarts = append(d.restarts, cmd)
	d.mu.Unlock()
}

// envVars parses DIR/env.
func (d *dev) envVars() map[string]string {
	f, err := os.Open(filepath.Join(d.dir, "env"))
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// run runs a command with the cluster's env file applied and returns its
// combined output.
func (d *dev) run(extraEnv []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	env := os.Environ()
	for k, v := range d.envVars() {
		env = append(env, k+"="+v)
	}
	cmd.Env = append(env, extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}
