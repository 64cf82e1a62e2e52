// Package scheduler places an app's dynos on the region's nodes. It runs on
// the Raft leader: it reconciles every app's formation with its dyno
// records and proposes the difference as one fsm.DynoPlan at a time —
// creating, placing, restarting (crash backoff, daily cycling), rolling to a
// new release (start new, wait until up, stop old) and stopping dynos, and
// moving the dynos of nodes that gossip declares dead. The supervisor of
// each node runs what the records say.
//
// Plan is a pure function of its input (state, nodes, time, randomness), so
// every rule is unit-tested without a cluster.
package scheduler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// NodeState is what placement knows about a node.
type NodeState int

// Node states.
const (
	NodeAlive   NodeState = iota // in gossip, alive
	NodeUnknown                  // not seen yet (the cluster is starting), or left gracefully within the grace: leave its dynos alone
	NodeDead                     // declared dead or left: move its dynos
)

// Node is a placement target.
type Node struct {
	Name      string
	Zone      string
	Addr      string
	State     NodeState
	Draining  bool
	MemoryMB  int
	PortFirst int
	PortLast  int
}

// Config holds the scheduler's policies.
type Config struct {
	// Backoff is the wait before restarting a crashed dyno, indexed by its
	// consecutive crash count - 1 (the last entry repeats). Heroku's: the
	// first restart is immediate, then 20, 40, 60, 180 and 320 minutes.
	Backoff []time.Duration
	// Cycle is how often every dyno is restarted, plus up to CycleJitter.
	Cycle       time.Duration
	CycleJitter time.Duration
	// LeftGrace: the dynos of a node that left gossip gracefully (its
	// agent stopped with SIGTERM, as for a restart or an upgrade; its
	// dynos keep running) stay placed on it this long, so that the agent
	// coming back adopts them; then they move. A node that fails (no
	// goodbye) has its dynos moved at once; drain a node to move its
	// dynos before taking it away for good.
	LeftGrace time.Duration
}

// DefaultConfig is Heroku's policy.
func DefaultConfig() Config {
	return Config{
		Backoff:     []time.Duration{0, 20 * time.Minute, 40 * time.Minute, 60 * time.Minute, 180 * time.Minute, 320 * time.Minute},
		Cycle:       24 * time.Hour,
		CycleJitter: 216 * time.Minute,
		LeftGrace:   time.Minute,
	}
}

// backoff is the wait after the n-th consecutive crash.
func (c Config) backoff(crashes int) time.Duration {
	if len(c.Backoff) == 0 || crashes <= 0 {
		return 0
	}
	i := min(crashes-1, len(c.Backoff)-1)
	return c.Backoff[i]
}

// Input is everything a plan depends on.
type Input struct {
	Snap   *fsm.Snap
	Nodes  []Node
	Now    time.Time
	Config Config
	// NewID returns fresh ids (dyno ids and instance ids).
	NewID func() string
	// Jitter returns a random duration in [0, max).
	Jitter func(max time.Duration) time.Duration
}

// Plan computes the next step. It also returns the earliest time at which a
// later plan may have work even if nothing changes (a backoff or cycle
// coming due); zero if none.
func Plan(in Input) (fsm.DynoPlan, time.Time) {
	p := planner{in: in, nodes: map[string]*Node{}, used: map[string]map[int]bool{}, mem: map[string]int{}}
	for i := range in.Nodes {
		n := &in.Nodes[i]
		p.nodes[n.Name] = n
		p.used[n.Name] = map[int]bool{}
	}
	all := in.Snap.AllDynos()
	sort.Slice(all, func(i, j int) bool {
		if all[i].AppID != all[j].AppID {
			return all[i].AppID < all[j].AppID
		}
		if all[i].Name != all[j].Name {
			return all[i].Name < all[j].Name
		}
		return all[i].CreatedAt.Before(all[j].CreatedAt)
	})
	// Ports and memory already taken on each node.
	for _, d := range all {
		if d.Node == "" || (d.Stop && d.State == fsm.DynoDown) {
			continue
		}
		if p.used[d.Node] != nil {
			p.used[d.Node][d.Port] = true
		}
		p.mem[d.Node] += sizeMB(d.Size)
	}
	byApp := map[string][]*fsm.Dyno{}
	for _, d := range all {
		byApp[d.AppID] = append(byApp[d.AppID], d)
	}
	for _, app := range in.Snap.Apps() {
		p.app(app, byApp[app.ID])
		delete(byApp, app.ID)
	}
	// Dynos of apps that no longer exist (the FSM deletes them with the
	// app, so this only catches stragglers).
	for _, ds := range byApp {
		for _, d := range ds {
			p.stop(d)
		}
	}
	p.placeAll()
	return p.plan, p.wake
}

