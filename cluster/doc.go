// Package cluster makes a Slipway node part of its region: gossip
// membership (a memberlist LAN pool per region and a WAN pool linking
// regions), the region's Raft group (hashicorp/raft with raft-boltdb stores,
// file snapshots and a TCP transport), Consul-style bootstrap-expect,
// zone-aware voter placement and dead-server cleanup through
// hashicorp/raft-autopilot, the internal RPC endpoint, and forwarding of
// writes from any node to the leader.
//
// The package knows nothing about apps: it replicates opaque commands into a
// raft.FSM supplied by the caller and returns the FSM's response, encoded as
// JSON, to whichever node proposed the command.
//
// All network access goes through the Network interface, so in-process tests
// can run whole clusters on cluster/memnet and cut links between nodes.
package cluster
