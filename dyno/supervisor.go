package dyno

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// Reporter submits a dyno's state change (the agent: fsm.CmdDynoReport
// through Raft). An *fsm.Error with code conflict or not_found in the
// returned error's chain is final (the report is about an old instance, or
// a dyno that is gone); any other error is retried.
type Reporter interface {
	Report(ctx context.Context, r fsm.DynoReport) error
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context, r fsm.DynoReport) error

// Report implements Reporter.
func (f ReporterFunc) Report(ctx context.Context, r fsm.DynoReport) error { return f(ctx, r) }

// Config is a supervisor's node, seams and timing.
type Config struct {
	// Node is this node's name: the supervisor runs the dynos placed on it.
	Node string
	// Dir holds the supervisor's files: slug cache, dyno instances, records.
	Dir string
	// Runtime starts the dynos (Process or Runc).
	Runtime Runtime
	// Snap returns the local replica's current state.
	Snap func() *fsm.Snap
	// Reporter submits state changes.
	Reporter Reporter
	// Slugs fetches slug archives (the blob store).
	Slugs Slugs
	// Sink receives the dynos' output and platform events.
	Sink   logplex.Sink
	Logger *slog.Logger

	// BootTimeout: a web dyno not listening on $PORT by then is killed (R10).
	BootTimeout time.Duration
	// StopTimeout: a dyno still running this long after SIGTERM is killed
	// (R12); an attached one-off still running this long after its client
	// left is killed too (R16).
	StopTimeout time.Duration
	// AttachTimeout: an attached one-off whose client does not attach by
	// then is not run (R13).
	AttachTimeout time.Duration
	// Resync is how often the supervisor converges without a change.
	Resync time.Duration
	// MemoryInterval is how often memory is sampled; R14Interval how often
	// R14 is repeated while a dyno stays over its quota.
	MemoryInterval time.Duration
	R14Interval    time.Duration
	// QuotaMB gives a size's memory quota (default: fsm.LookupDynoSize).
	QuotaMB func(size string) int
	// MaxSlugBytes bounds an unpacked slug (default 8 GiB).
	MaxSlugBytes int64
	// SlugCacheGrace: a cached slug no dyno here uses is removed after this.
	SlugCacheGrace time.Duration
	// StopOnExit stops every dyno when Run ends, instead of leaving them
	// running for the next agent to adopt (a development cluster).
	StopOnExit bool
	// Synced, if set, returns once the local replica has caught up with the
	// cluster (the agent: a linearizable read). A restarted agent's replica
	// may be empty or old: the supervisor neither adopts nor stops anything
	// before Synced succeeds (it is retried); the dynos keep running.
	Synced func(ctx context.Context) error
}

func (c *Config) setDefaults() error {
	if c.Node == "" || c.Dir == "" || c.Runtime == nil || c.Snap == nil || c.Reporter == nil || c.Slugs == nil {
		return errors.New("dyno supervisor: Node, Dir, Runtime, Snap, Reporter and Slugs are required")
	}
	if c.Sink == nil {
		c.Sink = logplex.SlogSink{Log: slog.New(slog.DiscardHandler)}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.BootTimeout, 60*time.Second)
	def(&c.StopTimeout, 30*time.Second)
	def(&c.AttachTimeout, 60*time.Second)
	def(&c.Resync, 5*time.Second)
	def(&c.MemoryInterval, 5*time.Second)
	def(&c.R14Interval, 20*time.Second)
	def(&c.SlugCacheGrace, time.Hour)
	if c.QuotaMB == nil {
		c.QuotaMB = func(size string) int {
			if s, ok := fsm.LookupDynoSize(size); ok {
				return s.MemoryMB
			}
			return 512
		}
	}
	if c.MaxSlugBytes <= 0 {
		c.MaxSlugBytes = 8 << 30
	}
	return nil
}

// Supervisor runs the dynos placed on one node.
type Supervisor struct {
	cfg Config
	log *slog.Logger
	// markerNode names this node in process markers: the node name plus a
	// hash of the supervisor's directory, so two clusters on one machine
	// (dev clusters name their nodes alike) never sweep each other's dynos.
	markerNode string
	slugs      *SlugCache
	recs       records
	runs       string // instance directories
	queue      *reportQueue

	mu       sync.Mutex
	ctx      context.Context
	runners  map[string]*runner   // by dyno id: the newest runner of each dyno
	finished map[string]finishRec // by dyno id: the last instance that ended here
	changed  chan struct{}        // closed and replaced when runners change
	wake     chan struct{}
	wg       sync.WaitGroup
	ready    chan struct{}
	pruned   time.Time
}

