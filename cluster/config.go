package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Default ports. Every one is configurable.
const (
	DefaultAPIPort        = 5000
	DefaultRaftPort       = 5001
	DefaultGossipPort     = 5002
	DefaultRPCPort        = 5003
	DefaultWANPort        = 5004
	DefaultRouterPort     = 80
	DefaultRouterTLS      = 443
	DefaultRendezvousPort = 5005
	DefaultVoters         = 3
	DefaultHoldTimeout    = 7 * time.Second
)

// Config configures a node's cluster membership.
type Config struct {
	NodeName string
	Region   string
	Zone     string
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string

	// BindAddr is the IP to listen on; AdvertiseAddr the IP others reach
	// this node at (defaults to BindAddr, which must then not be 0.0.0.0).
	BindAddr      string
	AdvertiseAddr string
	RaftPort      int
	GossipPort    int
	WANPort       int // 0 disables the WAN pool
	RPCPort       int

	// APIURL and RouterURL are advertised to other nodes (gossip metadata).
	APIURL    string
	RouterURL string
	// Rendezvous is the advertised host:port of the attach endpoint.
	Rendezvous string
	// DynoMemoryMB and the dyno port range are advertised for placement.
	DynoMemoryMB  int
	DynoPortFirst int
	DynoPortLast  int

	// Join lists gossip addresses (host:port) of region members to join;
	// JoinWAN lists WAN gossip addresses of nodes in any region.
	Join    []string
	JoinWAN []string

	// BootstrapExpect is the number of nodes to wait for before forming the
	// region's Raft configuration (0: never bootstrap, only join).
	BootstrapExpect int
	// Voters is the target number of Raft voters (1, 3 or 5), placed over
	// zones by autopilot. Every other node is a non-voter.
	Voters int
	// DeadServerGrace is how long a server must be gone before autopilot
	// removes it from the Raft configuration.
	DeadServerGrace time.Duration
	// ServerStabilization is how long a server must be healthy before it is
	// promoted to voter (and how long a voter may be unhealthy before it is
	// replaced).
	ServerStabilization time.Duration
	// LastContactThreshold is how long a server may go without hearing from
	// the leader and still count as healthy.
	LastContactThreshold time.Duration

	// EncryptKey (16, 24 or 32 bytes) encrypts gossip and authenticates
	// internal RPC. Every node of the cluster needs the same key.
	EncryptKey []byte

	// Version is this binary's version, advertised in gossip.
	Version string
	// CommandVersion is the newest FSM command version this binary applies.
	CommandVersion int

	// HoldTimeout bounds how long a write waits for a leader before failing.
	HoldTimeout time.Duration

	// Timing tunes Raft and gossip; zero values take production defaults.
	Timing Timing

	// Network carries all traffic; nil means the host's TCP/UDP stack.
	Network Network
	Logger  *slog.Logger
	// Clock is used for grace periods and stabilization; nil is the wall clock.
	Clock Clock
}

// Timing holds the timeouts tests shorten.
type Timing struct {
	RaftHeartbeat     time.Duration
	RaftElection      time.Duration
	RaftLeaderLease   time.Duration
	RaftCommit        time.Duration
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// GossipFast selects memberlist timings suited to loopback or one LAN
	// (probe every 500 ms) instead of memberlist's defaults.
	GossipFast bool
	// GossipTest selects very short memberlist timings for in-process tests.
	GossipTest bool
	// ReconcileInterval is how often the leader reconciles gossip members
	// into Raft (and autopilot re-evaluates voters).
	ReconcileInterval time.Duration
}

// Clock tells the time.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// setDefaults fills in zero values and checks the configuration.
func (c *Config) setDefaults() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is required"))
	}
	if c.Region == "" {
		c.Region = "local"
	}
	if c.Zone == "" {
		c.Zone = "default"
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if c.AdvertiseAddr == "" {
		if ip := net.ParseIP(c.BindAddr); ip != nil && ip.IsUnspecified() {
			errs = append(errs, errors.New("advertise address is required when binding to all interfaces"))
		}
		c.AdvertiseAddr = c.BindAddr
	}
	if net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("advertise address %q is not an IP address", c.AdvertiseAddr))
	}
	for name, p := range map[string]*int{"raft": &c.RaftPort, "gossip": &c.GossipPort, "rpc": &c.RPCPort} {
		if *p <= 0 || *p > 65535 {
			errs = append(errs, fmt.Errorf("%s port %d is out of range", name, *p))
		}
	}
	if c.WANPort < 0 || c.WANPort > 65535 {
		errs = append(errs, fmt.Errorf("wan port %d is out of range", c.WANPort))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("bootstrap-expect must not be negative"))
	}
	if c.Voters == 0 {
		c.Voters = DefaultVoters
		if c.BootstrapExpect == 1 {
			c.Voters = 1
		}
	}
	switch c.Voters {
	case 1, 3, 5:
	default:
		errs = append(errs, fmt.Errorf("voters must be 1, 3 or 5 (got %d)", c.Voters))
	}
	if c.BootstrapExpect > c.Voters {
		errs = append(errs, fmt.Errorf("bootstrap-expect (%d) must not exceed voters (%d)", c.BootstrapExpect, c.Voters))
	}
	if len(c.EncryptKey) != 0 && len(c.EncryptKey) != 16 && len(c.EncryptKey) != 24 && len(c.EncryptKey) != 32 {
		errs = append(errs, fmt.Errorf("encrypt key must be 16, 24 or 32 bytes (got %d)", len(c.EncryptKey)))
	}
	if c.DeadServerGrace == 0 {
		c.DeadServerGrace = 10 * time.Minute
	}
	if c.ServerStabilization == 0 {
		c.ServerStabilization = 10 * time.Second
	}
	if c.LastContactThreshold == 0 {
		c.LastContactThreshold = 2 * time.Second
	}
	if c.HoldTimeout == 0 {
		c.HoldTimeout = DefaultHoldTimeout
	}
	if c.CommandVersion == 0 {
		c.CommandVersion = 1
	}
	if c.Timing.ReconcileInterval == 0 {
		c.Timing.ReconcileInterval = 5 * time.Second
	}
	if c.Network == nil {
		c.Network = HostNetwork{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
	return errors.Join(errs...)
}

func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeName)
	t := c.Timing
	if t.RaftHeartbeat > 0 {
		rc.HeartbeatTimeout = t.RaftHeartbeat
	}
	if t.RaftElection > 0 {
		rc.ElectionTimeout = t.RaftElection
	}
	if t.RaftLeaderLease > 0 {
		rc.LeaderLeaseTimeout = t.RaftLeaderLease
	}
	if t.RaftCommit > 0 {
		rc.CommitTimeout = t.RaftCommit
	}
	if t.SnapshotInterval > 0 {
		rc.SnapshotInterval = t.SnapshotInterval
	}
	if t.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.TrailingLogs > 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
	// Batch concurrent applies into one append (group commit).
	rc.BatchApplyCh = true
	rc.ShutdownOnRemove = false
	return rc
}

func (c *Config) addr(port int) string {
	return net.JoinHostPort(c.AdvertiseAddr, strconv.Itoa(port))
}

func (c *Config) bind(port int) string {
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(port))
}