func sizeMB(name string) int {
	if s, ok := fsm.LookupDynoSize(name); ok {
		return s.MemoryMB
	}
	return 512
}

type planner struct {
	in    Input
	plan  fsm.DynoPlan
	wake  time.Time
	nodes map[string]*Node
	used  map[string]map[int]bool // node → ports taken
	mem   map[string]int          // node → MB taken
	// toPlace are dynos (existing or created in this plan) that need a node.
	toPlace []*fsm.Dyno
	// placedHere counts, per app/type, dynos per zone and per node (for spreading).
	spreadZone map[string]map[string]int
	spreadNode map[string]map[string]int
}

func (p *planner) wakeAt(t time.Time) {
	if p.wake.IsZero() || t.Before(p.wake) {
		p.wake = t
	}
}

func (p *planner) nodeState(name string) NodeState {
	if n, ok := p.nodes[name]; ok {
		return n.State
	}
	return NodeDead // not a member of the region at all
}

func (p *planner) stop(d *fsm.Dyno) {
	if d.Stop {
		p.retire(d)
		return
	}
	p.plan.Stop = append(p.plan.Stop, d.ID)
}

// retire removes the record of a stopping dyno once nothing runs it.
func (p *planner) retire(d *fsm.Dyno) {
	if d.State == fsm.DynoDown || d.Node == "" || p.nodeState(d.Node) == NodeDead {
		p.plan.Remove = append(p.plan.Remove, d.ID)
	}
}

func (p *planner) cycleAt() *time.Time {
	if p.in.Config.Cycle <= 0 {
		return nil
	}
	j := time.Duration(0)
	if p.in.Config.CycleJitter > 0 && p.in.Jitter != nil {
		j = p.in.Jitter(p.in.Config.CycleJitter)
	}
	t := p.in.Now.Add(p.in.Config.Cycle + j)
	return &t
}

func (p *planner) restart(d *fsm.Dyno) {
	p.plan.Restart = append(p.plan.Restart, fsm.Restart{ID: d.ID, Instance: p.in.NewID(), CycleAt: p.cycleAt()})
}

// index parses the number of a formation dyno name ("web.3" → 3).
func index(d *fsm.Dyno) int {
	_, n, ok := strings.Cut(d.Name, ".")
	if !ok {
		return 0
	}
	i, err := strconv.Atoi(n)
	if err != nil {
		return 0
	}
	return i
}

