package drills

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// NodeLoss: kill -9 of one node (the leader, the harder case); writes
// continue through the others; the node is restarted and catches up.
func NodeLoss() Drill {
	return Drill{
		Name:    "node-loss",
		Summary: "kill -9 one node (the leader): writes continue; restarted, it catches up",
		run: func(ctx context.Context, e *env) error {
			victim, zone, err := e.leader(ctx)
			if err != nil {
				return err
			}
			t := e.mark("kill -9 %s (the leader, zone %s)", victim, zone)
			e.faultAt("the kill", t)
			if err := e.tb.KillNode(victim); err != nil {
				return err
			}
			if err := sleepCtx(ctx, e.ph.Observe); err != nil {
				return err
			}
			leader, lzone, err := e.leader(ctx)
			e.check("a new leader", err == nil && leader != victim, "%s in zone %s%s", leader, lzone, errNote(err))
			n := e.ackedBetween(t, time.Now())
			e.check("writes continue without it", n > 0, "%d writes acknowledged while %s was down", n, victim)
			// Like a load balancer, the drill sends it requests again only
			// once it passes a health check.
			e.setOut([]string{victim}, true)
			e.mark("restart %s", victim)
			if err := e.tb.StartNode(victim); err != nil {
				return err
			}
			if err := e.waitHealthy(ctx, victim); err != nil {
				return err
			}
			e.setOut([]string{victim}, false)
			e.mark("%s caught up (answers linearizable reads): back in rotation", victim)
			return nil
		},
	}
}

// ZoneLoss: one of three zones goes dark (its nodes lose power: killed, and
// their addresses stop answering); Raft keeps its quorum in the other two
// zones and writes continue; the zone comes back and catches up.
func ZoneLoss() Drill {
	return Drill{
		Name:    "zone-loss",
		Summary: "one of 3 zones goes dark: Raft keeps quorum, writes continue; the zone comes back",
		run: func(ctx context.Context, e *env) error {
			_, zone, err := e.leader(ctx)
			if err != nil {
				return err
			}
			region := e.tb.Plan().Regions()[0]
			names := e.tb.ZoneNodes(region, zone)
			t := e.mark("zone %s goes dark (the leader's zone: %s powered off, kill -9, addresses black-holed)", zone, strings.Join(names, " "))
			e.faultAt("the zone going dark", t)
			if err := e.tb.KillZone(ctx, region, zone); err != nil {
				return err
			}
			if err := sleepCtx(ctx, e.ph.Observe); err != nil {
				return err
			}
			leader, lzone, err := e.leader(ctx)
			e.check("quorum kept: a leader in another zone", err == nil && lzone != zone, "%s in zone %s%s", leader, lzone, errNote(err))
			n := e.ackedBetween(t, time.Now())
			e.check("writes continue", n > 0, "%d writes acknowledged while zone %s was dark", n, zone)
			e.setOut(names, true)
			e.mark("zone %s comes back", zone)
			if err := e.tb.ReviveZone(ctx, region, zone); err != nil {
				return err
			}
			for _, n := range names {
				if err := e.waitHealthy(ctx, n); err != nil {
					return err
				}
			}
			e.setOut(names, false)
			e.mark("zone %s caught up: back in rotation", zone)
			return nil
		},
	}
}

// PartitionDrill: a zone (the leader's) is cut off from the others. The
// minority refuses writes and linearizable reads with 503 unavailable but
// keeps serving reads from its stale replica; the majority elects a leader
// and writes continue; after healing, every node converges.
func PartitionDrill() Drill {
	return Drill{
		Name:    "partition",
		Summary: "a zone is cut off: the minority refuses writes (503 unavailable) but serves stale reads; healed, all converge",
		run: func(ctx context.Context, e *env) error {
			_, zone, err := e.leader(ctx)
			if err != nil {
				return err
			}
			region := e.tb.Plan().Regions()[0]
			minority := e.tb.ZoneNodes(region, zone)
			// Clients of the minority are the drill's own probes below;
			// the writer keeps to the majority.
			e.setNoWrites(minority, true)
			for _, m := range minority {
				for e.w.Inflight(m) > 0 {
					if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
						return err
					}
				}
			}
			t := e.mark("cut zone %s (%s, holding the leader) off from the other zones", zone, strings.Join(minority, " "))
			e.faultAt("the cut", t)
			if err := e.tb.IsolateZone(ctx, region, zone); err != nil {
				return err
			}
			m := minority[0]
			ep := Endpoint{Name: m, URL: e.tb.APIURL(m)}
			var lost error
			err = retry(ctx, e.ph.GiveUp, func() error {
				h, err := e.tb.Health(ctx, m)
				if err == nil && h.Leader != "" {
					err = fmt.Errorf("%s still follows %s", m, h.Leader)
				}
				lost = err
				return err
			})
			e.check("the minority notices", err == nil, "%s has no leader%s", m, errNote(lost))
			e.mark("%s reports no leader", m)

			// A write and a linearizable read through the minority, at
			// once (each waits out the API's 7 s hold for a leader).
			var w, lr Op
			var both sync.WaitGroup
			both.Add(2)
			go func() { defer both.Done(); w = e.w.Write(ctx, 100, ep, true) }()
			go func() { defer both.Done(); lr = e.w.Read(ctx, 101, ep, true, true) }()
			both.Wait()
			e.check("the minority refuses writes with 503 unavailable",
				w.Outcome != OK && w.Status == http.StatusServiceUnavailable && w.ErrID == "unavailable",
				"%s answered %s in %s", m, describe(w), secs(w.End.Sub(w.Start)))
			e.check("the minority refuses linearizable reads with 503",
				lr.Outcome != OK && lr.Status == http.StatusServiceUnavailable,
				"%s answered %s in %s", m, describe(lr), secs(lr.End.Sub(lr.Start)))
			sr := e.w.Read(ctx, 100, ep, false, true)
			known := map[string]bool{"": true}
			for _, op := range e.w.Ops() {
				if op.Kind == Write {
					known[op.Value] = true
				}
			}
			stale := sr.Outcome == OK
			for _, k := range keysOf() {
				stale = stale && known[sr.Values[k]]
			}
			behind := e.ackedBetween(t, time.Now())
			e.check("the minority serves reads from its stale replica", stale,
				"%s answered %s; the majority acknowledged %d writes since the cut", m, describe(sr), behind)

			if rest := time.Until(t.Add(e.ph.Observe)); rest > 0 {
				if err := sleepCtx(ctx, rest); err != nil {
					return err
				}
			}
			n := e.ackedBetween(t, time.Now())
			e.check("the majority keeps taking writes", n > 0, "%d writes acknowledged through the majority during the cut", n)
			e.mark("heal the partition")
			if err := e.tb.Heal(ctx); err != nil {
				return err
			}
			for _, m := range minority {
				if err := e.waitHealthy(ctx, m); err != nil {
					return err
				}
			}
			e.setNoWrites(minority, false)
			e.mark("%s caught up: the writer uses it again", strings.Join(minority, " "))
			return nil
		},
	}
}

