package drills

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/api"
	"github.com/slipwayhq/slipway/client"
	"github.com/slipwayhq/slipway/testbed"
)

// Options configure a drill run.
type Options struct {
	// Long runs the longer variant (`make drills`): two nodes per zone,
	// longer phases, more writers.
	Long bool
	// Logf receives progress (default: none).
	Logf func(format string, args ...any)
	// VizDir receives porcupine's visualization of a history that is not
	// linearizable (default: the system's temporary directory).
	VizDir string
	// Slug is the web app the drill deploys (BuildWebSlug); default: Run
	// builds it.
	Slug *Slug
}

// phases are a variant's durations and sizes.
type phases struct {
	NodesPerZone int
	Workers      int
	Warmup       time.Duration // writer and prober alone before the fault
	Observe      time.Duration // the fault lasts this long
	Off          time.Duration // the power cycle's time with every node off
	Settle       time.Duration // quiet time that counts as "serving again"
	GiveUp       time.Duration // how long to wait for serving again
	Slow         time.Duration // a request slower than this counts against RTO
	// RouterBound: after a node or zone is lost, probes through the
	// routers may fail for this long (gossip declaring it dead, and the
	// routers' connect timeout); none may fail later.
	RouterBound time.Duration
}

func (o Options) phases() phases {
	if o.Long {
		return phases{NodesPerZone: 2, Workers: 4, Warmup: 15 * time.Second, Observe: 45 * time.Second,
			Off: 15 * time.Second, Settle: 10 * time.Second, GiveUp: 3 * time.Minute, Slow: time.Second, RouterBound: routerBound}
	}
	return phases{NodesPerZone: 1, Workers: 2, Warmup: 3 * time.Second, Observe: 8 * time.Second,
		Off: 3 * time.Second, Settle: 3 * time.Second, GiveUp: 90 * time.Second, Slow: time.Second, RouterBound: routerBound}
}

// routerBound is how long probes through the routers may fail after a node
// or zone is lost: memberlist's default LAN timings declare a dead node
// dead within ~5-12 s in a small cluster, and a request the router sends
// to a silent node waits out its 5 s connect timeout (then it quarantines
// the node and retries elsewhere).
const routerBound = 20 * time.Second

// Spec is the testbed a drill runs on: region "local" with zones a, b, c
// and one node per zone (two in the long variant).
func Spec(opts Options) testbed.Spec { return testbed.DefaultSpec(opts.phases().NodesPerZone) }

// Drill is one failure drill.
type Drill struct {
	Name    string
	Summary string
	// ZeroFailures: no request may fail during this drill.
	ZeroFailures bool
	// RouterBound: no probe through the routers may fail once the
	// routers' bound (phases.RouterBound) has passed since the fault.
	RouterBound bool
	// prepare runs after the web app is deployed, before the writer and
	// the prober start.
	prepare func(ctx context.Context, e *env) error
	run     func(ctx context.Context, e *env) error
}

// All lists the drills in the order they are run.
func All() []Drill {
	return []Drill{NodeLoss(), ZoneLoss(), PartitionDrill(), PowerCycle(), RollingRestart()}
}

// ByName finds a drill.
func ByName(name string) (Drill, error) {
	var names []string
	for _, d := range All() {
		if d.Name == name {
			return d, nil
		}
		names = append(names, d.Name)
	}
	return Drill{}, fmt.Errorf("no drill %q (drills: %s)", name, strings.Join(names, ", "))
}

// keysOf lists the config vars the writer writes.
func keysOf() []string { return []string{"DRILL_A", "DRILL_B", "DRILL_C", "DRILL_D"} }

const appName = "drill"

// env is one drill run.
type env struct {
	tb     *testbed.Testbed
	ph     phases
	opts   Options
	logf   func(string, ...any)
	start  time.Time
	w      *Writer
	p      *Prober
	report *Report
	web    *webApp

	mu          sync.Mutex
	out         map[string]bool // out of rotation: no probes, no writes
	noWrites    map[string]bool // the writer avoids these (a partition's minority)
	rtoFrom     time.Time
	rtoFromName string
}

