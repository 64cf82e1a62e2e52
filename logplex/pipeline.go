package logplex

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

// Cluster is what the pipeline needs from its node (cluster.Node): the
// region's members and internal RPC to them.
type Cluster interface {
	Name() string
	Region() string
	Members() []cluster.Member
	RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error)
	HandleRPC(pattern string, h http.Handler)
}

// State is the replicated state the pipeline follows (apps, drains,
// rates): *fsm.FSM.
type State interface {
	Snap() *fsm.Snap
}

// Backoff bounds the delay between delivery attempts to a failing drain:
// it doubles from Min up to Max, with jitter.
type Backoff struct {
	Min, Max time.Duration
}

// Options configure a Pipeline. Zero values take the defaults.
type Options struct {
	// NodeName names this node in lines' origin and notices.
	NodeName string
	// Cluster, when set, makes history and tails region-wide and mounts
	// the pipeline's internal RPC handlers. Nil: this node only.
	Cluster Cluster
	// State gives the drains, apps and the log-input rate; nil: none.
	State  State
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time

	// HistoryLines per app on this node (DefaultHistoryLines).
	HistoryLines int
	// DrainBuffer is how many undelivered lines each drain keeps on this
	// node before dropping the oldest (DefaultDrainBuffer).
	DrainBuffer int
	// TailBuffer is how many lines a tail may fall behind before lines are
	// dropped with an L11 notice (DefaultTailBuffer).
	TailBuffer int
	// DrainBackoff paces retries to a failing drain (100 ms to 30 s).
	DrainBackoff Backoff
	// DrainTLS is the TLS configuration of syslog+tls and https drains
	// (nil: the system's roots).
	DrainTLS *tls.Config

	// SessionKey signs log session URLs. Nodes that share it serve each
	// other's sessions; nil makes a random key (sessions then only work
	// on this node).
	SessionKey []byte
	// SessionTTL is how long a log session URL may be opened (360 s, as
	// Heroku's).
	SessionTTL time.Duration
	// HistoryTimeout bounds the wait for a node's history (5 s); a node
	// that does not answer in time is reported in a notice line.
	HistoryTimeout time.Duration

	// InputRate is the default log-input rate: lines per second per app
	// accepted on each node (DefaultInputRate). The replicated rate and a
	// rate file override it.
	InputRate float64
	// RatesDir holds one file per named rate on this node (its content is
	// the value); a file overrides the cluster-wide value. Empty: none.
	RatesDir string
	// Version goes into the User-Agent of HTTPS drain requests.
	Version string
}

// Defaults.
const (
	DefaultDrainBuffer = 1024
	DefaultTailBuffer  = 1000
	DefaultSessionTTL  = 360 * time.Second
	DefaultInputRate   = 1000
	// MaxInputRate is the largest log-input rate that can be set.
	MaxInputRate = 1e9
)

// Pipeline is one node's log pipeline: it accepts lines from the node's
// dynos, router and API (Emit), keeps each app's recent history, feeds
// tails, delivers to drains, and serves the region-wide history and tails
// of log sessions. It implements Sink.
type Pipeline struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu   sync.RWMutex
	apps map[string]*appLog

	drains atomic.Pointer[map[string][]*drainWorker] // app id → workers

	wmu     sync.Mutex
	workers map[string]*drainWorker // drain id → worker

	rate atomic.Pointer[rateState]

	dirtyMu sync.Mutex
	dirty   map[*appLog]struct{} // apps with lines dropped by the rate limit

	httpClient *http.Client

	ctx          context.Context
	cancel       context.CancelFunc
	sessionsDone chan struct{}
	closeOnce    sync.Once
	sessOnce     sync.Once
	wg           sync.WaitGroup
}

var _ Sink = (*Pipeline)(nil)

// New starts a pipeline. Stop it with Close.
func New(opts Options) *Pipeline {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NodeName == "" && opts.Cluster != nil {
		opts.NodeName = opts.Cluster.Name()
	}
	if opts.HistoryLines <= 0 {
		opts.HistoryLines = DefaultHistoryLines
	}
	if opts.DrainBuffer <= 0 {
		opts.DrainBuffer = DefaultDrainBuffer
	}
	if opts.TailBuffer <= 0 {
		opts.TailBuffer = DefaultTailBuffer
	}
	if opts.DrainBackoff.Min <= 0 {
		opts.DrainBackoff.Min = 100 * time.Millisecond
	}
	if opts.DrainBackoff.Max < opts.DrainBackoff.Min {
		opts.DrainBackoff.Max = max(30*time.Second, opts.DrainBackoff.Min)
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.HistoryTimeout <= 0 {
		opts.HistoryTimeout = 5 * time.Second
	}
	if opts.InputRate == 0 {
		opts.InputRate = DefaultInputRate
	}
	if len(opts.SessionKey) == 0 {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		opts.SessionKey = k
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{opts: opts, log: opts.Logger, now: opts.Now, apps: map[string]*appLog{},
		workers: map[string]*drainWorker{}, dirty: map[*appLog]struct{}{},
		ctx: ctx, cancel: cancel, sessionsDone: make(chan struct{})}
	p.httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: opts.DrainTLS, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: 144 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 20 * time.Second,
	}}
	p.rate.Store(&rateState{value: opts.InputRate, source: "default", gen: 1})
	empty := map[string][]*drainWorker{}
	p.drains.Store(&empty)
	if opts.Cluster != nil {
		p.mountRPC(opts.Cluster)
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.followState() }()
	go func() { defer p.wg.Done(); p.noticeLoop() }()
	return p
}

