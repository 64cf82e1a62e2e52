package drills

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
)

// NodeLoss: kill -9 of one node's agent (the leader, the harder case);
// writes continue through the others; the node's dynos move to the other
// nodes (its dyno processes outlive the agent, by design); the node is
// restarted, catches up, and stops the dynos that moved away.
func NodeLoss() Drill {
	return Drill{
		Name:        "node-loss",
		Summary:     "kill -9 one node (the leader): writes continue, its dynos move; restarted, it catches up",
		RouterBound: true,
		run: func(ctx context.Context, e *env) error {
			victim, zone, err := e.leader(ctx)
			if err != nil {
				return err
			}
			before, err := e.placementNow(ctx, e.tb.Running())
			if err != nil {
				return err
			}
			t := e.mark("kill -9 %s (the leader, zone %s; its dynos: %s)", victim, zone, dynosOn(before, victim))
			e.faultAt("the kill", t)
			if err := e.tb.KillNode(victim); err != nil {
				return err
			}
			e.formationRestored(ctx, t, "its dynos move: the formation restored on the other nodes", before, setOf(victim), e.tb.Running())
			if orphans := e.orphans(ctx, victim); orphans != "" {
				e.note("while %s's agent was down its dyno processes kept running (%s), as they do by design: the next agent adopts them or, as here, stops them", victim, orphans)
			}
			if err := sleepCtx(ctx, time.Until(t.Add(e.ph.Observe))); err != nil {
				return err
			}
			leader, lzone, err := e.leader(ctx)
			e.check("a new leader", err == nil && leader != victim, "%s in zone %s%s", leader, lzone, errNote(err))
			n := e.ackedBetween(t, time.Now())
			e.check("writes continue without it", n > 0, "%d writes acknowledged while %s was down", n, victim)
			return e.bringBack(ctx, []string{victim}, "restart "+victim, victim+" caught up (answers linearizable reads): back in rotation",
				func() error { return e.tb.StartNode(victim) })
		},
	}
}

// bringBack returns lost nodes to service as a load balancer would: out of
// rotation while start brings them back, in again once each passes the
// health check (waitHealthy).
func (e *env) bringBack(ctx context.Context, names []string, starting, back string, start func() error) error {
	e.setOut(names, true)
	e.mark("%s", starting)
	if err := start(); err != nil {
		return err
	}
	for _, n := range names {
		if err := e.waitHealthy(ctx, n); err != nil {
			return err
		}
	}
	e.setOut(names, false)
	e.mark("%s", back)
	return nil
}

