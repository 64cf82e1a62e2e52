package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// bootstrapLoop forms the region's Raft configuration the way Consul's
// bootstrap_expect does: only on a node with no Raft state, only once the
// expected number of nodes (all configured with the same expect value) are
// alive in gossip, and only if none of them already has Raft state. The
// chosen voters are spread over zones; nodes not chosen wait for the leader
// to add them.
func (n *Node) bootstrapLoop() {
	if n.cfg.BootstrapExpect == 0 || n.hasRaftState() {
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if n.hasRaftState() {
			return
		}
		done := n.tryBootstrap()
		if done {
			return
		}
	}
}

func (n *Node) tryBootstrap() (done bool) {
	expect := n.cfg.BootstrapExpect
	var candidates []Member
	for _, m := range n.lan.members() {
		if m.State != StateAlive || m.Meta.Region != n.cfg.Region || m.Meta.Expect == 0 {
			continue
		}
		if m.Meta.Expect != expect {
			n.log.Error("bootstrap-expect differs between nodes; not bootstrapping", "peer", m.Name, "peer_expect", m.Meta.Expect, "expect", expect)
			return false
		}
		candidates = append(candidates, m)
	}
	if len(candidates) < expect {
		return false
	}
	for _, m := range candidates {
		if m.Name == n.cfg.NodeName {
			continue
		}
		var st nodeStatus
		ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
		err := n.rpcJSON(ctx, m.Meta.RPC, rpcStatus, &st)
		cancel()
		if err != nil {
			n.log.Debug("bootstrap: peer status unavailable, waiting", "peer", m.Name, "err", err)
			return false
		}
		if st.HasState {
			n.log.Info("bootstrap: a peer already has Raft state; waiting to be added by the leader", "peer", m.Name)
			return true
		}
	}
	chosen := chooseBootstrapVoters(candidates, expect)
	var servers []raft.Server
	self := false
	for _, m := range chosen {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft)})
		self = self || m.Name == n.cfg.NodeName
	}
	if !self {
		n.log.Info("bootstrap: not among the initial voters; waiting to be added by the leader")
		return true
	}
	names := make([]string, len(chosen))
	for i, m := range chosen {
		names[i] = m.Name + "@" + m.Meta.Zone
	}
	n.log.Info("bootstrapping the region's Raft cluster", "voters", names)
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		n.log.Error("bootstrap failed", "err", err)
		return n.hasRaftState()
	}
	return true
}

// chooseBootstrapVoters picks expect members spread over zones,
// deterministically (every node that sees the same members picks the same).
func chooseBootstrapVoters(members []Member, expect int) []Member {
	cands := make([]Candidate, len(members))
	byID := map[string]Member{}
	for i, m := range members {
		cands[i] = Candidate{ID: m.Name, Zone: m.Meta.Zone, Eligible: true}
		byID[m.Name] = m
	}
	chosen := PlaceVoters(cands, expect)
	var out []Member
	for id := range chosen {
		out = append(out, byID[id])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
