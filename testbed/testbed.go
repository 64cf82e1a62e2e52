package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/agent"
	"github.com/slipwayhq/slipway/client"
)

// Options configure a testbed.
type Options struct {
	Spec Spec
	// Binary is the slipway binary every node runs (BuildSlipway makes one).
	Binary string
	// InstallScript is install/install.sh (default: found from the
	// module root of the working directory).
	InstallScript string
	// Dir holds the nodes' roots, the cluster key and token; default a new
	// temporary directory, removed by Close unless KeepDir.
	Dir     string
	KeepDir bool
	// Logf receives progress messages (default: none).
	Logf func(format string, args ...any)
}

// Node describes one node.
type Node struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Zone   string `json:"zone"`
	Addr   string `json:"addr"`
	API    string `json:"api"`
	// Router is the node's router (apps answer there with Host
	// APP.<domain>).
	Router    string `json:"router"`
	Namespace string `json:"namespace"`
	// Root is the directory install.sh installed the node into; Config
	// is its config file and Log its agent's output.
	Root    string `json:"root"`
	Config  string `json:"config"`
	Log     string `json:"log"`
	Running bool   `json:"running"`
	PID     int    `json:"pid,omitempty"`
	// Dark: powered off (its address black-holed); Impaired: latency/loss.
	Dark     bool   `json:"dark,omitempty"`
	Impaired string `json:"impaired,omitempty"`
}

// Testbed is a running testbed.
type Testbed struct {
	opts  Options
	plan  *Plan
	lock  *slotLock
	dir   string
	token string
	files InstallFiles
	logf  func(string, ...any)

	mu       sync.Mutex
	procs    map[string]*proc
	dark     map[string]bool
	cut      [][2]string // node name pairs
	impaired map[string]Impairment
	netem    *bool // nil until probed
	closed   bool
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// New creates the network and installs every node with install.sh; Start
// starts them. On error everything created so far is removed.
func New(ctx context.Context, opts Options) (tb *Testbed, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the testbed needs root (network namespaces, veth, bridges, nftables)")
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the testbed needs %s (apt-get install iproute2 nftables): %w", tool, err)
		}
	}
	if opts.Binary == "" {
		return nil, errors.New("testbed: Options.Binary (the slipway binary) is required")
	}
	if opts.InstallScript == "" {
		root, err := ModuleRoot()
		if err != nil {
			return nil, err
		}
		opts.InstallScript = filepath.Join(root, "install", "install.sh")
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	lock, err := lockSlot()
	if err != nil {
		return nil, err
	}
	plan, err := NewPlan(opts.Spec, lock.slot)
	if err != nil {
		lock.release()
		return nil, err
	}
	tb = &Testbed{opts: opts, plan: plan, lock: lock, logf: logf,
		procs: map[string]*proc{}, dark: map[string]bool{}, impaired: map[string]Impairment{}}
	defer func() {
		if err != nil {
			tb.Close()
			tb = nil
		}
	}()
	if removed, err := cleanSlot(ctx, lock.slot); err != nil {
		return tb, fmt.Errorf("removing leftovers of slot %d: %w", lock.slot, err)
	} else if len(removed) > 0 {
		logf("removed leftovers of a crashed testbed: %s", strings.Join(removed, ", "))
	}
	if err := checkRange(ctx, lock.slot); err != nil {
		return tb, err
	}
	tb.dir = opts.Dir
	if tb.dir == "" {
		if tb.dir, err = os.MkdirTemp("", fmt.Sprintf("slipway-testbed-%02d-", lock.slot)); err != nil {
			return tb, err
		}
	} else if err := os.MkdirAll(tb.dir, 0o700); err != nil {
		return tb, err
	}
	if tb.dir, err = filepath.Abs(tb.dir); err != nil {
		return tb, err
	}
	logf("testbed slot %d (%s), %d nodes, files in %s", lock.slot, SlotPrefix(lock.slot), len(plan.Nodes), tb.dir)
	if err := buildNetwork(ctx, plan); err != nil {
		return tb, fmt.Errorf("building the network: %w", err)
	}
	if err := tb.writeSecrets(); err != nil {
		return tb, err
	}
	for _, n := range plan.Nodes {
		if err := tb.install(ctx, n); err != nil {
			return tb, err
		}
	}
	return tb, nil
}

