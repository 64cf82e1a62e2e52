package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

func (n *Node) monitorLeadership() {
	var (
		cancel context.CancelFunc
		wg     sync.WaitGroup
	)
	stopLeading := func() {
		if cancel != nil {
			cancel()
			wg.Wait()
			cancel = nil
		}
	}
	defer stopLeading()
	for {
		select {
		case <-n.ctx.Done():
			return
		case leader := <-n.notifyCh:
			switch {
			case leader && cancel == nil:
				cancel = n.startLeading(&wg)
			case !leader:
				stopLeading()
			}
		}
	}
}

func (n *Node) startLeading(wg *sync.WaitGroup) context.CancelFunc {
	ctx, cancel := context.WithCancel(n.ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.leaderLoop(ctx)
	}()
	return cancel
}

// leaderLoop runs while this node leads: it waits until the FSM has caught
// up, runs autopilot and the registered leader hooks, and keeps adding
// gossip members of the region to Raft as non-voters.
func (n *Node) leaderLoop(ctx context.Context) {
	n.log.Info("became leader")
	defer n.log.Info("no longer leader")
	defer n.readsReady.Store(false)
	for {
		if err := n.raft.Barrier(time.Minute).Error(); err == nil {
			break
		} else if ctx.Err() != nil {
			return
		} else {
			n.log.Warn("leader barrier failed, retrying", "err", err)
		}
	}
	// An entry of this term is committed and applied: the commit index is
	// now current, so linearizable reads may use it.
	n.readsReady.Store(true)
	n.autopilot.Start(ctx)
	n.hooksMu.Lock()
	hooks := append([]func(context.Context){}, n.leaderHooks...)
	n.hooksMu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h(ctx)
		}()
	}
	defer wg.Wait()

	tick := time.NewTicker(n.cfg.Timing.ReconcileInterval)
	defer tick.Stop()
	for {
		n.reconcileMembers()
		select {
		case <-ctx.Done():
			<-n.autopilot.Stop()
			return
		case <-tick.C:
		case <-n.lan.notify:
		}
	}
}

// reconcileMembers adds alive region members that are not in the Raft
// configuration as non-voters (autopilot promotes them as placement wants),
// and fixes entries whose address changed.
func (n *Node) reconcileMembers() {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.log.Warn("reconcile: reading configuration", "err", err)
		return
	}
	have := map[raft.ServerID]raft.Server{}
	for _, s := range f.Configuration().Servers {
		have[s.ID] = s
	}
	for _, m := range n.lan.members() {
		if m.State != StateAlive || m.Meta.Raft == "" {
			continue
		}
		if m.Meta.Region != n.cfg.Region {
			n.log.Warn("a node of another region is in this region's gossip pool; ignoring it", "peer", m.Name, "peer_region", m.Meta.Region)
			continue
		}
		id, addr := raft.ServerID(m.Name), raft.ServerAddress(m.Meta.Raft)
		s, ok := have[id]
		if ok && s.Address == addr {
			continue
		}
		if ok {
			n.log.Info("raft address of a member changed; re-adding it", "peer", m.Name, "old", s.Address, "new", addr)
			if err := n.raft.RemoveServer(id, 0, 10*time.Second).Error(); err != nil {
				n.log.Warn("removing stale raft entry", "peer", m.Name, "err", err)
				continue
			}
		}
		n.log.Info("adding member to raft as non-voter", "peer", m.Name, "zone", m.Meta.Zone)
		if err := n.raft.AddNonvoter(id, addr, 0, 10*time.Second).Error(); err != nil {
			n.log.Warn("adding non-voter", "peer", m.Name, "err", err)
		}
	}
}