// Close stops the pipeline: drains stop (undelivered lines are lost),
// sessions and internal streams end.
func (p *Pipeline) Close() {
	p.closeOnce.Do(func() {
		p.CloseSessions()
		p.cancel()
		p.wg.Wait()
		p.wmu.Lock()
		for _, w := range p.workers {
			w.stop()
		}
		p.wmu.Unlock()
	})
}

// CloseSessions ends the log sessions this node serves (for a graceful
// HTTP shutdown, which waits for open streams).
func (p *Pipeline) CloseSessions() {
	p.sessOnce.Do(func() { close(p.sessionsDone) })
}

// appLog is one app's channel on this node.
type appLog struct {
	id, name string
	created  time.Time

	mu      sync.Mutex
	hist    *ring
	seq     uint64
	subs    map[*subscriber]struct{}
	lim     *rate.Limiter
	limGen  uint64
	dropped int       // lines refused by the rate limit, not yet noticed
	since   time.Time // first of those
}

func (p *Pipeline) app(id, name string) *appLog {
	p.mu.RLock()
	a := p.apps[id]
	p.mu.RUnlock()
	if a != nil {
		if name != "" && a.name != name {
			a.mu.Lock()
			a.name = name
			a.mu.Unlock()
		}
		return a
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a = p.apps[id]; a == nil {
		a = &appLog{id: id, name: name, created: p.now(), hist: newRing(p.opts.HistoryLines),
			subs: map[*subscriber]struct{}{}}
		p.apps[id] = a
	}
	return a
}

// Emit accepts a line: it is split and made safe (SplitText), checked
// against the app's input rate, then kept in the app's history, sent to
// the app's tails and queued for its drains. Emit never blocks on a slow
// consumer.
func (p *Pipeline) Emit(l Line) {
	if l.AppID == "" {
		return
	}
	now := p.now()
	if l.Time.IsZero() {
		l.Time = now
	}
	if l.Source != SourceApp {
		l.Source = SourceHeroku
	}
	texts := SplitText(l.Text)
	a := p.app(l.AppID, l.AppName)
	ws := (*p.drains.Load())[l.AppID]
	rs := p.rate.Load()
	a.mu.Lock()
	if l.AppName == "" {
		l.AppName = a.name
	}
	var limited bool
	for _, t := range texts {
		if !a.allow(rs, now) {
			if a.dropped == 0 {
				a.since = now
			}
			a.dropped++
			limited = true
			continue
		}
		e := entry{Line: l}
		e.Text = t
		p.appendLocked(a, e, ws)
	}
	a.mu.Unlock()
	if limited {
		p.dirtyMu.Lock()
		p.dirty[a] = struct{}{}
		p.dirtyMu.Unlock()
	}
}

// appendLocked stores a line and hands it to tails and drains; a.mu held.
func (p *Pipeline) appendLocked(a *appLog, e entry, ws []*drainWorker) {
	a.seq++
	e.Seq, e.Node = a.seq, p.opts.NodeName
	a.hist.push(e)
	for s := range a.subs {
		s.offer(e, p.now)
	}
	for _, w := range ws {
		w.enqueue(e)
	}
}

// allow applies the app's log-input rate; a.mu held.
func (a *appLog) allow(rs *rateState, now time.Time) bool {
	switch {
	case a.lim == nil:
		a.lim = rate.NewLimiter(rate.Limit(rs.value), rs.burst()) // starts with a full burst
		a.limGen = rs.gen
	case a.limGen != rs.gen:
		a.lim.SetLimitAt(now, rate.Limit(rs.value))
		a.lim.SetBurstAt(now, rs.burst())
		a.limGen = rs.gen
	}
	return a.lim.AllowN(now, 1)
}

// notice makes a Logplex notice line (heroku[logplex]) for an app.
func notice(appID, appName string, at time.Time, format string, args ...any) entry {
	return entry{Line: Line{AppID: appID, AppName: appName, Time: at, Source: SourceHeroku, Proc: ProcLogplex,
		Text: fmt.Sprintf(format, args...)}}
}

// noticeLoop says, once a second at most per app, how many lines the input
// rate limit dropped.
func (p *Pipeline) noticeLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		p.flushRateNotices()
	}
}

