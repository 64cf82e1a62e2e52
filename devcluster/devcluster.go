// Package devcluster runs a whole Slipway cluster on one machine for
// development and end-to-end tests: N `slipway agent` child processes on
// loopback, in one region with zones a, b, c, data under one directory. It
// writes an env file and a nodes.json describing the cluster, keeps the
// remaining nodes running when one dies, and stops them all on shutdown.
package devcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/agent"
)

// Options configure a dev cluster.
type Options struct {
	Nodes    int    // default 3
	Dir      string // default ./.slipway
	BasePort int    // default 5000: node i uses BasePort+10*(i-1) .. +7
	Domain   string // default localhost
	// Binary is the slipway executable to run as `agent` (default: this
	// process's own executable).
	Binary string
	// Out receives human-readable progress; Logs, when set, receives every
	// node's log output too (otherwise it only goes to DIR/<node>/agent.log).
	Out  io.Writer
	Logs io.Writer
}

// NodeInfo is one entry of nodes.json.
type NodeInfo struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Zone   string `json:"zone"`
	PID    int    `json:"pid"`
	API    string `json:"api"`
	Router string `json:"router"`
	// Config is the node's agent config file: `slipway agent --config
	// <it>` restarts the node by hand.
	Config string `json:"config"`
}

// Cluster is a running dev cluster.
type Cluster struct {
	opts  Options
	token string
	nodes []*child

	mu sync.Mutex
}

type child struct {
	info NodeInfo
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (o *Options) setDefaults() error {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > 9 {
		return fmt.Errorf("--nodes must be between 1 and 9 (got %d)", o.Nodes)
	}
	if o.Dir == "" {
		o.Dir = ".slipway"
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	o.Dir = abs
	if o.BasePort == 0 {
		o.BasePort = 5000
	}
	if o.BasePort < 1024 || o.BasePort+10*o.Nodes > 65535 {
		return fmt.Errorf("--base-port %d leaves no room for %d nodes (each takes 10 ports)", o.BasePort, o.Nodes)
	}
	if o.Domain == "" {
		o.Domain = "localhost"
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the slipway binary: %w", err)
		}
		o.Binary = exe
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// Zones are assigned round-robin.
func zoneOf(i int) string { return string(rune('a' + i%3)) }

// Start prepares the directory (reusing keys, tokens and node state from an
// earlier run) and starts every node.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Dir, err)
	}
	key, err := readOrCreate(filepath.Join(opts.Dir, "cluster.key"), agent.NewEncryptKey)
	if err != nil {
		return nil, err
	}
	token, err := readOrCreate(filepath.Join(opts.Dir, "admin-token"), agent.NewToken)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, token: token}
	expect := min(opts.Nodes, 3)
	voters := 3
	if opts.Nodes == 1 {
		voters = 1
	}
	var gossip []string
	for i := 0; i < opts.Nodes; i++ {
		gossip = append(gossip, fmt.Sprintf("127.0.0.1:%d", opts.BasePort+10*i+2))
	}
	for i := 0; i < opts.Nodes; i++ {
		name := fmt.Sprintf("node-%d", i+1)
		base := opts.BasePort + 10*i
		cfg := agent.DefaultConfig()
		cfg.NodeName, cfg.Region, cfg.Zone = name, "local", zoneOf(i)
		cfg.DataDir = filepath.Join(opts.Dir, name)
		cfg.BindAddr, cfg.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
		cfg.Ports = agent.Ports{API: base, Raft: base + 1, Gossip: base + 2, RPC: base + 3, WAN: base + 4, Router: base + 5, RouterTLS: base + 6, Rendezvous: base + 7}
		// All nodes share 127.0.0.1: give each its own 100 dyno ports,
		// placed by the base port so that two dev clusters on one machine
		// (different --base-port) do not hand out the same ports.
		first := 30000 + ((opts.BasePort/10+i)%350)*100
		cfg.DynoPorts = fmt.Sprintf("%d-%d", first, first+99)
		cfg.Join = gossip
		cfg.JoinWAN = []string{fmt.Sprintf("127.0.0.1:%d", opts.BasePort+4)}
		cfg.BootstrapExpect, cfg.Voters = expect, voters
		cfg.Domain = opts.Domain
		cfg.EncryptKey = key
		cfg.InitialAdminTokenFile = filepath.Join(opts.Dir, "admin-token")
		cfg.FastGossip = true
		// Stopping `slipway dev` stops the dynos too (a real node leaves them
		// running for its next agent to adopt).
		cfg.DynoStopOnExit = true
		cfg.ServerStabilization = agent.Duration{Duration: 5 * time.Second}
		cfg.DeadServerGrace = agent.Duration{Duration: 30 * time.Minute}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", cfg.DataDir, err)
		}
		path := filepath.Join(cfg.DataDir, "agent.json")
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := agent.WriteSecretFile(path, string(b)+"\n"); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &child{info: NodeInfo{Name: name, Region: cfg.Region, Zone: cfg.Zone,
			API: fmt.Sprintf("http://127.0.0.1:%d", base), Router: fmt.Sprintf("http://127.0.0.1:%d", base+5), Config: path}})
	}
	for _, n := range c.nodes {
		if err := c.startChild(n); err != nil {
			c.Stop(context.Background())
			return nil, err
		}
	}
	if err := c.writeFiles(); err != nil {
		c.Stop(context.Background())
		return nil, err
	}
	return c, nil
}