func (p *planner) app(app *fsm.App, dynos []*fsm.Dyno) {
	snap := p.in.Snap
	rel := snap.CurrentRelease(app.ID)
	formation := map[string]*fsm.Formation{}
	for _, f := range snap.Formation(app.ID) {
		formation[f.Type] = f
	}
	current := func(d *fsm.Dyno) bool {
		f := formation[d.Type]
		return rel != nil && f != nil && d.ReleaseID == rel.ID && strings.EqualFold(d.Size, f.Size) && d.Command == f.Command
	}
	// slots[type][i] holds the dynos named type.i.
	slots := map[string]map[int][]*fsm.Dyno{}
	for _, d := range dynos {
		switch {
		case d.Stop:
			p.retire(d)
			continue
		case d.OneOff:
			p.oneOff(d)
			continue
		}
		f := formation[d.Type]
		i := index(d)
		if f == nil || i < 1 || i > f.Quantity || rel == nil {
			p.stop(d)
			continue
		}
		if slots[d.Type] == nil {
			slots[d.Type] = map[int][]*fsm.Dyno{}
		}
		slots[d.Type][i] = append(slots[d.Type][i], d)
	}
	if rel == nil || rel.SlugID == "" {
		return
	}
	types := make([]string, 0, len(formation))
	for t := range formation {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		f := formation[t]
		for i := 1; i <= f.Quantity; i++ {
			p.slot(app, rel, f, i, slots[t][i], current)
		}
	}
}

// slot reconciles the dynos named type.i: exactly one current dyno should
// run; an out-of-date one keeps running until its replacement is up.
func (p *planner) slot(app *fsm.App, rel *fsm.Release, f *fsm.Formation, i int, ds []*fsm.Dyno, current func(*fsm.Dyno) bool) {
	var cur, stale []*fsm.Dyno
	for _, d := range ds {
		if current(d) {
			cur = append(cur, d)
		} else {
			stale = append(stale, d)
		}
	}
	// Keep one current dyno: prefer one that is up, then the newest.
	if len(cur) > 1 {
		sort.Slice(cur, func(a, b int) bool {
			ua, ub := cur[a].State == fsm.DynoUp, cur[b].State == fsm.DynoUp
			if ua != ub {
				return ua
			}
			return cur[a].CreatedAt.After(cur[b].CreatedAt)
		})
		for _, d := range cur[1:] {
			p.stop(d)
		}
		cur = cur[:1]
	}
	if len(cur) == 0 {
		d := &fsm.Dyno{ID: p.in.NewID(), AppID: app.ID, Name: fmt.Sprintf("%s.%d", f.Type, i), Type: f.Type,
			Command: f.Command, Size: f.Size, ReleaseID: rel.ID, Version: rel.Version}
		p.plan.Create = append(p.plan.Create, *d)
		p.toPlace = append(p.toPlace, d)
		cur = []*fsm.Dyno{d}
	} else {
		p.formationDyno(cur[0])
	}
	newUp := cur[0].State == fsm.DynoUp && cur[0].Node != ""
	for _, d := range stale {
		switch {
		case newUp, d.State == fsm.DynoCrashed, d.Node == "", p.nodeState(d.Node) == NodeDead:
			// The replacement serves (or the old one is no use): stop it.
			p.stop(d)
		}
	}
}

// formationDyno handles an existing current dyno: place it, move it off a
// dead node, restart it after a crash (with backoff), or cycle it.
func (p *planner) formationDyno(d *fsm.Dyno) {
	switch {
	case d.Node == "":
		p.toPlace = append(p.toPlace, d)
	case p.nodeState(d.Node) == NodeDead:
		p.toPlace = append(p.toPlace, d)
	case p.nodeState(d.Node) == NodeUnknown:
		// Wait until the node shows up or is declared dead.
	case d.State == fsm.DynoCrashed:
		due := d.StateAt.Add(p.in.Config.backoff(d.Crashes))
		if !p.in.Now.Before(due) {
			p.restart(d)
		} else {
			p.wakeAt(due)
		}
	case d.State == fsm.DynoUp && d.CycleAt != nil:
		if !p.in.Now.Before(*d.CycleAt) {
			p.restart(d)
		} else {
			p.wakeAt(*d.CycleAt)
		}
	}
}