func (tb *Testbed) writeSecrets() error {
	key, err := agent.NewEncryptKey()
	if err != nil {
		return err
	}
	tok, err := agent.NewToken()
	if err != nil {
		return err
	}
	tb.token = tok
	tb.files = InstallFiles{Binary: tb.opts.Binary,
		KeyFile: filepath.Join(tb.dir, "cluster.key"), TokenFile: filepath.Join(tb.dir, "admin-token")}
	if err := agent.WriteSecretFile(tb.files.KeyFile, key+"\n"); err != nil {
		return err
	}
	return agent.WriteSecretFile(tb.files.TokenFile, tok+"\n")
}

// root is where install.sh installs a node.
func (tb *Testbed) root(name string) string { return filepath.Join(tb.dir, name) }

// InstallCommand is the install.sh command line the testbed runs for a node.
func (tb *Testbed) InstallCommand(name string) ([]string, error) {
	n, ok := tb.plan.Node(name)
	if !ok {
		return nil, fmt.Errorf("no node %q", name)
	}
	args := append([]string{tb.opts.InstallScript, "--root", tb.root(n.Name), "--no-systemd"}, tb.plan.InstallArgs(n, tb.files)...)
	return args, nil
}

func (tb *Testbed) install(ctx context.Context, n NodeSpec) error {
	argv, err := tb.InstallCommand(n.Name)
	if err != nil {
		return err
	}
	out, err := command(ctx, "", "bash", argv...)
	if err != nil {
		return fmt.Errorf("installing %s: %w\n%s", n.Name, err, out)
	}
	return nil
}

// Plan is the testbed's layout.
func (tb *Testbed) Plan() *Plan { return tb.plan }

// Slot is the testbed's slot.
func (tb *Testbed) Slot() int { return tb.plan.Slot }

// Dir is where the testbed keeps its files.
func (tb *Testbed) Dir() string { return tb.dir }

// Token is the admin API token.
func (tb *Testbed) Token() string { return tb.token }

// Domain is the cluster domain.
func (tb *Testbed) Domain() string { return tb.plan.Domain }

func (tb *Testbed) node(name string) (Node, error) {
	n, ok := tb.plan.Node(name)
	if !ok {
		return Node{}, fmt.Errorf("no node %q (nodes: %s)", name, strings.Join(tb.names(), ", "))
	}
	root := tb.root(n.Name)
	out := Node{Name: n.Name, Region: n.Region, Zone: n.Zone, Addr: n.Addr.String(),
		API:       fmt.Sprintf("http://%s:%d", n.Addr, APIPort),
		Router:    tb.routerURL(n),
		Namespace: nodeNS(tb.plan.Slot, n.Name), Root: root,
		Config: filepath.Join(root, "etc", "slipway", "slipway.json"),
		Log:    filepath.Join(root, "var", "log", "slipway", "agent.log"),
		Dark:   tb.dark[n.Name]}
	if p := tb.procs[n.Name]; p != nil {
		select {
		case <-p.done:
		default:
			out.Running, out.PID = true, p.cmd.Process.Pid
		}
	}
	if im, ok := tb.impaired[n.Name]; ok {
		out.Impaired = im.String()
	}
	return out, nil
}

// Node describes a node.
func (tb *Testbed) Node(name string) (Node, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.node(name)
}

// Nodes describes every node, in plan order.
func (tb *Testbed) Nodes() []Node {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := make([]Node, 0, len(tb.plan.Nodes))
	for _, n := range tb.plan.Nodes {
		nd, _ := tb.node(n.Name)
		out = append(out, nd)
	}
	return out
}