func (p *Pipeline) flushRateNotices() {
	p.dirtyMu.Lock()
	apps := make([]*appLog, 0, len(p.dirty))
	for a := range p.dirty {
		apps = append(apps, a)
	}
	clear(p.dirty)
	p.dirtyMu.Unlock()
	rs := p.rate.Load()
	for _, a := range apps {
		ws := (*p.drains.Load())[a.id]
		a.mu.Lock()
		if a.dropped > 0 {
			n := notice(a.id, a.name, p.now(), "Error L12 (log input rate limit): %d messages dropped since %s (the log-input rate is %s lines/s per app on node %s)",
				a.dropped, FormatTime(a.since), formatRate(rs.value), p.opts.NodeName)
			a.dropped = 0
			p.appendLocked(a, n, ws)
		}
		a.mu.Unlock()
	}
}

// subscriber is a tail on this node: a bounded queue of lines; when it is
// full, lines are counted and dropped, and an L11 notice takes their place.
type subscriber struct {
	appID, appName string
	f              Filter
	ch             chan entry

	mu      sync.Mutex
	dropped int
	since   time.Time
}

func (s *subscriber) offer(e entry, now func() time.Time) {
	if !s.f.Match(&e.Line) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped > 0 {
		select {
		case s.ch <- s.l11(now()):
			s.dropped = 0
		default:
			s.dropped++
			return
		}
	}
	select {
	case s.ch <- e:
	default:
		s.since = now()
		s.dropped++
	}
}

func (s *subscriber) l11(at time.Time) entry {
	return notice(s.appID, s.appName, at, "Error L11 (Tail buffer overflow): This tail session dropped %d messages since %s", s.dropped, FormatTime(s.since))
}

// errIdle is next's answer when no line came for the idle period.
var errIdle = fmt.Errorf("idle")

// next returns the tail's next line, an L11 notice when lines were dropped
// and the queue has emptied, errIdle after idle without lines, or the
// context's error.
func (s *subscriber) next(ctx context.Context, done <-chan struct{}, idle time.Duration, now func() time.Time) (entry, error) {
	select {
	case e := <-s.ch:
		return e, nil
	default:
	}
	s.mu.Lock()
	if s.dropped > 0 && len(s.ch) == 0 {
		n := s.l11(now())
		s.dropped = 0
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	t := time.NewTimer(idle)
	defer t.Stop()
	select {
	case e := <-s.ch:
		return e, nil
	case <-t.C:
		return entry{}, errIdle
	case <-done:
		return entry{}, context.Canceled
	case <-ctx.Done():
		return entry{}, ctx.Err()
	}
}

// subscribe registers a tail and returns, atomically with it, the app's
// newest n lines of history that f selects.
func (p *Pipeline) subscribe(appID string, f Filter, n int) (*subscriber, []entry) {
	a := p.app(appID, "")
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &subscriber{appID: appID, appName: a.name, f: f, ch: make(chan entry, p.opts.TailBuffer)}
	a.subs[s] = struct{}{}
	return s, a.hist.last(n, f, appID, a.name, p.opts.NodeName)
}

func (p *Pipeline) unsubscribe(s *subscriber) {
	p.mu.RLock()
	a := p.apps[s.appID]
	p.mu.RUnlock()
	if a == nil {
		return
	}
	a.mu.Lock()
	delete(a.subs, s)
	a.mu.Unlock()
}

// history returns this node's newest n lines of an app that f selects.
func (p *Pipeline) history(appID string, f Filter, n int) []entry {
	p.mu.RLock()
	a := p.apps[appID]
	p.mu.RUnlock()
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hist.last(n, f, appID, a.name, p.opts.NodeName)
}

// followState keeps the pipeline in step with the replicated state:
// drains to deliver to, apps that were deleted, the log-input rate (and
// the rate files, read every 2 s).
func (p *Pipeline) followState() {
	for {
		wctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		if p.opts.State != nil {
			snap := p.opts.State.Snap()
			ws := snap.Watch("drains", "apps", "meta")
			p.reconcileDrains(snap)
			p.pruneApps(snap)
			p.loadRate(snap)
			_ = ws.WatchCtx(wctx)
		} else {
			p.loadRate(nil)
			<-wctx.Done()
		}
		cancel()
		if p.ctx.Err() != nil {
			return
		}
	}
}

// pruneApps forgets the history of apps that no longer exist (after a
// grace period, since a line may arrive before this replica knows its app).
func (p *Pipeline) pruneApps(snap *fsm.Snap) {
	cutoff := p.now().Add(-time.Minute)
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, a := range p.apps {
		if a.created.Before(cutoff) {
			if _, ok := snap.App(id); !ok {
				delete(p.apps, id)
			}
		}
	}
}

// Stats describe the pipeline on this node (for tests and metrics).
type Stats struct {
	Apps         int
	HistoryLines int
}

// Stats counts the apps and history lines this node holds.
func (p *Pipeline) Stats() Stats {
	p.mu.RLock()
	apps := make([]*appLog, 0, len(p.apps))
	for _, a := range p.apps {
		apps = append(apps, a)
	}
	p.mu.RUnlock()
	st := Stats{Apps: len(apps)}
	for _, a := range apps {
		a.mu.Lock()
		st.HistoryLines += a.hist.len()
		a.mu.Unlock()
	}
	return st
}
