package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
)

type world struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
	now   time.Time
	nodes []Node
	cfg   Config
	app   *fsm.App
}

func newWorld(t *testing.T, zones ...string) *world {
	f, err := fsm.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, f: f, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), cfg: Config{Backoff: []time.Duration{0, 20 * time.Second, 40 * time.Second}}}
	for i, z := range zones {
		w.nodes = append(w.nodes, Node{Name: fmt.Sprintf("n%d", i+1), Zone: z, Addr: fmt.Sprintf("10.0.0.%d", i+1),
			State: NodeAlive, MemoryMB: 2048, PortFirst: 30000, PortLast: 30009})
	}
	w.app = &fsm.App{}
	w.apply(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: uuid.NewString(), Name: "demo", Region: "r"}, ReleaseID: uuid.NewString()}, w.app)
	return w
}

func (w *world) apply(typ string, data any, into any) {
	w.t.Helper()
	w.now = w.now.Add(time.Millisecond)
	cmd, err := fsm.NewCommand(typ, uuid.NewString(), w.now, "", data)
	if err != nil {
		w.t.Fatal(err)
	}
	b, _ := cmd.Encode()
	w.index++
	res := w.f.ApplyCommand(w.index, b)
	if err := res.Decode(into); err != nil {
		w.t.Fatalf("%s: %v", typ, err)
	}
}

func (w *world) deploy(types map[string]string) *fsm.Release {
	slug := fsm.Slug{ID: uuid.NewString(), AppID: w.app.ID, ProcessTypes: types}
	w.apply(fsm.CmdSlugCreate, fsm.SlugCreate{Slug: slug}, nil)
	w.apply(fsm.CmdSlugUploaded, fsm.SlugUploaded{SlugID: slug.ID, Digest: "sha256:" + strings.Repeat("a", 64), Size: 1}, nil)
	var rel fsm.Release
	w.apply(fsm.CmdReleaseCreate, fsm.ReleaseCreate{AppID: w.app.ID, ReleaseID: uuid.NewString(), SlugID: slug.ID}, &rel)
	return &rel
}

func (w *world) scale(typ string, q int, size ...string) {
	ch := fsm.FormationChange{Type: typ, Quantity: &q}
	if len(size) > 0 {
		ch.Size = &size[0]
	}
	w.apply(fsm.CmdFormationUpdate, fsm.FormationUpdate{AppID: w.app.ID, Updates: []fsm.FormationChange{ch}}, nil)
}

// step plans once and applies the plan.
func (w *world) step() fsm.DynoPlan {
	w.t.Helper()
	plan, _ := Plan(Input{Snap: w.f.Snap(), Nodes: w.nodes, Now: w.now, Config: w.cfg, NewID: uuid.NewString,
		Jitter: func(time.Duration) time.Duration { return 0 }})
	if !plan.Empty() {
		w.apply(fsm.CmdDynoPlan, plan, nil)
	}
	return plan
}

// settle plans until nothing changes, reporting dynos up as supervisors
// would (up sets every placed starting dyno up; down reports stopping ones).
func (w *world) settle(up bool) {
	w.t.Helper()
	for i := 0; i < 20; i++ {
		plan := w.step()
		changed := !plan.Empty()
		for _, d := range w.f.Snap().AllDynos() {
			if d.Node == "" {
				continue
			}
			switch {
			case d.Stop && d.State != fsm.DynoDown:
				w.report(d, fsm.DynoDown)
				changed = true
			case !d.Stop && up && d.State == fsm.DynoStarting:
				w.report(d, fsm.DynoUp)
				changed = true
			}
		}
		if !changed {
			return
		}
	}
	w.t.Fatalf("did not settle")
}

func (w *world) report(d *fsm.Dyno, state string) {
	w.apply(fsm.CmdDynoReport, fsm.DynoReport{ID: d.ID, Instance: d.Instance, Node: d.Node, State: state}, nil)
}

func (w *world) dynos() []*fsm.Dyno { return w.f.Snap().Dynos(w.app.ID) }

func (w *world) running(typ string) []*fsm.Dyno {
	var out []*fsm.Dyno
	for _, d := range w.dynos() {
		if d.Type == typ && !d.Stop {
			out = append(out, d)
		}
	}
	return out
}

func zones(ds []*fsm.Dyno) string {
	var z []string
	for _, d := range ds {
		z = append(z, d.Zone)
	}
	sort.Strings(z)
	return strings.Join(z, "")
}