// errNote is "" or "; the error".
func errNote(err error) string {
	if err == nil {
		return ""
	}
	return "; " + err.Error()
}

// describe is a short account of an operation's outcome.
func describe(op Op) string {
	if op.Outcome == OK {
		if op.Kind == Write {
			return "200 (accepted)"
		}
		return fmt.Sprintf("200 %v", op.Values)
	}
	if op.Status != 0 {
		return fmt.Sprintf("%d %s", op.Status, shortErr(op.Err))
	}
	return shortErr(op.Err)
}

// PowerCycle: every node loses power at once (every process killed with
// SIGKILL, addresses dark), then all are powered on; the cluster re-forms
// by itself (no manual step) with all its state.
func PowerCycle() Drill {
	return Drill{
		Name:    "power-cycle",
		Summary: "every node killed at once (power off), then started: the cluster re-forms by itself with all its state",
		run: func(ctx context.Context, e *env) error {
			before, err := latestRelease(ctx, e)
			if err != nil {
				return err
			}
			names := e.tb.Running()
			e.mark("power off every node at once (%s: kill -9 of every process, addresses dark); latest release v%d", strings.Join(names, " "), before)
			if err := e.tb.PowerOff(ctx, names...); err != nil {
				return err
			}
			if err := sleepCtx(ctx, e.ph.Off); err != nil {
				return err
			}
			t := e.mark("power every node on")
			e.faultAt("powering the nodes on", t)
			if err := e.tb.PowerOn(ctx, names...); err != nil {
				return err
			}
			for _, n := range names {
				if err := e.waitHealthy(ctx, n); err != nil {
					return err
				}
			}
			e.mark("the cluster re-formed: every node follows a leader and answers linearizable reads")
			after, err := latestRelease(ctx, e)
			e.check("every release is back", err == nil && after >= before,
				"latest release v%d before the power cut, v%d after%s", before, after, errNote(err))
			return nil
		},
	}
}

// latestRelease reads the app's newest release version linearizably.
func latestRelease(ctx context.Context, e *env) (int, error) {
	var v int
	err := retry(ctx, e.ph.GiveUp, func() error {
		for _, n := range e.tb.Running() {
			var rels []api.Release
			_, err := e.tb.Client(n, 10*time.Second).Do(ctx, http.MethodGet, client.Path("apps", appName, "releases"), nil, &rels,
				http.Header{"X-Slipway-Consistency": {"linearizable"}, "Range": {"version ..; max=1, order=desc"}})
			if err == nil && len(rels) == 1 {
				v = rels[0].Version
				return nil
			}
		}
		return fmt.Errorf("no node answered a linearizable read of the releases")
	})
	return v, err
}

// RollingRestart restarts every node in turn, gracefully, under load, the
// way an operator upgrades a cluster: take the node out of rotation, stop
// it (SIGTERM: it hands leadership over and leaves gossip), start it, wait
// until it has caught up, put it back. No request may fail.
func RollingRestart() Drill {
	return Drill{
		Name:         "rolling-restart",
		Summary:      "every node restarted in turn under load: no failed requests, no lost writes",
		ZeroFailures: true,
		run: func(ctx context.Context, e *env) error {
			for i, n := range e.tb.Names() {
				t := e.mark("restart %s: out of rotation, SIGTERM, start", n)
				if i == 0 {
					e.faultAt("the first restart", t)
				}
				if err := e.takeOut(ctx, n); err != nil {
					return err
				}
				if err := e.tb.RestartNode(ctx, n); err != nil {
					return err
				}
				if err := e.waitHealthy(ctx, n); err != nil {
					return err
				}
				e.putBack(n)
				e.mark("%s caught up and back in rotation", n)
			}
			return nil
		},
	}
}
