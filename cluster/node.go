package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// FSM is the state machine a node replicates. AppliedIndex and WaitForIndex
// let the node offer read-your-writes and linearizable reads.
type FSM interface {
	raft.FSM
	AppliedIndex() uint64
	WaitForIndex(ctx context.Context, index uint64) error
}

// Node is one member of a region's cluster.
type Node struct {
	cfg *Config
	log *slog.Logger
	fsm FSM

	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	lan, wan  *pool
	autopilot *autopilot.Autopilot
	apState   *apDelegate

	rpcMux    *http.ServeMux
	rpcServer *http.Server
	rpcLn     net.Listener
	rpcClient *http.Client
	rpcToken  string

	notifyCh chan bool
	// readsReady is set once this node, as leader, has committed an entry of
	// its own term (the barrier at the start of leaderLoop): before that its
	// commit index may be stale, so it must not serve ReadIndex.
	readsReady atomic.Bool
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	hooksMu     sync.Mutex
	leaderHooks []func(ctx context.Context)

	shutdownOnce sync.Once
}

// New starts a node: it opens the Raft stores, starts gossip and internal
// RPC, joins the addresses in the config and, with bootstrap-expect, forms
// the cluster once enough nodes are visible.
func New(cfg Config, fsm FSM) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: &cfg, log: cfg.Logger, fsm: fsm, ctx: ctx, cancel: cancel,
		notifyCh: make(chan bool, 8), rpcMux: http.NewServeMux()}
	if len(cfg.EncryptKey) > 0 {
		sum := sha256.Sum256(append([]byte("slipway-rpc/"), cfg.EncryptKey...))
		n.rpcToken = hex.EncodeToString(sum[:])
	} else {
		n.log.Warn("no encrypt key configured: gossip is unencrypted and internal RPC unauthenticated")
	}
	if err := n.start(); err != nil {
		n.Kill()
		return nil, err
	}
	return n, nil
}

func (n *Node) localMeta() Meta {
	c := n.cfg
	return Meta{Region: c.Region, Zone: c.Zone, Raft: c.addr(c.RaftPort), RPC: c.addr(c.RPCPort),
		API: c.APIURL, Router: c.RouterURL, Version: c.Version, CommandVersion: c.CommandVersion, Expect: c.BootstrapExpect,
		MemoryMB: c.DynoMemoryMB, PortFirst: c.DynoPortFirst, PortLast: c.DynoPortLast, Rendezvous: c.Rendezvous}
}

func (n *Node) start() error {
	c := n.cfg
	if err := n.startRPC(); err != nil {
		return err
	}
	if err := n.startRaft(); err != nil {
		return err
	}
	var err error
	if n.lan, err = n.startPool(false); err != nil {
		return fmt.Errorf("LAN gossip: %w", err)
	}
	if c.WANPort > 0 {
		if n.wan, err = n.startPool(true); err != nil {
			return fmt.Errorf("WAN gossip: %w", err)
		}
	}
	n.apState = newAPDelegate(n)
	n.autopilot = autopilot.New(n.raft, n.apState,
		autopilot.WithLogger(newHclog(n.log, "autopilot")),
		autopilot.WithPromoter(&zonePromoter{d: n.apState}),
		autopilot.WithReconcileInterval(c.Timing.ReconcileInterval),
		autopilot.WithUpdateInterval(c.Timing.ReconcileInterval/2),
		autopilot.WithTimeProvider(c.Clock))

	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.monitorLeadership() }()
	go func() { defer n.wg.Done(); n.joinLoop() }()
	go func() { defer n.wg.Done(); n.reconnectLoop() }()
	go func() { defer n.wg.Done(); n.bootstrapLoop() }()
	return nil
}

func (n *Node) startRaft() error {
	c := n.cfg
	dir := filepath.Join(c.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("raft data dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("opening raft store: %w", err)
	}
	n.store = store
	hl := newHclog(n.log, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hl)
	if err != nil {
		return fmt.Errorf("opening snapshot store: %w", err)
	}
	ln, err := c.Network.Listen(c.bind(c.RaftPort))
	if err != nil {
		return fmt.Errorf("raft listener on %s: %w", c.bind(c.RaftPort), err)
	}
	var token []byte
	if len(c.EncryptKey) > 0 {
		sum := sha256.Sum256(append([]byte("slipway-raft/"), c.EncryptKey...))
		token = sum[:]
		ln = newAuthListener(ln, token, func(remote string) {
			n.log.Warn("refused a Raft connection without the cluster's token", "remote", remote)
		})
	}
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: ln, network: c.Network, advertise: tcpAddr(c.addr(c.RaftPort)), token: token},
		MaxPool: 4, Timeout: 10 * time.Second, Logger: hl,
	})
	rc := c.raftConfig()
	rc.Logger = hl
	rc.NotifyCh = n.notifyCh
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, n.transport)
	if err != nil {
		return fmt.Errorf("starting raft: %w", err)
	}
	n.raft = r
	return nil
}

