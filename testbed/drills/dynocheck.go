package drills

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/api"
)

// placementNow is the web app's dynos, by a linearizable read through any
// of via.
func (e *env) placementNow(ctx context.Context, via []string) ([]api.Dyno, error) {
	var last error
	for _, n := range via {
		ds, err := e.dynosVia(ctx, n, true)
		if err == nil {
			return ds, nil
		}
		last = err
	}
	return nil, fmt.Errorf("reading the dynos: %w", last)
}

// dynosOn is "web.1 web.4" of the dynos on the given nodes.
func dynosOn(ds []api.Dyno, nodes ...string) string {
	var out []string
	for _, d := range ds {
		if slices.Contains(nodes, d.Node) {
			out = append(out, d.Name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// formationRestored waits (up to the give-up time) until the formation is
// complete with no dyno on the lost nodes, as a linearizable read through
// via says, and records the check: which dynos moved where, and when.
func (e *env) formationRestored(ctx context.Context, fault time.Time, name string, before []api.Dyno, lost map[string]bool, via []string) {
	ds, _, err := e.waitFormation(ctx, lost, via)
	if err != nil {
		e.check(name, false, "%v", err)
		return
	}
	took := time.Since(fault)
	where := map[string]string{}
	for _, d := range ds {
		where[d.Name] = d.Node
	}
	var moves []string
	for _, d := range before {
		if lost[d.Node] {
			moves = append(moves, fmt.Sprintf("%s %s→%s", d.Name, d.Node, where[d.Name]))
		}
	}
	lostNames := slices.Sorted(maps.Keys(lost))
	e.mark("formation restored: %s (moved %s)", placement(ds), orNone(strings.Join(moves, ", ")))
	e.check(name, len(moves) > 0, "%d × web up on v%d, none on %s: %s; moved %s; %s after the fault",
		e.web.quantity, e.web.release, strings.Join(lostNames, " "), placement(ds), orNone(strings.Join(moves, ", ")), secs(took))
}

// orphans lists the web dyno processes still running on a node.
func (e *env) orphans(ctx context.Context, node string) string {
	procs, err := e.census(ctx)
	if err != nil {
		return ""
	}
	var out []string
	for _, p := range procs {
		if p.Node == node {
			out = append(out, fmt.Sprintf("%s, process group %d", p.Dyno, p.PGID))
		}
	}
	return strings.Join(out, "; ")
}

// minorityServes checks the probes of the minority's routers during a
// cut, from the routers' bound after it on: all answered, by the
// minority's own dynos (its stale state; the others are out of reach).
func (e *env) minorityServes(cut, until time.Time, minority []string, own map[string]bool) {
	from := cut.Add(e.ph.RouterBound)
	var n, failed, early, earlyFailed int
	answered := map[string]int{}
	var lastErr string
	for _, p := range e.p.Probes() {
		if !slices.Contains(minority, p.Node) || p.Start.Before(cut) || !p.Start.Before(until) {
			continue
		}
		if p.Start.Before(from) {
			early++
			if !p.OK {
				earlyFailed++
			}
			continue
		}
		n++
		if !p.OK {
			failed++
			lastErr = p.Err
			continue
		}
		answered[p.Dyno]++
	}
	foreign := 0
	var by []string
	for _, d := range slices.Sorted(maps.Keys(answered)) {
		by = append(by, fmt.Sprintf("%s %d", d, answered[d]))
		if !own[d] {
			foreign += answered[d]
		}
	}
	ok := len(own) > 0 && n > 0 && failed == 0 && foreign == 0
	e.check("the minority's router serves its own dynos on stale state", ok,
		"%d probes of %s's router from %s after the cut until +%s: %d failed%s; answered by %s (the minority's dynos: %s); in the first %s %d of %d failed",
		n, strings.Join(minority, " "), secs(e.ph.RouterBound), secs(until.Sub(e.start)), failed, ifNotEmpty(" (last: ", shortErr(lastErr), ")"),
		orNone(strings.Join(by, ", ")), orNone(strings.Join(slices.Sorted(maps.Keys(own)), " ")), secs(e.ph.RouterBound), earlyFailed, early)
}

// routersWithinBound checks that every probe through the routers sent
// from the routers' bound after the fault on answered, and that probes
// answered after the last failure (the routers serve again).
func (e *env) routersWithinBound() {
	from := e.rtoFrom
	bound := from.Add(e.ph.RouterBound)
	var n, failed, late, okAfter int
	var lastFail time.Time
	var lastErr string
	for _, p := range e.p.Probes() {
		if p.Start.Before(from) {
			continue
		}
		n++
		if p.OK {
			continue
		}
		failed++
		if !p.Start.Before(bound) {
			late++
		}
		if p.Start.After(lastFail) {
			lastFail, lastErr = p.Start, p.Node+": "+p.Err
		}
	}
	for _, p := range e.p.Probes() {
		if p.OK && p.Start.After(lastFail) && !p.Start.Before(from) {
			okAfter++
		}
	}
	when := "none failed"
	if failed > 0 {
		when = fmt.Sprintf("%d failed, the last sent %s after %s (%s)", failed, secs(lastFail.Sub(from)), e.rtoFromName, shortErr(lastErr))
	}
	e.check(fmt.Sprintf("the routers route around the loss within %s", secs(e.ph.RouterBound)), late == 0 && okAfter > 0,
		"%d probes through the routers after %s: %s; %d sent from %s on failed; %d answered after the last failure",
		n, e.rtoFromName, when, late, secs(e.ph.RouterBound), okAfter)
}

// processesOn maps the web dynos running on a node to their process
// groups.
func (e *env) processesOn(ctx context.Context, node string) (map[string]int, error) {
	procs, err := e.census(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range procs {
		if p.Node == node {
			out[p.Dyno] = p.PGID
		}
	}
	return out, nil
}

// adoption compares a node's dynos before its restart (name → process
// group) with now: a dyno whose record still places it on the node, up,
// with the same process group running, was adopted by the new agent.
func (e *env) adoption(ctx context.Context, node string, before map[string]int) (adopted, moved []string, err error) {
	ds, err := e.placementNow(ctx, e.tb.Running())
	if err != nil {
		return nil, nil, err
	}
	now, err := e.processesOn(ctx, node)
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]api.Dyno{}
	for _, d := range ds {
		byName[d.Name] = d
	}
	names := slices.Sorted(maps.Keys(before))
	sort.Strings(names)
	for _, name := range names {
		d, ok := byName[name]
		switch {
		case ok && d.Node == node && d.State == "up" && now[name] == before[name]:
			adopted = append(adopted, fmt.Sprintf("%s@%s (process group %d)", name, node, before[name]))
		case ok && d.Node == node:
			moved = append(moved, fmt.Sprintf("%s@%s restarted (%s, process group %d → %d)", name, node, d.State, before[name], now[name]))
		case ok:
			moved = append(moved, fmt.Sprintf("%s moved %s→%s", name, node, d.Node))
		default:
			moved = append(moved, name+" is gone")
		}
	}
	return adopted, moved, nil
}

func adoptionText(adopted, moved []string) string {
	var parts []string
	if len(adopted) > 0 {
		parts = append(parts, "adopted "+strings.Join(adopted, ", "))
	}
	if len(moved) > 0 {
		parts = append(parts, "NOT adopted: "+strings.Join(moved, ", "))
	}
	if len(parts) == 0 {
		return "none ran there"
	}
	return strings.Join(parts, "; ")
}