func TestDeployStartsWebAndSpreadsOverZones(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.deploy(map[string]string{"web": "./web", "worker": "./w"})
	w.settle(true)
	web := w.running("web")
	if len(web) != 1 || web[0].Name != "web.1" || web[0].State != fsm.DynoUp || web[0].Port != 30000 {
		t.Fatalf("web = %+v", web)
	}
	if len(w.running("worker")) != 0 {
		t.Fatalf("worker started at quantity 0")
	}
	w.scale("web", 3)
	w.settle(true)
	if z := zones(w.running("web")); z != "abc" {
		t.Fatalf("3 web dynos in zones %q, want abc", z)
	}
	w.scale("web", 6)
	w.settle(true)
	if z := zones(w.running("web")); z != "aabbcc" {
		t.Fatalf("6 web dynos in zones %q", z)
	}
	// Ports on one node are distinct.
	ports := map[string]bool{}
	for _, d := range w.running("web") {
		k := fmt.Sprintf("%s:%d", d.Node, d.Port)
		if ports[k] {
			t.Fatalf("port reused: %s", k)
		}
		ports[k] = true
	}
	w.scale("web", 1)
	w.settle(true)
	if n := len(w.dynos()); n != 1 {
		t.Fatalf("after scaling down: %d dyno records", n)
	}
}

func TestRollingReleaseNeverDropsToZero(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.deploy(map[string]string{"web": "./web"})
	w.scale("web", 2)
	w.settle(true)
	rel := w.deploy(map[string]string{"web": "./web2"})
	// Step by step, without reporting anything up: the old dynos must keep
	// running while the new ones start.
	for i := 0; i < 5; i++ {
		w.step()
		up := 0
		for _, d := range w.running("web") {
			if d.State == fsm.DynoUp {
				up++
			}
		}
		if up < 2 {
			t.Fatalf("step %d: only %d web dynos up", i, up)
		}
	}
	// Bring one new dyno up: exactly its old twin stops.
	var newOnes []*fsm.Dyno
	for _, d := range w.running("web") {
		if d.ReleaseID == rel.ID {
			newOnes = append(newOnes, d)
		}
	}
	if len(newOnes) != 2 {
		t.Fatalf("new dynos = %d", len(newOnes))
	}
	w.report(newOnes[0], fsm.DynoUp)
	plan := w.step()
	if len(plan.Stop) != 1 {
		t.Fatalf("stopped %d old dynos after one replacement came up", len(plan.Stop))
	}
	w.settle(true)
	for _, d := range w.dynos() {
		if d.ReleaseID != rel.ID || d.Command != "./web2" {
			t.Fatalf("left over dyno %+v", d)
		}
	}
}

func TestCrashBackoff(t *testing.T) {
	w := newWorld(t, "a")
	w.deploy(map[string]string{"web": "./web"})
	w.settle(true)
	crash := func() {
		d := w.running("web")[0]
		w.report(d, fsm.DynoCrashed)
	}
	crash()
	if p := w.step(); len(p.Restart) != 1 {
		t.Fatalf("first crash not restarted at once: %+v", p)
	}
	w.settle(false)
	crash()
	plan, wake := Plan(Input{Snap: w.f.Snap(), Nodes: w.nodes, Now: w.now, Config: w.cfg, NewID: uuid.NewString})
	if len(plan.Restart) != 0 {
		t.Fatalf("second crash restarted without backoff")
	}
	if d := wake.Sub(w.now); d < 19*time.Second || d > 21*time.Second {
		t.Fatalf("wake in %v, want ~20s", d)
	}
	w.now = w.now.Add(20 * time.Second)
	if p := w.step(); len(p.Restart) != 1 {
		t.Fatalf("not restarted after the backoff")
	}
}

func TestDeadNodeDynosMove(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.deploy(map[string]string{"web": "./web"})
	w.scale("web", 3)
	w.settle(true)
	var victim string
	for _, d := range w.running("web") {
		if d.Zone == "b" {
			victim = d.Node
		}
	}
	for i := range w.nodes {
		if w.nodes[i].Name == victim {
			w.nodes[i].State = NodeDead
		}
	}
	w.settle(true)
	web := w.running("web")
	if len(web) != 3 {
		t.Fatalf("web = %d", len(web))
	}
	for _, d := range web {
		if d.Node == victim {
			t.Fatalf("dyno left on the dead node")
		}
	}
	// An unknown node's dynos are left alone (the cluster is starting up).
	for i := range w.nodes {
		if w.nodes[i].Name == web[0].Node {
			w.nodes[i].State = NodeUnknown
		}
	}
	if p := w.step(); !p.Empty() {
		t.Fatalf("moved dynos of a node not seen yet: %+v", p)
	}
}

