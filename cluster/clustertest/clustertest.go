// Package clustertest runs whole Slipway clusters inside one test process:
// real cluster.Nodes (Raft with bolt stores in temp dirs, memberlist,
// internal RPC) and real FSMs, connected by a cluster/memnet network so
// tests can kill nodes, partition them and heal.
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/memberlist"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/cluster/memnet"
	"github.com/slipwayhq/slipway/fsm"
)

// Ports every in-process node uses (each node has its own IP).
const (
	RaftPort   = 5001
	GossipPort = 5002
	RPCPort    = 5003
	APIPort    = 5000
)

// HostNetwork adapts a memnet host to cluster.Network.
type HostNetwork struct{ H *memnet.Host }

func port(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// Listen implements cluster.Network.
func (n HostNetwork) Listen(addr string) (net.Listener, error) {
	p, err := port(addr)
	if err != nil {
		return nil, err
	}
	return n.H.Listen(p)
}

// Dial implements cluster.Network.
func (n HostNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return n.H.Dial(ctx, addr)
}

// MemberlistTransport implements cluster.Network.
func (n HostNetwork) MemberlistTransport(addr string, _ *log.Logger) (memberlist.NodeAwareTransport, error) {
	p, err := port(addr)
	if err != nil {
		return nil, err
	}
	return n.H.MemberlistTransport(p)
}

// EncryptKey is the gossip/RPC/Raft key of every harness node.
var EncryptKey = []byte("0123456789abcdef0123456789abcdef")

// TestTiming is fast Raft and gossip timing for in-process clusters.
func TestTiming() cluster.Timing {
	return cluster.Timing{
		RaftHeartbeat: 400 * time.Millisecond, RaftElection: 400 * time.Millisecond,
		RaftLeaderLease: 200 * time.Millisecond, RaftCommit: 20 * time.Millisecond,
		GossipTest: true, ReconcileInterval: 300 * time.Millisecond,
	}
}

// Options shape a harness's nodes.
type Options struct {
	Voters          int
	DeadServerGrace time.Duration
	Stabilization   time.Duration
	Timing          *cluster.Timing
	HoldTimeout     time.Duration
}

// Harness is an in-process cluster.
type Harness struct {
	T    testing.TB
	Net  *memnet.Network
	opts Options
	root string

	mu    sync.Mutex
	nodes map[string]*Member
}

// Member is one node of a harness.
type Member struct {
	Name   string
	Zone   string
	Expect int
	Dir    string
	Node   *cluster.Node
	FSM    *fsm.FSM
}

// New creates an empty harness; nodes are torn down when the test ends.
func New(t testing.TB, opts Options) *Harness {
	if opts.Voters == 0 {
		opts.Voters = 3
	}
	if opts.DeadServerGrace == 0 {
		opts.DeadServerGrace = time.Hour
	}
	if opts.Stabilization == 0 {
		opts.Stabilization = time.Second
	}
	if opts.HoldTimeout == 0 {
		opts.HoldTimeout = 3 * time.Second
	}
	h := &Harness{T: t, Net: memnet.New(), opts: opts, root: t.TempDir(), nodes: map[string]*Member{}}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, m := range h.nodes {
			if m.Node != nil {
				m.Node.Kill()
			}
		}
		h.Net.Close()
	})
	return h
}