// oneOff handles a one-off dyno: place it; it is never restarted; its record
// goes when it ends or its node dies; time_to_live stops it.
func (p *planner) oneOff(d *fsm.Dyno) {
	switch {
	case d.State == fsm.DynoDown || d.State == fsm.DynoCrashed:
		p.plan.Remove = append(p.plan.Remove, d.ID)
	case d.Node != "" && p.nodeState(d.Node) == NodeDead:
		p.plan.Remove = append(p.plan.Remove, d.ID)
	case d.ExpiresAt != nil && !p.in.Now.Before(*d.ExpiresAt):
		p.plan.Stop = append(p.plan.Stop, d.ID)
	case d.Node == "":
		p.toPlace = append(p.toPlace, d)
	}
	if d.ExpiresAt != nil && p.in.Now.Before(*d.ExpiresAt) {
		p.wakeAt(*d.ExpiresAt)
	}
}

// placeAll finds nodes for every dyno that needs one: spread each app's
// process type over zones, then nodes, then by free memory.
func (p *planner) placeAll() {
	p.spreadZone, p.spreadNode = map[string]map[string]int{}, map[string]map[string]int{}
	key := func(d *fsm.Dyno) string { return d.AppID + "/" + d.Type }
	for _, d := range p.in.Snap.AllDynos() {
		if d.Node == "" || d.Stop || p.nodeState(d.Node) == NodeDead {
			continue
		}
		k := key(d)
		if p.spreadZone[k] == nil {
			p.spreadZone[k], p.spreadNode[k] = map[string]int{}, map[string]int{}
		}
		p.spreadZone[k][d.Zone]++
		p.spreadNode[k][d.Node]++
	}
	names := make([]string, 0, len(p.nodes))
	for n := range p.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, d := range p.toPlace {
		need := sizeMB(d.Size)
		k := key(d)
		if p.spreadZone[k] == nil {
			p.spreadZone[k], p.spreadNode[k] = map[string]int{}, map[string]int{}
		}
		var best *Node
		bestPort := 0
		largest := 0
		eligible := 0
		for _, name := range names {
			n := p.nodes[name]
			if n.State != NodeAlive || n.Draining || n.MemoryMB <= 0 {
				continue
			}
			eligible++
			free := n.MemoryMB - p.mem[name]
			largest = max(largest, free)
			if free < need {
				continue
			}
			port := p.freePort(n)
			if port == 0 {
				continue
			}
			if best == nil || p.better(k, n, best) {
				best, bestPort = n, port
			}
		}
		if best == nil {
			reason := fmt.Sprintf("no node has %d MB free for a %s dyno (the most free on any node is %d MB)", need, d.Size, max(largest, 0))
			if eligible == 0 {
				reason = "no node can take dynos (none alive and not draining)"
			}
			if d.PendingReason != reason {
				p.plan.Pending = append(p.plan.Pending, fsm.Pending{ID: d.ID, Reason: reason})
			}
			continue
		}
		p.used[best.Name][bestPort] = true
		p.mem[best.Name] += need
		p.spreadZone[k][best.Zone]++
		p.spreadNode[k][best.Name]++
		var cyc *time.Time
		if !d.OneOff {
			cyc = p.cycleAt()
		}
		p.plan.Place = append(p.plan.Place, fsm.Placement{ID: d.ID, Node: best.Name, Zone: best.Zone, Addr: best.Addr,
			Port: bestPort, Instance: p.in.NewID(), CycleAt: cyc})
	}
}

// better: fewer of this process type in the zone, then on the node, then
// more free memory, then name.
func (p *planner) better(k string, a, b *Node) bool {
	za, zb := p.spreadZone[k][a.Zone], p.spreadZone[k][b.Zone]
	if za != zb {
		return za < zb
	}
	na, nb := p.spreadNode[k][a.Name], p.spreadNode[k][b.Name]
	if na != nb {
		return na < nb
	}
	fa, fb := a.MemoryMB-p.mem[a.Name], b.MemoryMB-p.mem[b.Name]
	if fa != fb {
		return fa > fb
	}
	return a.Name < b.Name
}

func (p *planner) freePort(n *Node) int {
	for port := n.PortFirst; port > 0 && port <= n.PortLast; port++ {
		if !p.used[n.Name][port] {
			return port
		}
	}
	return 0
}