func readOrCreate(path string, gen func() (string, error)) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	v, err := gen()
	if err != nil {
		return "", err
	}
	if err := agent.WriteSecretFile(path, v+"\n"); err != nil {
		return "", err
	}
	return v, nil
}

func (c *Cluster) startChild(n *child) error {
	logPath := filepath.Join(filepath.Dir(n.info.Config), "agent.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", logPath, err)
	}
	cmd := exec.Command(c.opts.Binary, "agent", "--config", n.info.Config)
	var out io.Writer = lf
	if c.opts.Logs != nil {
		out = io.MultiWriter(lf, &prefixWriter{w: c.opts.Logs, prefix: n.info.Name + " | "})
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group (Ctrl-C reaches only `dev`, which stops the nodes in
	// order), and die with the parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("starting %s: %w", n.info.Name, err)
	}
	c.mu.Lock()
	n.cmd, n.done, n.info.PID = cmd, make(chan struct{}), cmd.Process.Pid
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		lf.Close()
		c.mu.Lock()
		n.err = err
		c.mu.Unlock()
		close(n.done)
	}()
	return nil
}

// Nodes describes the nodes.
func (c *Cluster) Nodes() []NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.info
	}
	return out
}

// Token is the admin API token.
func (c *Cluster) Token() string { return c.token }

// Dir is the cluster's data directory.
func (c *Cluster) Dir() string { return c.opts.Dir }

// Env is the content of DIR/env.
func (c *Cluster) Env() string {
	n := c.Nodes()[0]
	return fmt.Sprintf(`# Written by slipway dev. Use it with: . %s/env
export SLIPWAY_API_URL=%s
export SLIPWAY_API_TOKEN=%s
export SLIPWAY_ROUTER_URL=%s
export SLIPWAY_DOMAIN=%s
export HEROKU_HOST=%s
export HEROKU_API_KEY=%s
# The heroku CLI also asks this host (normally particleboard.heroku.com)
# about the account; without it every 'heroku apps' waits ~6 s offline.
export HEROKU_PARTICLEBOARD_URL=%s
# The cluster CA, so 'heroku run' (Node.js) and 'slipway run' trust the nodes.
export NODE_EXTRA_CA_CERTS=%s/ca.pem
export SLIPWAY_CA_FILE=%s/ca.pem
`, c.opts.Dir, n.API, c.token, n.Router, c.opts.Domain, n.API, c.token, n.API, c.opts.Dir, c.opts.Dir)
}

func (c *Cluster) writeFiles() error {
	if err := agent.WriteSecretFile(filepath.Join(c.opts.Dir, "env"), c.Env()); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c.Nodes(), "", "  ")
	return agent.WriteSecretFile(filepath.Join(c.opts.Dir, "nodes.json"), string(b)+"\n")
}

// WaitReady waits until a node reports a leader, the admin token works and
// the cluster CA exists; it writes the CA to DIR/ca.pem.
func (c *Cluster) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(url string) ([]byte, int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return b, resp.StatusCode, err
	}
	for {
		for _, n := range c.Nodes() {
			b, code, err := get(n.API + "/cluster/raft")
			if err != nil || code != http.StatusOK {
				continue
			}
			var st struct {
				Leader string `json:"leader"`
			}
			if json.Unmarshal(b, &st) != nil || st.Leader == "" {
				continue
			}
			ca, code, err := get(n.API + "/cluster/ca")
			if err != nil || code != http.StatusOK {
				continue
			}
			return agent.WriteSecretFile(filepath.Join(c.opts.Dir, "ca.pem"), string(ca))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the cluster to elect a leader: %w (node logs are in %s/node-*/agent.log)", ctx.Err(), c.opts.Dir)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Exited returns a channel that receives a node's info each time a child
// process exits on its own.
func (c *Cluster) Exited() <-chan NodeInfo {
	ch := make(chan NodeInfo, len(c.nodes))
	for _, n := range c.nodes {
		go func() {
			<-n.done
			c.mu.Lock()
			info := n.info
			c.mu.Unlock()
			info.PID = 0
			ch <- info
		}()
	}
	return ch
}

// ExitError returns why a node's process ended (nil while it runs or if it
// exited cleanly).
func (c *Cluster) ExitError(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.info.Name == name {
			return n.err
		}
	}
	return nil
}

// Stop sends SIGTERM to every node (they leave gracefully) and waits, then
// kills what is left after 20 seconds.
func (c *Cluster) Stop(ctx context.Context) {
	c.mu.Lock()
	nodes := append([]*child{}, c.nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(20 * time.Second)
	for _, n := range nodes {
		if n.done == nil {
			continue
		}
		select {
		case <-n.done:
		case <-deadline:
			_ = n.cmd.Process.Kill()
			<-n.done
		case <-ctx.Done():
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i]); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