func (tb *Testbed) names() []string {
	var out []string
	for _, n := range tb.plan.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// Names lists the node names in plan order.
func (tb *Testbed) Names() []string { return tb.names() }

// Running lists the nodes whose agent process is running.
func (tb *Testbed) Running() []string {
	var out []string
	for _, n := range tb.Nodes() {
		if n.Running {
			out = append(out, n.Name)
		}
	}
	return out
}

// ZoneNodes lists a zone's nodes.
func (tb *Testbed) ZoneNodes(region, zone string) []string {
	var out []string
	for _, n := range tb.plan.Nodes {
		if n.Region == region && n.Zone == zone {
			out = append(out, n.Name)
		}
	}
	return out
}

// APIURL is a node's API base URL.
func (tb *Testbed) APIURL(name string) string {
	n, ok := tb.plan.Node(name)
	if !ok {
		return ""
	}
	return fmt.Sprintf("http://%s:%d", n.Addr, APIPort)
}

// RouterURL is a node's router base URL (send apps' requests there with
// Host APP.<domain>).
func (tb *Testbed) RouterURL(name string) string {
	n, ok := tb.plan.Node(name)
	if !ok {
		return ""
	}
	return tb.routerURL(n)
}

func (tb *Testbed) routerURL(n NodeSpec) string {
	return fmt.Sprintf("http://%s:%d", n.Addr, RouterPort)
}

// Client is an API client for a node with the admin token.
func (tb *Testbed) Client(name string, timeout time.Duration) *client.Client {
	return client.New(tb.APIURL(name), tb.token, client.WithHTTPClient(&http.Client{Timeout: timeout}))
}

// Start starts every node that is not running.
func (tb *Testbed) Start() error {
	var errs []error
	for _, n := range tb.plan.Nodes {
		if nd, _ := tb.Node(n.Name); !nd.Running {
			errs = append(errs, tb.StartNode(n.Name))
		}
	}
	return errors.Join(errs...)
}

// StartNode starts a node's agent in its namespace, as install.sh said to:
// ROOT/usr/local/bin/slipway agent --config ROOT/etc/slipway/slipway.json.
func (tb *Testbed) StartNode(name string) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.closed {
		return errors.New("testbed is closed")
	}
	n, err := tb.node(name)
	if err != nil {
		return err
	}
	if n.Running {
		return fmt.Errorf("%s is already running (pid %d)", name, n.PID)
	}
	if err := os.MkdirAll(filepath.Dir(n.Log), 0o700); err != nil {
		return err
	}
	lf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "---- testbed: starting %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	bin := filepath.Join(n.Root, "usr", "local", "bin", "slipway")
	cmd := exec.Command("ip", "netns", "exec", n.Namespace, bin, "agent", "--config", n.Config)
	cmd.Stdout, cmd.Stderr = lf, lf
	// `ip netns exec` execs the agent in place, so the pid is the agent's.
	// It dies with the testbed's process, even on kill -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	tb.procs[name] = p
	go func() {
		err := cmd.Wait()
		lf.Close()
		tb.mu.Lock()
		p.err = err
		tb.mu.Unlock()
		close(p.done)
	}()
	tb.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return nil
}

func (tb *Testbed) proc(name string) (*proc, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if _, ok := tb.plan.Node(name); !ok {
		return nil, fmt.Errorf("no node %q", name)
	}
	p := tb.procs[name]
	if p == nil {
		return nil, fmt.Errorf("%s is not running", name)
	}
	select {
	case <-p.done:
		return nil, fmt.Errorf("%s is not running", name)
	default:
	}
	return p, nil
}