// Start starts a node (or restarts a killed one with its data).
func (h *Harness) Start(name, zone string, expect int) *Member {
	h.T.Helper()
	h.mu.Lock()
	m, ok := h.nodes[name]
	if !ok {
		m = &Member{Name: name, Zone: zone, Expect: expect, Dir: filepath.Join(h.root, name)}
		h.nodes[name] = m
	}
	var join []string
	for other := range h.nodes {
		if other != name {
			join = append(join, net.JoinHostPort(h.Net.Host(other).IP().String(), strconv.Itoa(GossipPort)))
		}
	}
	h.mu.Unlock()
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		h.T.Fatal(err)
	}
	host := h.Net.Host(name)
	logger := slog.New(slog.NewTextHandler(testWriter{h.T}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", name)
	f, err := fsm.New(logger)
	if err != nil {
		h.T.Fatal(err)
	}
	timing := TestTiming()
	if h.opts.Timing != nil {
		timing = *h.opts.Timing
	}
	cfg := cluster.Config{
		NodeName: name, Region: "test", Zone: zone, DataDir: m.Dir,
		BindAddr: host.IP().String(), RaftPort: RaftPort, GossipPort: GossipPort, RPCPort: RPCPort,
		Join: join, BootstrapExpect: m.Expect, Voters: h.opts.Voters,
		DeadServerGrace: h.opts.DeadServerGrace, ServerStabilization: h.opts.Stabilization,
		LastContactThreshold: 2 * time.Second, HoldTimeout: h.opts.HoldTimeout,
		EncryptKey: EncryptKey, Version: "test", CommandVersion: fsm.CommandVersion,
		Timing: timing, Network: HostNetwork{H: host}, Logger: logger,
	}
	n, err := cluster.New(cfg, f)
	if err != nil {
		h.T.Fatalf("starting %s: %v", name, err)
	}
	h.mu.Lock()
	m.Node, m.FSM = n, f
	h.mu.Unlock()
	return m
}

// testWriter sends logs through t.Log (shown only for failing tests).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// Kill stops a node abruptly and frees its addresses (kill -9).
func (h *Harness) Kill(name string) {
	h.mu.Lock()
	m := h.nodes[name]
	h.mu.Unlock()
	h.Net.Remove(name)
	m.Node.Kill()
	h.mu.Lock()
	m.Node = nil
	h.mu.Unlock()
}

// Get returns a member.
func (h *Harness) Get(name string) *Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[name]
}

// Running lists members whose node is up.
func (h *Harness) Running() []*Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*Member
	for _, m := range h.nodes {
		if m.Node != nil {
			out = append(out, m)
		}
	}
	return out
}

// Eventually polls cond until it holds or the timeout passes.
func (h *Harness) Eventually(timeout time.Duration, what string, cond func() error) {
	h.T.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.T.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}

// Leader waits for one running node to lead, agreed on by every running
// node that is not partitioned from it.
func (h *Harness) Leader(timeout time.Duration) *Member {
	h.T.Helper()
	var leader *Member
	h.Eventually(timeout, "a leader", func() error {
		leader = nil
		for _, m := range h.Running() {
			if m.Node.IsLeader() {
				leader = m
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return leader
}

// Servers returns the Raft configuration as the leader sees it.
func (h *Harness) Servers(timeout time.Duration) []cluster.Server {
	h.T.Helper()
	l := h.Leader(timeout)
	s, err := l.Node.Servers()
	if err != nil {
		h.T.Fatal(err)
	}
	return s
}

// Set writes key=value through node name (a meta.set command) and returns
// the error, if any.
func (h *Harness) Set(ctx context.Context, name, key, value string) error {
	m := h.Get(name)
	if m == nil || m.Node == nil {
		return fmt.Errorf("%s is not running", name)
	}
	cmd, err := fsm.NewCommand(fsm.CmdMetaSet, uuid.NewString(), time.Now(), "", fsm.MetaSet{Key: key, Value: []byte(strconv.Quote(value))})
	if err != nil {
		return err
	}
	b, err := cmd.Encode()
	if err != nil {
		return err
	}
	_, resp, err := m.Node.Apply(ctx, b)
	if err != nil {
		return err
	}
	var res fsm.Result
	if err := json.Unmarshal(resp, &res); err != nil {
		return fmt.Errorf("decoding result: %w", err)
	}
	return res.Decode(nil)
}

// Get reads key on a node's replica ("" when absent).
func (m *Member) Get(key string) string {
	v, ok := m.FSM.Snap().Meta(key)
	if !ok {
		return ""
	}
	s, err := strconv.Unquote(string(v.Value))
	if err != nil {
		return string(v.Value)
	}
	return s
}
