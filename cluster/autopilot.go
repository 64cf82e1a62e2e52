package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// apDelegate connects autopilot to gossip and internal RPC.
type apDelegate struct {
	n *Node

	mu          sync.Mutex
	failedSince map[raft.ServerID]time.Time
	zones       map[raft.ServerID]string
	state       *autopilot.State
}

func newAPDelegate(n *Node) *apDelegate {
	return &apDelegate{n: n, failedSince: map[raft.ServerID]time.Time{}, zones: map[raft.ServerID]string{}}
}

func (d *apDelegate) AutopilotConfig() *autopilot.Config {
	c := d.n.cfg
	minQuorum := uint(c.Voters)
	if minQuorum > 3 {
		minQuorum = 3
	}
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    c.LastContactThreshold,
		MaxTrailingLogs:         250,
		MinQuorum:               minQuorum,
		ServerStabilizationTime: c.ServerStabilization,
	}
}

func (d *apDelegate) NotifyState(s *autopilot.State) {
	d.mu.Lock()
	d.state = s
	d.mu.Unlock()
	publishAutopilot(s)
}

// FetchServerStats asks every server for its Raft progress, in parallel.
func (d *apDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, srv := range servers {
		if srv.NodeStatus != autopilot.NodeAlive {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st serverStats
			if string(id) == d.n.cfg.NodeName {
				st = d.n.localStats()
			} else {
				addr, ok := d.n.RPCAddr(string(id))
				if !ok {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				if err := d.n.rpcJSON(cctx, addr, rpcStats, &st); err != nil {
					d.n.log.Debug("autopilot: fetching stats", "peer", id, "err", err)
					return
				}
			}
			lc := time.Duration(st.LastContactNanos)
			if st.LastContactNanos < 0 {
				lc = -1
			}
			mu.Lock()
			out[id] = &autopilot.ServerStats{LastContact: lc, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// KnownServers is every server in the Raft configuration plus every alive
// member of the region's gossip pool. A server in the configuration that
// gossip does not show alive is reported failed, and the time it was first
// seen so is remembered for the dead-server grace period.
func (d *apDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	n := d.n
	now := n.cfg.Clock.Now()
	out := map[raft.ServerID]*autopilot.Server{}
	leader := raft.ServerID(n.Leader())
	alive := map[raft.ServerID]Member{}
	for _, m := range n.lan.members() {
		if m.Meta.Region != n.cfg.Region {
			continue
		}
		if m.State == StateAlive || m.State == StateSuspect {
			alive[raft.ServerID(m.Name)] = m
		}
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	inConfig := map[raft.ServerID]bool{}
	for _, s := range f.Configuration().Servers {
		inConfig[s.ID] = true
		srv := &autopilot.Server{ID: s.ID, Name: string(s.ID), Address: s.Address, RaftVersion: raft.ProtocolVersionMax,
			IsLeader: s.ID == leader, NodeType: autopilot.NodeVoter}
		if m, ok := alive[s.ID]; ok {
			srv.NodeStatus = autopilot.NodeAlive
			srv.Version = m.Meta.Version
			srv.Meta = map[string]string{"zone": m.Meta.Zone}
			d.zones[s.ID] = m.Meta.Zone
			delete(d.failedSince, s.ID)
		} else {
			srv.NodeStatus = autopilot.NodeFailed
			srv.Meta = map[string]string{"zone": d.zones[s.ID]}
			if _, ok := d.failedSince[s.ID]; !ok {
				d.failedSince[s.ID] = now
			}
		}
		out[s.ID] = srv
	}
	for id := range d.failedSince {
		if !inConfig[id] {
			delete(d.failedSince, id)
		}
	}
	return out
}

// RemoveFailedServer removes a server that stayed failed past the grace
// period (FilterFailedServerRemovals lets only those through).
func (d *apDelegate) RemoveFailedServer(s *autopilot.Server) {
	n := d.n
	go func() {
		n.log.Warn("removing server that has been gone longer than the dead-server grace period", "peer", s.ID, "grace", n.cfg.DeadServerGrace)
		if err := n.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			n.log.Warn("removing failed server", "peer", s.ID, "err", err)
			return
		}
		n.lan.forget(string(s.ID))
		d.mu.Lock()
		delete(d.failedSince, s.ID)
		d.mu.Unlock()
	}()
}

func (d *apDelegate) expired(id raft.ServerID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	since, ok := d.failedSince[id]
	return ok && d.n.cfg.Clock.Now().Sub(since) >= d.n.cfg.DeadServerGrace
}

func (d *apDelegate) zoneOf(s *autopilot.ServerState) string {
	if z := s.Server.Meta["zone"]; z != "" {
		return z
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.zones[s.Server.ID]
}

// zonePromoter places voters over zones (PlaceVoters) and lets dead servers
// be removed only after the grace period.
type zonePromoter struct{ d *apDelegate }

func (p *zonePromoter) GetServerExt(*autopilot.Config, *autopilot.ServerState) any { return nil }
func (p *zonePromoter) GetStateExt(*autopilot.Config, *autopilot.State) any        { return nil }
func (p *zonePromoter) IsPotentialVoter(autopilot.NodeType) bool                   { return true }

func (p *zonePromoter) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	out := map[raft.ServerID]autopilot.NodeType{}
	for id := range s.Servers {
		out[id] = autopilot.NodeVoter
	}
	return out
}

func (p *zonePromoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	now := p.d.n.cfg.Clock.Now()
	stab := s.ServerStabilizationTime(c)
	var cands []Candidate
	for id, ss := range s.Servers {
		cand := Candidate{ID: string(id), Zone: p.d.zoneOf(ss), Voter: ss.HasVotingRights(), Leader: id == s.Leader}
		if cand.Voter {
			// A voter keeps its vote until it has been unhealthy for the
			// stabilization time.
			cand.Eligible = ss.Health.Healthy || now.Sub(ss.Health.StableSince) < stab
		} else {
			cand.Eligible = ss.Health.IsStable(now, stab)
		}
		cands = append(cands, cand)
	}
	promote, demote := VoterChanges(cands, p.d.n.cfg.Voters)
	var ch autopilot.RaftChanges
	for _, id := range promote {
		ch.Promotions = append(ch.Promotions, raft.ServerID(id))
	}
	for _, id := range demote {
		ch.Demotions = append(ch.Demotions, raft.ServerID(id))
	}
	return ch
}

func (p *zonePromoter) FilterFailedServerRemovals(_ *autopilot.Config, _ *autopilot.State, f *autopilot.FailedServers) *autopilot.FailedServers {
	out := &autopilot.FailedServers{StaleNonVoters: f.StaleNonVoters, StaleVoters: f.StaleVoters}
	for _, s := range f.FailedNonVoters {
		if p.d.expired(s.ID) {
			out.FailedNonVoters = append(out.FailedNonVoters, s)
		}
	}
	for _, s := range f.FailedVoters {
		if p.d.expired(s.ID) {
			out.FailedVoters = append(out.FailedVoters, s)
		}
	}
	return out
}