// KillNode kills a node's agent with SIGKILL (kill -9) and waits for it to
// be gone: a crash, with no leadership transfer and no gossip leave.
func (tb *Testbed) KillNode(name string) error {
	p, err := tb.proc(name)
	if err != nil {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	tb.logf("killed %s (kill -9)", name)
	return nil
}

// KillNodes kills several nodes' agents at once (SIGKILL to all of them,
// then wait): a power cut of the whole set.
func (tb *Testbed) KillNodes(names ...string) error {
	var ps []*proc
	for _, name := range names {
		p, err := tb.proc(name)
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, p := range ps {
		<-p.done
	}
	tb.logf("killed %s (kill -9)", strings.Join(names, ", "))
	return nil
}

// StopNode stops a node gracefully (SIGTERM: it hands leadership over and
// leaves gossip), killing it if it has not exited within 40 seconds.
func (tb *Testbed) StopNode(ctx context.Context, name string) error {
	p, err := tb.proc(name)
	if err != nil {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within 40s of SIGTERM and was killed", name)
	case <-ctx.Done():
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return ctx.Err()
	}
	tb.logf("stopped %s", name)
	return nil
}

// RestartNode stops a node gracefully and starts it again.
func (tb *Testbed) RestartNode(ctx context.Context, name string) error {
	if err := tb.StopNode(ctx, name); err != nil {
		return err
	}
	return tb.StartNode(name)
}

// ExitError reports how a stopped node's agent ended.
func (tb *Testbed) ExitError(name string) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if p := tb.procs[name]; p != nil {
		return p.err
	}
	return nil
}

// Health is a node's GET /health answer.
type Health struct {
	Status       string `json:"status"`
	Node         string `json:"node"`
	Region       string `json:"region"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
}

// Health asks a node's /health.
func (tb *Testbed) Health(ctx context.Context, name string) (Health, error) {
	var h Health
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tb.APIURL(name)+"/health", nil)
	if err != nil {
		return h, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("%s /health: HTTP %d", name, resp.StatusCode)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// WaitReady waits until every running node reports a leader in its region,
// every region's Raft group has its voters (3, or all nodes if fewer), and
// the admin token works.
func (tb *Testbed) WaitReady(ctx context.Context) error {
	var last error
	for {
		if last = tb.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the cluster: %w (last: %v; node logs under %s/*/var/log/slipway)", ctx.Err(), last, tb.dir)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (tb *Testbed) ready(ctx context.Context) error {
	running := tb.Running()
	if len(running) == 0 {
		return errors.New("no node is running")
	}
	for _, name := range running {
		h, err := tb.Health(ctx, name)
		if err != nil {
			return err
		}
		if h.Leader == "" {
			return fmt.Errorf("%s has no leader", name)
		}
	}
	for _, region := range tb.plan.Regions() {
		var in []string
		for _, n := range tb.plan.Nodes {
			if n.Region == region {
				in = append(in, n.Name)
			}
		}
		want := min(3, len(in))
		c := tb.Client(in[0], 3*time.Second)
		for _, name := range in {
			if slices.Contains(running, name) {
				c = tb.Client(name, 3*time.Second)
				break
			}
		}
		r, err := c.Raft(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, p := range r.Peers {
			if p.Role == "voter" || p.Role == "leader" {
				voters++
			}
		}
		if voters < want {
			return fmt.Errorf("region %s has %d voters, want %d", region, voters, want)
		}
	}
	return nil
}

// LogTail returns the last lines of a node's agent log.
func (tb *Testbed) LogTail(name string, lines int) string {
	n, err := tb.Node(name)
	if err != nil {
		return err.Error()
	}
	b, err := os.ReadFile(n.Log)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Logs returns the tail of every node's log, for failure messages.
func (tb *Testbed) Logs(lines int) string {
	var b strings.Builder
	for _, n := range tb.plan.Nodes {
		fmt.Fprintf(&b, "---- %s (last %d lines)\n%s\n", n.Name, lines, tb.LogTail(n.Name, lines))
	}
	return b.String()
}

// Env is a shell snippet pointing the slipway and heroku CLIs at the
// testbed's first node.
func (tb *Testbed) Env() string {
	first := tb.plan.Nodes[0].Name
	api := tb.APIURL(first)
	return fmt.Sprintf(`# Written by the Slipway testbed (slot %d). Use it with: . %s/env
export SLIPWAY_API_URL=%s
export SLIPWAY_API_TOKEN=%s
export HEROKU_HOST=%s
export HEROKU_API_KEY=%s
export HEROKU_PARTICLEBOARD_URL=%s
`, tb.plan.Slot, tb.dir, api, tb.token, api, tb.token, api)
}

// CLI runs the slipway binary as a client (for example "nodes --json")
// against a node's API, from this machine's namespace.
func (tb *Testbed) CLI(ctx context.Context, node string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tb.opts.Binary, args...)
	cmd.Env = append(os.Environ(), "SLIPWAY_API_URL="+tb.APIURL(node), "SLIPWAY_API_TOKEN="+tb.token,
		"HOME="+tb.dir, "XDG_CONFIG_HOME="+filepath.Join(tb.dir, ".config"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("slipway %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Exec runs a program inside a node's network namespace.
func (tb *Testbed) Exec(ctx context.Context, node string, argv ...string) (string, error) {
	n, err := tb.Node(node)
	if err != nil {
		return "", err
	}
	return inNS(ctx, n.Namespace, "", argv...)
}

// Close kills every node and removes the network and (unless KeepDir) the
// files. It is safe to call more than once.
func (tb *Testbed) Close() error {
	tb.mu.Lock()
	if tb.closed {
		tb.mu.Unlock()
		return nil
	}
	tb.closed = true
	procs := make([]*proc, 0, len(tb.procs))
	for _, p := range tb.procs {
		procs = append(procs, p)
	}
	tb.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		<-p.done
	}
	var errs []error
	if tb.lock != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := cleanSlot(ctx, tb.lock.slot); err != nil {
			errs = append(errs, err)
		}
		cancel()
		tb.lock.release()
	}
	if tb.dir != "" && tb.opts.Dir == "" && !tb.opts.KeepDir {
		if err := os.RemoveAll(tb.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// BuildSlipway builds ./cmd/slipway of the module into dir and returns the
// binary's path.
func BuildSlipway(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "slipway")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/slipway")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/slipway: %w\n%s", err, b)
	}
	return out, nil
}

// ModuleRoot finds the Slipway module's root from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/slipwayhq/slipway\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the slipway module (no go.mod found above the working directory)")
		}
		dir = parent
	}
}