func setOf(names ...string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// ZoneLoss: one of three zones goes dark (its nodes lose power: their
// agents and dynos killed, and their addresses stop answering); Raft keeps
// its quorum in the other two zones and writes continue; the routers stop
// sending to the dead zone's dynos within seconds and the formation is
// restored in the other zones; the zone comes back and catches up.
func ZoneLoss() Drill {
	return Drill{
		Name:        "zone-loss",
		Summary:     "one of 3 zones goes dark: Raft keeps quorum, writes continue, the routers route around it, its dynos move; the zone comes back",
		RouterBound: true,
		run: func(ctx context.Context, e *env) error {
			_, zone, err := e.leader(ctx)
			if err != nil {
				return err
			}
			region := e.tb.Plan().Regions()[0]
			names := e.tb.ZoneNodes(region, zone)
			before, err := e.placementNow(ctx, e.tb.Running())
			if err != nil {
				return err
			}
			t := e.mark("zone %s goes dark (the leader's zone: %s powered off, kill -9 of the agents and dynos, addresses black-holed; its dynos: %s)",
				zone, strings.Join(names, " "), dynosOn(before, names...))
			e.faultAt("the zone going dark", t)
			if err := e.tb.KillZone(ctx, region, zone); err != nil {
				return err
			}
			e.formationRestored(ctx, t, "the formation restored in the other zones", before, setOf(names...), e.tb.Running())
			if err := sleepCtx(ctx, time.Until(t.Add(e.ph.Observe))); err != nil {
				return err
			}
			leader, lzone, err := e.leader(ctx)
			e.check("quorum kept: a leader in another zone", err == nil && lzone != zone, "%s in zone %s%s", leader, lzone, errNote(err))
			n := e.ackedBetween(t, time.Now())
			e.check("writes continue", n > 0, "%d writes acknowledged while zone %s was dark", n, zone)
			return e.bringBack(ctx, names, "zone "+zone+" comes back", "zone "+zone+" caught up: back in rotation",
				func() error { return e.tb.ReviveZone(ctx, region, zone) })
		},
	}
}

// PartitionDrill: a zone (the leader's) is cut off from the others. The
// minority refuses writes and linearizable reads with 503 unavailable but
// keeps serving reads from its stale replica; the majority elects a leader
// and writes continue; after healing, every node converges.
//
// Its routers keep routing on their last state: the minority's router
// serves the app from the minority's own dynos, while the majority moves
// those dynos to its own nodes. After healing, the minority's copies stop:
// every dyno runs once.
func PartitionDrill() Drill {
	return Drill{
		Name:        "partition",
		Summary:     "a zone is cut off: the minority refuses writes (503 unavailable) but serves stale reads and its dynos' traffic; healed, all converge",
		RouterBound: true,
		run: func(ctx context.Context, e *env) error {
			_, zone, err := e.leader(ctx)
			if err != nil {
				return err
			}
			region := e.tb.Plan().Regions()[0]
			minority := e.tb.ZoneNodes(region, zone)
			var majority []string
			for _, n := range e.tb.Names() {
				if !slices.Contains(minority, n) {
					majority = append(majority, n)
				}
			}
			before, err := e.placementNow(ctx, e.tb.Running())
			if err != nil {
				return err
			}
			minorityDynos := map[string]bool{}
			for _, d := range before {
				if slices.Contains(minority, d.Node) {
					minorityDynos[d.Name] = true
				}
			}
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
			t := e.mark("cut zone %s (%s, holding the leader; its dynos: %s) off from the other zones", zone, strings.Join(minority, " "), dynosOn(before, minority...))
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

			e.formationRestored(ctx, t, "the majority restores the formation on its nodes", before, setOf(minority...), majority)
			// The minority's router is probed throughout; give it a few
			// seconds past the routers' bound to show it keeps serving.
			end := t.Add(max(e.ph.Observe, e.ph.RouterBound+5*time.Second))
			if err := sleepCtx(ctx, time.Until(end)); err != nil {
				return err
			}
			e.minorityServes(t, time.Now(), minority, minorityDynos)
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
// SIGKILL, the dynos too, addresses dark), then all are powered on; the
// cluster re-forms by itself (no manual step) with all its state, and the
// app serves again with its last release (a config change made just
// before: a release that rolled every dyno).
func PowerCycle() Drill {
	return Drill{
		Name:    "power-cycle",
		Summary: "every node killed at once (power off), then started: the cluster re-forms by itself with all its state; the app serves its last release again",
		prepare: func(ctx context.Context, e *env) error {
			// A last release after the deploy: the app must come back
			// with it, not with the one before.
			return e.setGreeting(ctx, fmt.Sprintf("last-before-the-power-cut-%d", time.Now().Unix()))
		},
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
			ds, _, err := e.waitFormation(ctx, nil, e.tb.Running())
			e.check("every dyno back on the app's last release", err == nil, "%d × web up on v%d (%s) %s after powering on%s",
				e.web.quantity, e.web.release, placement(ds), secs(time.Since(t)), errNote(err))
			var serving []string
			for _, n := range e.tb.Running() {
				if err := e.waitRouter(ctx, n); err != nil {
					e.check("every router serves the last release", false, "%v", err)
					return nil
				}
				serving = append(serving, n)
			}
			e.check("every router serves the last release", true, "%s answer %q, %s after powering on",
				strings.Join(serving, " "), strings.TrimSpace(e.web.want()), secs(time.Since(t)))
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
// it (SIGTERM: it hands leadership over and leaves gossip; its dynos keep
// running), start it, wait until it has caught up and its router serves,
// put it back. No request may fail, through the API or the routers, and
// the restarted agents adopt their dynos.
func RollingRestart() Drill {
	return Drill{
		Name:         "rolling-restart",
		Summary:      "every node restarted in turn under load: no failed requests, no lost writes, dynos adopted",
		ZeroFailures: true,
		run: func(ctx context.Context, e *env) error {
			var adopted, moved []string
			for i, n := range e.tb.Names() {
				before, err := e.processesOn(ctx, n)
				if err != nil {
					return err
				}
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
				a, m, err := e.adoption(ctx, n, before)
				if err != nil {
					return err
				}
				adopted, moved = append(adopted, a...), append(moved, m...)
				e.putBack(n)
				e.mark("%s caught up, its router serves, back in rotation; its dynos: %s", n, adoptionText(a, m))
			}
			e.check("the restarted agents adopt their dynos", len(moved) == 0 && len(adopted) > 0,
				"%s", adoptionText(adopted, moved))
			return nil
		},
	}
}