// mark records a moment of the drill.
func (e *env) mark(format string, args ...any) time.Time {
	now := time.Now()
	what := fmt.Sprintf(format, args...)
	e.mu.Lock()
	e.report.Marks = append(e.report.Marks, Mark{At: now.Sub(e.start), What: what})
	e.mu.Unlock()
	e.logf("drill +%s: %s", secs(now.Sub(e.start)), what)
	return now
}

// faultAt sets the moment RTO is measured from.
func (e *env) faultAt(name string, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rtoFrom.IsZero() {
		e.rtoFrom, e.rtoFromName = t, name
	}
}

func (e *env) check(name string, ok bool, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.report.Checks = append(e.report.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

func (e *env) note(format string, args ...any) {
	e.report.Notes = append(e.report.Notes, fmt.Sprintf(format, args...))
}

// inService lists the running nodes the drill has not taken out of
// rotation: where probes and writes go.
func (e *env) inService() []string {
	running := e.tb.Running()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, n := range running {
		if !e.out[n] {
			out = append(out, n)
		}
	}
	return out
}

func (e *env) writeNodes() []Endpoint {
	var out []Endpoint
	for _, n := range e.inService() {
		e.mu.Lock()
		skip := e.noWrites[n]
		e.mu.Unlock()
		if !skip {
			out = append(out, Endpoint{Name: n, URL: e.tb.APIURL(n)})
		}
	}
	return out
}

func (e *env) setNoWrites(names []string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		if on {
			e.noWrites[n] = true
		} else {
			delete(e.noWrites, n)
		}
	}
}

// takeOut takes a node out of rotation, as a load balancer would before
// maintenance, and waits for its requests under way to finish.
func (e *env) takeOut(ctx context.Context, name string) error {
	e.mu.Lock()
	e.out[name] = true
	e.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for e.w.Inflight(name)+e.p.Inflight(name) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("requests to %s still under way 30s after taking it out of rotation", name)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// setOut takes nodes out of rotation, or puts them back, without waiting.
func (e *env) setOut(names []string, out bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		if out {
			e.out[n] = true
		} else {
			delete(e.out, n)
		}
	}
}

func (e *env) putBack(name string) {
	e.mu.Lock()
	delete(e.out, name)
	e.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// leader finds the region's leader among the running nodes (the node whose
// own Raft state is Leader) and its zone.
func (e *env) leader(ctx context.Context) (name, zone string, err error) {
	deadline := time.Now().Add(e.ph.GiveUp)
	for {
		for _, n := range e.tb.Running() {
			r, err := e.tb.Client(n, 3*time.Second).Raft(ctx)
			if err == nil && r.State == "Leader" {
				nd, _ := e.tb.Node(n)
				return n, nd.Zone, nil
			}
		}
		if time.Now().After(deadline) {
			return "", "", errors.New("no running node is the leader")
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return "", "", err
		}
	}
}

// waitHealthy waits until a node follows a leader, answers a
// linearizable read (so it has caught up) and its router serves the web
// app, as a load balancer's health check before putting it back.
func (e *env) waitHealthy(ctx context.Context, name string) error {
	deadline := time.Now().Add(e.ph.GiveUp)
	c := e.tb.Client(name, 10*time.Second)
	var last error
	for time.Now().Before(deadline) {
		h, err := e.tb.Health(ctx, name)
		if err == nil && h.Leader != "" {
			_, err = c.Do(ctx, http.MethodGet, client.Path("apps", appName), nil, nil,
				http.Header{"X-Slipway-Consistency": {"linearizable"}})
			if err == nil && e.web != nil {
				// And its router serves the web app.
				return e.waitRouter(ctx, name)
			}
			if err == nil {
				return nil
			}
		} else if err == nil {
			err = errors.New("no leader yet")
		}
		last = err
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not healthy after %s: %v", name, e.ph.GiveUp, last)
}

// ackedBetween counts acknowledged writes that started in [from, to).
func (e *env) ackedBetween(from, to time.Time) int {
	n := 0
	for _, op := range e.w.Ops() {
		if op.Kind == Write && op.Outcome == OK && !op.Start.Before(from) && op.Start.Before(to) {
			n++
		}
	}
	return n
}

// waitServing waits until, for the settle time, no request has failed or
// been slow, no request has been under way for longer than the slow
// threshold, writes have been acknowledged, and every in-service node has
// answered a probe.
func (e *env) waitServing(ctx context.Context) bool {
	deadline := time.Now().Add(e.ph.GiveUp)
	for time.Now().Before(deadline) {
		if e.serving() {
			return true
		}
		if sleepCtx(ctx, 200*time.Millisecond) != nil {
			return false
		}
	}
	return false
}

func (e *env) serving() bool {
	now := time.Now()
	ops, probes := e.w.Ops(), e.p.Probes()
	quiet := e.rtoFrom
	if last, ok := lastBad(e.rtoFrom, ops, probes, e.ph.Slow); ok {
		quiet = last
	}
	// A request sent since the fault and stuck for longer than the slow
	// threshold: not yet.
	for _, f := range []func(time.Time) (time.Time, bool){e.w.OldestInflight, e.p.OldestInflight} {
		if t, ok := f(e.rtoFrom); ok && now.Sub(t) > e.ph.Slow {
			return false
		}
	}
	if now.Sub(quiet) < e.ph.Settle {
		return false
	}
	acked := false
	for _, op := range ops {
		if op.Kind == Write && op.Outcome == OK && op.Start.After(quiet) {
			acked = true
			break
		}
	}
	answered := map[string]bool{}
	for _, p := range probes {
		if p.OK && p.Start.After(quiet) {
			answered[p.Node] = true
		}
	}
	for _, n := range e.inService() {
		if !answered[n] {
			return false
		}
	}
	return acked
}

// NewTestbed creates and starts the testbed for a drill and waits for the
// cluster to form. The caller closes it.
func NewTestbed(ctx context.Context, binary string, opts Options) (*testbed.Testbed, error) {
	tb, err := testbed.New(ctx, testbed.Options{Spec: Spec(opts), Binary: binary, Logf: opts.Logf})
	if err != nil {
		return nil, err
	}
	if err := tb.Start(); err != nil {
		tb.Close()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := tb.WaitReady(wctx); err != nil {
		err = fmt.Errorf("%w\n%s", err, tb.Logs(30))
		tb.Close()
		return nil, err
	}
	return tb, nil
}

// Run runs a drill on a ready testbed (NewTestbed) and returns its report.
// An error means the drill could not be carried out; a drill that ran but
// found problems returns a report whose Problems are not empty.
//
// Before the fault it deploys the web app (opts.Slug) through the Slug API
// with one web dyno per node (at least 3, so one per zone or more) and
// waits until every dyno is up and every router serves it; the prober then
// requests it through every in-service node's router.
func Run(ctx context.Context, d Drill, tb *testbed.Testbed, opts Options) (*Report, error) {
	began := time.Now()
	ph := opts.phases()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var zones []string
	for _, z := range tb.Plan().Zones {
		zones = append(zones, z.Name)
	}
	variant := "fast variant"
	if opts.Long {
		variant = "long variant"
	}
	e := &env{tb: tb, ph: ph, opts: opts, logf: logf, out: map[string]bool{}, noWrites: map[string]bool{},
		report: &Report{Drill: d.Name, Summary: d.Summary, Slow: ph.Slow, RouterBound: ph.RouterBound,
			Cluster: fmt.Sprintf("%d nodes (%s) in region %s, zones %s, each a `slipway agent` in its own network namespace, installed by install/install.sh; %s",
				len(tb.Names()), strings.Join(tb.Names(), " "), tb.Plan().Regions()[0], strings.Join(zones, " "), variant)}}

	// The app the writer changes.
	running := tb.Running()
	if len(running) == 0 {
		return nil, errors.New("no node of the testbed is running")
	}
	if err := e.api(ctx, "creating the drill's app", func(c *client.Client) error {
		_, err := c.CreateApp(ctx, api.AppCreateRequest{Name: ptr(appName)})
		if client.StatusCode(err) == http.StatusUnprocessableEntity || client.StatusCode(err) == http.StatusConflict {
			return nil // exists already (a retried create)
		}
		return err
	}); err != nil {
		return nil, err
	}

	// The app the prober reaches through the routers.
	slug := opts.Slug
	if slug == nil {
		dir, err := os.MkdirTemp("", "slipway-drill-slug-")
		if err != nil {
			return nil, err
		}
		slug, err = BuildWebSlug(ctx, dir)
		os.RemoveAll(dir)
		if err != nil {
			return nil, err
		}
	}
	quantity := max(3, len(tb.Names()))
	if err := e.deployWeb(ctx, slug, quantity, "drill-"+d.Name); err != nil {
		return nil, fmt.Errorf("deploying the web app: %w\n%s", err, e.dynoDiagnosis(ctx))
	}
	if d.prepare != nil {
		if err := d.prepare(ctx, e); err != nil {
			return nil, fmt.Errorf("drill %s: %w", d.Name, err)
		}
	}
	ds, _, err := e.waitFormation(ctx, nil, tb.Running())
	if err != nil {
		return nil, err
	}
	e.report.Setup = time.Since(began)
	e.report.App = fmt.Sprintf("%s: %d × web on v%d (%s), deployed through the Slug API; every probe must answer %q",
		e.web.name, e.web.quantity, e.web.release, placement(ds), strings.TrimSpace(e.web.want()))

	e.w = &Writer{App: appName, Keys: keysOf(), Token: tb.Token(), Workers: ph.Workers, Nodes: e.writeNodes}
	e.p = &Prober{Targets: RouterTargets(tb, e.inService, e.web.name, e.web.want())}
	e.report.ProbeTarget = fmt.Sprintf("%s through each in-service node's router (port %d, Host %s)", e.web.name, testbed.RouterPort, e.web.host)
	e.start = time.Now()
	e.w.Start(ctx)
	e.p.Start(ctx)
	defer e.w.Stop()
	defer e.p.Stop()
	e.mark("writer (%d workers) and prober start; dynos %s", ph.Workers, placement(ds))
	if err := sleepCtx(ctx, ph.Warmup); err != nil {
		return nil, err
	}

	if err := d.run(ctx, e); err != nil {
		return e.report, fmt.Errorf("drill %s: %w\n%s", d.Name, err, e.dynoDiagnosis(ctx))
	}
	if e.rtoFrom.IsZero() {
		e.faultAt("the start", e.start)
	}

	e.report.Recovered = e.waitServing(ctx)
	if e.report.Recovered {
		e.mark("serving again for %s: writer and prober stop", ph.Settle)
	} else {
		e.mark("gave up waiting for the cluster to serve again")
	}
	e.w.Stop()
	e.p.Stop()

	// A last linearizable read through every running node: an
	// acknowledged write lost at the end would show here.
	for i, n := range tb.Running() {
		e.w.Read(ctx, ph.Workers+i, Endpoint{Name: n, URL: tb.APIURL(n)}, true, false)
	}

	e.converge(ctx)
	e.settleDynos(ctx)
	e.lostWrites(ctx)
	viz := opts.VizDir
	if viz == "" {
		viz = os.TempDir()
	}
	ops, probes := e.w.Ops(), e.p.Probes()
	e.report.Linearizability = CheckLinearizable(ops, keysOf(), e.start, 2*time.Minute, viz)
	e.report.RTOFrom = e.rtoFromName
	e.report.tally(e.rtoFrom, ops, probes)
	e.report.RTO = RTO(e.rtoFrom, ops, probes, ph.Slow)
	e.report.RouterRTO = RTO(e.rtoFrom, nil, probes, ph.Slow)
	e.report.Answered = answeredCounts(probes)
	if d.RouterBound {
		e.routersWithinBound()
	}
	e.report.Duration = time.Since(began)
	return e.report, nil
}

// answeredCounts is "web.1 120, web.2 118, ..." of successful probes.
func answeredCounts(probes []Probe) string {
	n := map[string]int{}
	for _, p := range probes {
		if p.OK {
			n[p.Dyno]++
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		out = append(out, fmt.Sprintf("%s %d", k, n[k]))
	}
	return strings.Join(out, ", ")
}

// dynoDiagnosis describes the web app's dynos and processes, for an error.
func (e *env) dynoDiagnosis(ctx context.Context) string {
	if e.web == nil {
		return ""
	}
	var b strings.Builder
	for _, n := range e.tb.Running() {
		ds, err := e.dynosVia(ctx, n, false)
		if err != nil {
			fmt.Fprintf(&b, "dynos according to %s: %v\n", n, err)
			continue
		}
		var parts []string
		for _, d := range ds {
			parts = append(parts, fmt.Sprintf("%s@%s %s v%d%s", d.Name, d.Node, d.State, d.Release.Version, ifNotEmpty(" (", d.PendingReason+d.Reason, ")")))
		}
		fmt.Fprintf(&b, "dynos according to %s: %s\n", n, strings.Join(parts, "; "))
	}
	if procs, err := e.census(ctx); err == nil {
		fmt.Fprintf(&b, "running: %s\n", runningText(procs))
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }

func retry(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
}

// replicaState is what a node's own replica says about the app.
type replicaState struct {
	latest int
	config map[string]string
}

func (s replicaState) String() string {
	keys := make([]string, 0, len(s.config))
	for k := range s.config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		kv = append(kv, k+"="+s.config[k])
	}
	return fmt.Sprintf("v%d {%s}", s.latest, strings.Join(kv, " "))
}

func (e *env) replica(ctx context.Context, name string) (replicaState, error) {
	c := e.tb.Client(name, 5*time.Second)
	rels, err := c.Releases(ctx, appName, client.ListOptions{Max: 1, Order: "desc"})
	if err != nil {
		return replicaState{}, err
	}
	st := replicaState{}
	if len(rels) > 0 {
		st.latest = rels[0].Version
	}
	st.config, err = c.ConfigVars(ctx, appName)
	return st, err
}

// converge waits until every node's own replica (default, local reads)
// has the same latest release and config vars.
func (e *env) converge(ctx context.Context) {
	began := time.Now()
	deadline := began.Add(time.Minute)
	for {
		states := map[string]replicaState{}
		var problem string
		for _, n := range e.tb.Names() {
			st, err := e.replica(ctx, n)
			if err != nil {
				problem = fmt.Sprintf("%s: %v", n, err)
				break
			}
			states[n] = st
		}
		if problem == "" {
			var ref string
			same := true
			for _, n := range e.tb.Names() {
				s := states[n].String()
				if ref == "" {
					ref = s
				} else if s != ref {
					same = false
				}
			}
			if same {
				e.report.Converged, e.report.ConvergeTook = true, time.Since(began)
				e.report.ConvergeDetail = fmt.Sprintf("all %d nodes' replicas at release %s", len(states), ref)
				return
			}
			var parts []string
			for _, n := range e.tb.Names() {
				parts = append(parts, n+" "+states[n].String())
			}
			problem = strings.Join(parts, "; ")
		}
		if time.Now().After(deadline) {
			e.report.ConvergeDetail = "after 1m: " + problem
			return
		}
		_ = sleepCtx(ctx, 250*time.Millisecond)
	}
}

// lostWrites looks every acknowledged write up in the release history:
// each config change makes a release holding the whole config, so an
// acknowledged write's value must be in some release's config vars.
func (e *env) lostWrites(ctx context.Context) {
	running := e.tb.Running()
	if len(running) == 0 {
		e.check("release history", false, "no node is running")
		return
	}
	name := running[0]
	c := e.tb.Client(name, 10*time.Second)
	rels, err := c.Releases(ctx, appName, client.ListOptions{All: true})
	if err != nil {
		e.check("release history", false, "listing releases through %s: %v", name, err)
		return
	}
	e.report.Releases = len(rels)
	seen := map[string]bool{}
	for _, r := range rels {
		var cfg map[string]string
		err := retry(ctx, 10*time.Second, func() error {
			var err error
			cfg, err = c.ReleaseConfigVars(ctx, appName, fmt.Sprint(r.Version))
			return err
		})
		if err != nil {
			e.check("release history", false, "reading v%d's config vars: %v", r.Version, err)
			return
		}
		for k, v := range cfg {
			seen[k+"="+v] = true
		}
	}
	for _, op := range e.w.Ops() {
		if op.Kind != Write || op.Outcome != OK {
			continue
		}
		e.report.AckedWritesChecked++
		if !seen[op.Key+"="+op.Value] {
			e.report.LostWrites++
			if len(e.report.LostExamples) < 5 {
				e.report.LostExamples = append(e.report.LostExamples,
					fmt.Sprintf("%s=%s (via %s, acknowledged at +%s)", op.Key, op.Value, op.Node, secs(op.End.Sub(e.start))))
			}
		}
	}
}