// joinLoop joins the configured gossip addresses, retrying until it has
// reached at least one (nodes of a new cluster start in any order).
func (n *Node) joinLoop() {
	join := func(p *pool, addrs []string, what string) bool {
		if p == nil || len(addrs) == 0 {
			return true
		}
		var others []string
		self := n.cfg.addr(n.cfg.GossipPort)
		if p == n.wan {
			self = n.cfg.addr(n.cfg.WANPort)
		}
		for _, a := range addrs {
			if a != self {
				others = append(others, a)
			}
		}
		if len(others) == 0 {
			return true
		}
		k, err := p.ml.Join(others)
		if k > 0 {
			n.log.Info("joined gossip pool", "pool", what, "contacted", k)
			return true
		}
		n.log.Debug("gossip join failed, will retry", "pool", what, "err", err)
		return false
	}
	lanDone, wanDone := false, false
	delay := 200 * time.Millisecond
	for {
		lanDone = lanDone || join(n.lan, n.cfg.Join, "lan")
		wanDone = wanDone || join(n.wan, n.cfg.JoinWAN, "wan")
		if lanDone && wanDone {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// reconnectLoop periodically tries to rejoin members that gossip declared
// dead (not those that left), the way Serf does: after a partition heals,
// each side has declared the other dead and memberlist alone would never
// gossip with it again.
func (n *Node) reconnectLoop() {
	interval := 10 * time.Second
	if n.cfg.Timing.GossipTest {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range []*pool{n.lan, n.wan} {
			if p == nil {
				continue
			}
			var addrs []string
			for _, m := range p.members() {
				if m.State == StateDead && m.Addr != "" {
					addrs = append(addrs, m.Addr)
				}
			}
			if len(addrs) == 0 {
				continue
			}
			if k, err := p.ml.Join(addrs); k > 0 {
				n.log.Info("reconnected to members gossip had declared dead", "contacted", k)
			} else {
				n.log.Debug("reconnect attempt failed", "err", err)
			}
		}
	}
}

// AddLeaderHook registers f to run, in its own goroutine, every time this
// node becomes leader; its context ends when leadership is lost.
func (n *Node) AddLeaderHook(f func(ctx context.Context)) {
	n.hooksMu.Lock()
	defer n.hooksMu.Unlock()
	n.leaderHooks = append(n.leaderHooks, f)
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// Region is the node's region.
func (n *Node) Region() string { return n.cfg.Region }

// Zone is the node's zone.
func (n *Node) Zone() string { return n.cfg.Zone }

// IsLeader reports whether this node is the region's Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's node name ("" when there is none).
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// SetDraining updates the draining flag this node advertises in gossip.
func (n *Node) SetDraining(draining bool) {
	for _, p := range []*pool{n.lan, n.wan} {
		if p == nil {
			continue
		}
		if p.localMeta().Draining == draining {
			continue
		}
		p.setMeta(func(m *Meta) { m.Draining = draining })
		if err := p.ml.UpdateNode(5 * time.Second); err != nil {
			n.log.Warn("advertising draining flag", "err", err)
		}
	}
}

// Members lists the region's nodes as gossip sees them (including dead
// members still remembered).
func (n *Node) Members() []Member { return n.lan.members() }

// WANMembers lists the WAN pool (nodes of every region).
func (n *Node) WANMembers() []Member { return n.wan.members() }

// Regions lists the regions known through the WAN pool, always including
// this node's own.
func (n *Node) Regions() []string {
	seen := map[string]bool{n.cfg.Region: true}
	for _, m := range n.WANMembers() {
		if m.Meta.Region != "" && m.State != StateLeft {
			seen[m.Meta.Region] = true
		}
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Server is one entry of the Raft configuration.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	Healthy *bool  `json:"healthy,omitempty"`
}

// RaftStatus summarizes the Raft group as this node sees it.
type RaftStatus struct {
	Node             string   `json:"node"`
	State            string   `json:"state"`
	Leader           string   `json:"leader"`
	LeaderAddress    string   `json:"leader_address"`
	Term             uint64   `json:"term"`
	CommitIndex      uint64   `json:"commit_index"`
	AppliedIndex     uint64   `json:"applied_index"`
	LastIndex        uint64   `json:"last_index"`
	LastContact      string   `json:"last_contact"`
	Servers          []Server `json:"servers"`
	Healthy          *bool    `json:"healthy,omitempty"`
	FailureTolerance *int     `json:"failure_tolerance,omitempty"`
}

// Servers returns the current Raft configuration.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("reading raft configuration: %w", err)
	}
	_, leader := n.raft.LeaderWithID()
	var health map[raft.ServerID]*autopilot.ServerState
	if st := n.autopilot.GetState(); st != nil && n.IsLeader() {
		health = st.Servers
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		sv := Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader}
		if h, ok := health[s.ID]; ok {
			ok := h.Health.Healthy
			sv.Healthy = &ok
		}
		out = append(out, sv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Status reports the Raft state.
func (n *Node) Status() (RaftStatus, error) {
	servers, err := n.Servers()
	if err != nil {
		return RaftStatus{}, err
	}
	addr, id := n.raft.LeaderWithID()
	st := RaftStatus{Node: n.cfg.NodeName, State: n.raft.State().String(), Leader: string(id), LeaderAddress: string(addr),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(),
		LastIndex: n.raft.LastIndex(), LastContact: n.raft.Stats()["last_contact"], Servers: servers}
	if ap := n.autopilot.GetState(); ap != nil && n.IsLeader() {
		h, ft := ap.Healthy, ap.FailureTolerance
		st.Healthy, st.FailureTolerance = &h, &ft
	}
	return st, nil
}

// hasRaftState reports whether this node has ever been part of a Raft
// configuration.
func (n *Node) hasRaftState() bool {
	if n.raft.LastIndex() > 0 {
		return true
	}
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// Snapshot forces a Raft snapshot (and log compaction).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Shutdown leaves the cluster gracefully: a leader first hands leadership to
// another voter, then the node announces it is leaving gossip and stops.
// The node stays in the Raft configuration (a restart rejoins it); autopilot
// removes it only if it stays away longer than the dead-server grace.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	n.shutdownOnce.Do(func() {
		if n.raft != nil && n.IsLeader() && n.otherVoters() > 0 {
			n.log.Info("transferring leadership before shutdown")
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer failed", "err", err)
			}
		}
		leave := 3 * time.Second
		if d, ok := ctx.Deadline(); ok && time.Until(d) < leave {
			leave = time.Until(d)
		}
		for _, p := range []*pool{n.lan, n.wan} {
			if p != nil && p.ml != nil {
				// Say it is a goodbye first (see Meta.Leaving), then leave.
				p.setMeta(func(m *Meta) { m.Leaving = true })
				if err := p.ml.UpdateNode(leave); err != nil {
					n.log.Info("announcing the leave not acknowledged", "err", err)
				}
				if err := p.ml.Leave(leave); err != nil {
					// Expected when every node stops at once: nobody is
					// left to acknowledge the leave.
					n.log.Info("gossip leave not acknowledged", "err", err)
				}
			}
		}
		errs = append(errs, n.stop()...)
	})
	return errors.Join(errs...)
}

// Kill stops the node abruptly, as a crash would (no leadership transfer,
// no gossip leave). For tests.
func (n *Node) Kill() {
	n.shutdownOnce.Do(func() { _ = n.stop() })
}

func (n *Node) stop() []error {
	var errs []error
	n.cancel()
	if n.autopilot != nil {
		<-n.autopilot.Stop()
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	for _, p := range []*pool{n.lan, n.wan} {
		if p != nil && p.ml != nil {
			if err := p.ml.Shutdown(); err != nil {
				errs = append(errs, fmt.Errorf("gossip shutdown: %w", err))
			}
		}
	}
	if n.transport != nil {
		_ = n.transport.Close()
	}
	if n.rpcServer != nil {
		_ = n.rpcServer.Close()
	}
	if n.rpcClient != nil {
		n.rpcClient.CloseIdleConnections()
	}
	n.wg.Wait()
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing raft store: %w", err))
		}
	}
	return errs
}

func (n *Node) otherVoters() int {
	servers, err := n.Servers()
	if err != nil {
		return 0
	}
	k := 0
	for _, s := range servers {
		if s.Voter && s.ID != n.cfg.NodeName {
			k++
		}
	}
	return k
}

func itoa(i uint64) string { return strconv.FormatUint(i, 10) }