func TestDrainingAndCapacity(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.nodes[0].Draining = true
	w.nodes[1].MemoryMB = 1024
	w.deploy(map[string]string{"web": "./web"})
	w.scale("web", 3)
	w.settle(true)
	placed, pending := 0, 0
	for _, d := range w.running("web") {
		if d.Node == "n1" {
			t.Fatalf("dyno placed on a draining node")
		}
		if d.Node != "" {
			placed++
		} else if strings.Contains(d.PendingReason, "512 MB") {
			pending++
		}
	}
	if placed != 2 || pending != 1 {
		t.Fatalf("placed %d, pending with reason %d", placed, pending)
	}
	// The pending reason is not re-proposed forever.
	if p := w.step(); !p.Empty() {
		t.Fatalf("plan does not settle: %+v", p)
	}
	// A resize that fits nowhere: the new dyno waits with a reason, and
	// the old one keeps serving meanwhile.
	w.scale("web", 1, "performance-l")
	w.settle(true)
	var big, old int
	for _, d := range w.running("web") {
		switch {
		case d.Size == "Performance-L" && d.Node == "" && strings.Contains(d.PendingReason, "14336 MB"):
			big++
		case d.Size == "Basic" && d.State == fsm.DynoUp:
			old++
		}
	}
	if big != 1 || old != 1 {
		t.Fatalf("pending resized %d, old still up %d: %+v", big, old, w.running("web"))
	}
}

func TestOneOffsArePlacedOnceAndRemovedWhenDone(t *testing.T) {
	w := newWorld(t, "a")
	w.deploy(map[string]string{"web": "./web"})
	w.settle(true)
	ttl := w.now.Add(time.Minute)
	w.apply(fsm.CmdDynoRun, fsm.DynoRun{Dyno: fsm.Dyno{ID: uuid.NewString(), AppID: w.app.ID, Name: "run.1", Command: "echo", Size: "Basic", ExpiresAt: &ttl}}, nil)
	w.step()
	var run *fsm.Dyno
	for _, d := range w.dynos() {
		if d.OneOff {
			run = d
		}
	}
	if run == nil || run.Node == "" {
		t.Fatalf("one-off not placed")
	}
	w.report(run, fsm.DynoCrashed)
	if p := w.step(); len(p.Remove) != 1 || len(p.Restart) != 0 {
		t.Fatalf("a finished one-off must be removed, never restarted: %+v", p)
	}
	// time_to_live stops a one-off.
	w.apply(fsm.CmdDynoRun, fsm.DynoRun{Dyno: fsm.Dyno{ID: uuid.NewString(), AppID: w.app.ID, Name: "run.2", Command: "sleep 1000", Size: "Basic", ExpiresAt: &ttl}}, nil)
	w.step()
	w.now = ttl.Add(time.Second)
	if p := w.step(); len(p.Stop) != 1 {
		t.Fatalf("expired one-off not stopped: %+v", p)
	}
}

func TestCycling(t *testing.T) {
	w := newWorld(t, "a")
	w.cfg.Cycle = time.Hour
	w.deploy(map[string]string{"web": "./web"})
	w.settle(true)
	d := w.running("web")[0]
	if d.CycleAt == nil {
		t.Fatalf("no cycle time")
	}
	w.now = d.CycleAt.Add(time.Second)
	p := w.step()
	if len(p.Restart) != 1 || p.Restart[0].CycleAt == nil || !p.Restart[0].CycleAt.After(w.now) {
		t.Fatalf("cycle restart = %+v", p)
	}
}

func TestPlanIsStableWhenNothingChanges(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.deploy(map[string]string{"web": "./web", "worker": "./w"})
	w.scale("web", 4)
	w.scale("worker", 2)
	w.settle(true)
	for i := 0; i < 3; i++ {
		if p := w.step(); !p.Empty() {
			t.Fatalf("settled state produced a plan: %+v", p)
		}
	}
}