type finishRec struct{ instance, state string }

// NewSupervisor checks the configuration and prepares the directories.
func NewSupervisor(cfg Config) (*Supervisor, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	mn, err := markerNode(cfg.Node, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("dyno supervisor: %w", err)
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger.With("component", "dynos"), markerNode: mn,
		recs: records{dir: filepath.Join(cfg.Dir, "records")}, runs: filepath.Join(cfg.Dir, "run"),
		runners: map[string]*runner{}, finished: map[string]finishRec{},
		changed: make(chan struct{}), wake: make(chan struct{}, 1), ready: make(chan struct{}),
	}
	for _, d := range []string{s.recs.dir, s.runs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("dyno supervisor: %w", err)
		}
	}
	sc, err := NewSlugCache(filepath.Join(cfg.Dir, "slugs"), cfg.Slugs)
	if err != nil {
		return nil, err
	}
	s.slugs = sc
	s.queue = newReportQueue(cfg.Reporter, s.log)
	return s, nil
}

// markerNode is how a supervisor names its node in process markers.
func markerNode(node, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return node + "@" + hex.EncodeToString(sum[:6]), nil
}

// Run adopts the dynos an earlier agent left running, then converges until
// ctx ends. On return the dynos keep running (the next agent adopts them),
// unless Config.StopOnExit: then they are stopped first.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	var qwg sync.WaitGroup
	qwg.Add(1)
	go func() { defer qwg.Done(); s.queue.run(ctx) }()
	defer qwg.Wait()

	if !s.waitSynced(ctx) {
		return nil
	}
	s.adopt(ctx)
	close(s.ready)
	tick := time.NewTicker(s.cfg.Resync)
	defer tick.Stop()
	for {
		snap := s.cfg.Snap()
		wctx, cancel := context.WithCancel(ctx)
		ch := snap.Watch("dynos", "releases", "slugs", "apps", "config", "features").WatchCh(wctx)
		s.converge(snap)
		select {
		case <-ctx.Done():
		case <-ch:
		case <-tick.C:
		case <-s.wake:
		}
		cancel()
		if ctx.Err() != nil {
			break
		}
	}
	why := stopDetach
	if s.cfg.StopOnExit {
		why = stopGone
	}
	s.mu.Lock()
	for _, r := range s.runners {
		r.requestStop(why)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// waitSynced waits for Config.Synced; false if ctx ends first.
func (s *Supervisor) waitSynced(ctx context.Context) bool {
	if s.cfg.Synced == nil {
		return true
	}
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.cfg.Synced(sctx)
		cancel()
		if err == nil {
			return true
		}
		s.log.Info("waiting for the replicated state to catch up before supervising dynos", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// Ready is closed once Run has adopted what an earlier agent left running.
func (s *Supervisor) Ready() <-chan struct{} { return s.ready }

func (s *Supervisor) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes whoever waits for a runner to appear (Attach).
func (s *Supervisor) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// converge starts, replaces and stops runners to match the dynos placed on
// this node.
func (s *Supervisor) converge(snap *fsm.Snap) {
	assigned := map[string]*fsm.Dyno{}
	for _, d := range snap.NodeDynos(s.cfg.Node) {
		assigned[d.ID] = d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	for id, r := range s.runners {
		d, ok := assigned[id]
		switch {
		case !ok:
			r.requestStop(stopGone)
		case d.Stop:
			r.requestStop(stopAsked)
		case d.Instance != r.instance && d.Instance != "":
			nr := s.newRunnerLocked(d, r, r.currentState())
			r.requestStop(stopReplaced)
			s.runners[id] = nr
		}
	}
	for id, d := range assigned {
		if _, ok := s.runners[id]; ok {
			continue
		}
		if d.Stop {
			if f, ok := s.finished[id]; ok && f.instance == d.Instance {
				continue // it ended here and said so
			}
			if d.State != fsm.DynoDown {
				s.queue.add(fsm.DynoReport{ID: d.ID, Instance: d.Instance, Node: s.cfg.Node, State: fsm.DynoDown})
			}
			continue
		}
		if d.Instance == "" {
			continue
		}
		prev := ""
		if f, ok := s.finished[id]; ok {
			if f.instance == d.Instance {
				continue // it ran here and ended: the scheduler restarts it
			}
			prev = f.state
		}
		if d.State == fsm.DynoCrashed || d.State == fsm.DynoDown {
			continue // ended before this agent started
		}
		s.runners[id] = s.newRunnerLocked(d, nil, prev)
	}
	for id, f := range s.finished {
		if d, ok := assigned[id]; !ok || d.Instance != f.instance {
			delete(s.finished, id)
		}
	}
	s.broadcastLocked()
	if time.Since(s.pruned) > s.cfg.SlugCacheGrace/4 {
		s.pruned = time.Now()
		keep := map[string]bool{}
		for _, d := range assigned {
			if rel, ok := snap.Release(d.AppID, d.ReleaseID); ok {
				if sl, ok := snap.Slug(rel.SlugID); ok {
					keep[sl.BlobDigest] = true
				}
			}
		}
		s.slugs.Prune(keep, s.cfg.SlugCacheGrace)
	}
}

// newRunnerLocked creates and starts the runner of a dyno instance.
func (s *Supervisor) newRunnerLocked(d *fsm.Dyno, prev *runner, prevState string) *runner {
	r := newRunner(s, *d, prev, prevState)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		r.run()
	}()
	return r
}

// runnerDone forgets a runner that has ended.
func (s *Supervisor) runnerDone(r *runner, state string) {
	s.mu.Lock()
	if s.runners[r.d.ID] == r {
		delete(s.runners, r.d.ID)
		s.broadcastLocked()
	}
	if state != "" {
		s.finished[r.d.ID] = finishRec{instance: r.instance, state: state}
	}
	s.mu.Unlock()
	s.kick()
}

// report queues a state change of a dyno instance.
func (s *Supervisor) report(d *fsm.Dyno, instance, state string, exit *int, reason string) {
	s.queue.add(fsm.DynoReport{ID: d.ID, Instance: instance, Node: s.cfg.Node, State: state, ExitStatus: exit, Reason: reason})
}

// adopt takes over the dynos an earlier agent left running, removes what it
// cannot adopt, and reports the dynos that ended while no agent watched.
func (s *Supervisor) adopt(ctx context.Context) {
	snap := s.cfg.Snap()
	var kept []Record
	adopted := map[string]bool{}
	for _, rec := range s.recs.load() {
		d, ok := snap.DynoByID(rec.DynoID)
		if rec.Runtime != s.cfg.Runtime.Name() {
			// The node changed runtimes: stop the dyno (it starts again
			// under the new runtime).
			s.log.Info("stopping a dyno of another runtime", "dyno", rec.Name, "runtime", rec.Runtime)
			s.killForeign(ctx, rec)
			s.recs.remove(rec)
			_ = os.RemoveAll(rec.Dir)
			continue
		}
		proc, err := s.cfg.Runtime.Adopt(ctx, rec)
		if err == nil && rec.TTY {
			// An attached one-off's terminal died with the agent.
			_ = proc.Signal(syscall.SIGKILL)
			proc.Wait()
			_ = proc.Release()
			err = ErrNotRunning
		}
		if err != nil {
			s.log.Info("dyno ended while the agent was down", "dyno", rec.Name, "instance", rec.Instance)
			exit := readStatus(rec.Dir)
			if ok && d.Instance == rec.Instance && d.Node == s.cfg.Node && d.State != fsm.DynoCrashed && d.State != fsm.DynoDown {
				lines := s.lines(d)
				var st *int
				if exit.Known {
					st = &exit.Status
					lines.heroku("Process exited with status %d", exit.Status)
				}
				if d.Stop {
					lines.heroku("State changed from %s to down", d.State)
					s.report(d, rec.Instance, fsm.DynoDown, st, "")
				} else {
					lines.heroku("State changed from %s to crashed", d.State)
					s.report(d, rec.Instance, fsm.DynoCrashed, st, exitReason(exit))
				}
				s.finished[d.ID] = finishRec{instance: rec.Instance, state: fsm.DynoCrashed}
			}
			s.recs.remove(rec)
			_ = os.RemoveAll(rec.Dir)
			continue
		}
		kept = append(kept, rec)
		adopted[rec.Dir] = true
		dv := fsm.Dyno{ID: rec.DynoID, Name: rec.Name, AppID: rec.AppID, Instance: rec.Instance}
		state := fsm.DynoStarting
		if ok && d.Instance == rec.Instance {
			dv = *d
			if d.State == fsm.DynoUp {
				state = fsm.DynoUp
			}
		}
		s.log.Info("adopted a running dyno", "dyno", rec.Name, "instance", rec.Instance, "pid", rec.Pid)
		r := newRunner(s, dv, nil, "")
		r.instance = rec.Instance
		r.adopted, r.state = proc, state
		s.mu.Lock()
		if old, dup := s.runners[rec.DynoID]; dup {
			// Two records for one dyno: keep the newest instance running
			// (the converge stops the one the state does not want).
			if old.adopted.Record().StartedAt.After(rec.StartedAt) {
				r, old = old, r
			}
			old.requestStop(stopGone)
			s.wg.Add(1)
			go func(o *runner) { defer s.wg.Done(); o.run() }(old)
		}
		s.runners[rec.DynoID] = r
		s.mu.Unlock()
	}
	if err := s.cfg.Runtime.Sweep(ctx, nodeMarkerPrefix(s.markerNode), kept); err != nil {
		s.log.Warn("removing leftover dynos", "err", err)
	}
	if ents, err := os.ReadDir(s.runs); err == nil {
		for _, e := range ents {
			if p := filepath.Join(s.runs, e.Name()); !adopted[p] {
				_ = os.RemoveAll(p)
			}
		}
	}
	s.mu.Lock()
	for _, r := range s.runners {
		s.wg.Add(1)
		go func(r *runner) { defer s.wg.Done(); r.run() }(r)
	}
	s.mu.Unlock()
}

// killForeign kills a dyno another runtime started (runc's state directory
// is the agent's: <Dir>/runc).
func (s *Supervisor) killForeign(ctx context.Context, rec Record) {
	var other Runtime
	switch rec.Runtime {
	case "process":
		other = Process{}
	case "runc":
		bin, err := exec.LookPath("runc")
		if err != nil {
			s.log.Warn("cannot stop a runc dyno: runc is not installed", "dyno", rec.Name)
			return
		}
		other = &Runc{cfg: RuncConfig{StateDir: filepath.Join(s.cfg.Dir, "runc")}, bin: bin}
	default:
		return
	}
	proc, err := other.Adopt(ctx, rec)
	if err != nil {
		return
	}
	_ = proc.Signal(syscall.SIGKILL)
	proc.Wait()
	_ = proc.Release()
}

func exitReason(e Exit) string {
	if !e.Known {
		return "Process exited"
	}
	return fmt.Sprintf("Process exited with status %d", e.Status)
}

// lines returns the log lines of a dyno.
func (s *Supervisor) lines(d *fsm.Dyno) lineSink {
	name := ""
	if app, ok := s.cfg.Snap().App(d.AppID); ok {
		name = app.Name
	}
	return lineSink{sink: s.cfg.Sink, appID: d.AppID, appName: name, proc: d.Name, now: time.Now}
}

// Running lists the dynos this supervisor runs (id → instance), for tests
// and diagnostics.
func (s *Supervisor) Running() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for id, r := range s.runners {
		out[id] = r.instance
	}
	return out
}

// reportQueue submits reports in order, one dyno's newer report replacing
// its unsent older one, retrying while the control plane is unavailable.
type reportQueue struct {
	rep  Reporter
	log  *slog.Logger
	mu   sync.Mutex
	seq  uint64
	list []queued
	kick chan struct{}
}

type queued struct {
	seq uint64
	r   fsm.DynoReport
}

func newReportQueue(rep Reporter, log *slog.Logger) *reportQueue {
	return &reportQueue{rep: rep, log: log, kick: make(chan struct{}, 1)}
}

func (q *reportQueue) add(r fsm.DynoReport) {
	q.mu.Lock()
	for i, e := range q.list {
		if e.r.ID == r.ID && e.r.Instance == r.Instance {
			q.list = append(q.list[:i], q.list[i+1:]...)
			break
		}
	}
	q.seq++
	q.list = append(q.list, queued{seq: q.seq, r: r})
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *reportQueue) front() (queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.list) == 0 {
		return queued{}, false
	}
	return q.list[0], true
}

func (q *reportQueue) done(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, e := range q.list {
		if e.seq == seq {
			q.list = append(q.list[:i], q.list[i+1:]...)
			return
		}
	}
}

// Final reports whether a report error means the report must be dropped.
func finalReportError(err error) bool {
	e, ok := fsm.AsError(err)
	return ok && (e.Code == fsm.CodeConflict || e.Code == fsm.CodeNotFound || e.Code == fsm.CodeInvalidParams)
}

func (q *reportQueue) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		e, ok := q.front()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.kick:
			}
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := q.rep.Report(rctx, e.r)
		cancel()
		if err == nil || finalReportError(err) {
			if err != nil {
				q.log.Debug("dyno report ignored", "dyno", e.r.ID, "state", e.r.State, "err", err)
			}
			q.done(e.seq)
			backoff = 200 * time.Millisecond
			continue
		}
		q.log.Warn("dyno report failed, retrying", "dyno", e.r.ID, "state", e.r.State, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}
