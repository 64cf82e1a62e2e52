package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// State is the replicated state the router follows (*fsm.FSM).
type State interface {
	Snap() *fsm.Snap
}

// Membership is gossip's view of the nodes (*cluster.Node).
type Membership interface {
	Members() []cluster.Member
}

// Forwarder finds a router of the home region of an app that is homed in
// another region and has no dynos here: the request is proxied there (as
// to a dyno, with the same headers, retries and log line; dyno=router.REGION).
// ok=false answers as if the app had no dynos (H14). The multi-region work
// provides the implementation.
type Forwarder interface {
	Route(app *App) (addr string, ok bool)
}

// Options configure a router. Zero values take Heroku's defaults.
type Options struct {
	// Region and Zone are this node's; Domain is the cluster domain (for
	// the default certificate).
	Region, Zone, Domain string
	// State is followed for the route table; nil means tables come only
	// from Update. Members, when set, drops dynos of dead nodes at once.
	State   State
	Members Membership
	// Sink receives the router log lines (source heroku, proc router).
	Sink      logplex.Sink
	Logger    *slog.Logger
	Forwarder Forwarder
	Now       func() time.Time
	// Synced reports whether the node's replica has caught up with the
	// cluster (once is enough). Until it has, a Host that matches no app
	// gets 503, not 404: after a restart the app may exist and this node
	// not know it yet, and a 404 would tell clients (and caches) the app
	// is gone. Nil: always synced.
	Synced func() bool
	// Dial connects to dynos (default: TCP with ConnectTimeout).
	Dial Dialer
	// DefaultCert is served when no app certificate matches the SNI name;
	// by default a self-signed one for Domain is generated.
	DefaultCert *tls.Certificate

	ConnectTimeout time.Duration // H19 (5 s)
	// RetryConnectTimeout is the connect timeout while another dyno is
	// left to try (250 ms): inside a region a connect takes a millisecond
	// or two, and a lost SYN is only resent after 1 s, so a dyno that has
	// not answered by then is most likely on a node that is gone (gossip
	// may not have declared it dead yet) or too loaded to accept; its node
	// is quarantined and the request goes to another dyno rather than
	// waiting out ConnectTimeout. The last dyno gets ConnectTimeout.
	RetryConnectTimeout time.Duration
	// UnackedTimeout (TCP_USER_TIMEOUT, Linux) fails a dyno connection
	// whose sent data stays unacknowledged this long (2 s): its node is
	// gone. An idempotent request with nothing received yet is retried on
	// another dyno; the node's dynos are quarantined.
	UnackedTimeout   time.Duration
	FirstByteTimeout time.Duration // H12 (30 s)
	IdleTimeout      time.Duration // H15/H28 rolling window (55 s)
	Quarantine       time.Duration // after a connect error (5 s)
	MaxAttempts      int           // dynos tried per request (10)
	// BacklogPerDyno is the H11 limit per up web dyno (200).
	BacklogPerDyno int

	// Client side: time to read a request's headers (slowloris guard,
	// 30 s) and keep-alive idle time between requests (90 s).
	ReadHeaderTimeout time.Duration
	ClientIdleTimeout time.Duration
	// MaxHeaderBytes bounds a request head (64 KiB; over it: 431). Within
	// it, Heroku's limits apply (8 KiB lines, 1000 headers: over them, H26).
	MaxHeaderBytes int

	// Dyno side: idle keep-alive connections per dyno (512) and how long
	// one may stay idle (1 s: shorter than app servers' own timeouts —
	// gunicorn 2 s, Node 5 s, Puma 20 s — so the app never closes a
	// connection the router is about to reuse).
	MaxIdlePerBackend  int
	BackendIdleTimeout time.Duration
	BackendReadBuffer  int // 32 KiB; response heads must fit
	BackendWriteBuffer int // 8 KiB
	// Client side buffers of the HTTP/1.1 front end (8 KiB each; a
	// request head bigger than the read buffer grows it up to
	// MaxHeaderBytes).
	ClientReadBuffer  int
	ClientWriteBuffer int
	// NetHTTP serves plain HTTP with net/http instead of the router's own
	// HTTP/1.1 server (for comparison; HTTPS always uses net/http).
	NetHTTP bool

	// MembersPoll is how often gossip is checked and idle connections
	// reaped (250 ms); MetricsInterval how often metrics are published (5 s).
	MembersPoll     time.Duration
	MetricsInterval time.Duration
	// Via is the router's Via entry ("1.1 slipway").
	Via string
}

func (o *Options) defaults() {
	dur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	num := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	dur(&o.ConnectTimeout, 5*time.Second)
	dur(&o.RetryConnectTimeout, 250*time.Millisecond)
	dur(&o.UnackedTimeout, 2*time.Second)
	o.RetryConnectTimeout = min(o.RetryConnectTimeout, o.ConnectTimeout)
	dur(&o.FirstByteTimeout, 30*time.Second)
	dur(&o.IdleTimeout, 55*time.Second)
	dur(&o.Quarantine, 5*time.Second)
	dur(&o.ReadHeaderTimeout, 30*time.Second)
	dur(&o.ClientIdleTimeout, 90*time.Second)
	dur(&o.BackendIdleTimeout, time.Second)
	dur(&o.MembersPoll, 250*time.Millisecond)
	dur(&o.MetricsInterval, 5*time.Second)
	num(&o.MaxAttempts, 10)
	o.MaxAttempts = min(o.MaxAttempts, maxAttemptsCap)
	num(&o.BacklogPerDyno, 200)
	num(&o.MaxHeaderBytes, 64<<10)
	num(&o.MaxIdlePerBackend, 512)
	num(&o.BackendReadBuffer, 32<<10)
	num(&o.BackendWriteBuffer, 8<<10)
	num(&o.ClientReadBuffer, 8<<10)
	num(&o.ClientWriteBuffer, 8<<10)
	if o.Via == "" {
		o.Via = "1.1 slipway"
	}
	if o.Domain == "" {
		o.Domain = "localhost"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Sink == nil {
		o.Sink = logplex.SlogSink{Log: o.Logger}
	}
}

// Router routes HTTP requests to dynos.
type Router struct {
	opts        Options
	log         *slog.Logger
	sink        logplex.Sink
	now         func() time.Time
	dial        Dialer
	reg         *registry
	table       atomic.Pointer[Table]
	synced      atomic.Bool // Options.Synced said yes once
	defaultCert *tls.Certificate
	via         string
	viaHeader   []string
	stats       stats

	reqs sync.Pool // *reqState
	bufs sync.Pool // *[]byte, 32 KiB

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	closing atomic.Bool // closed, readable without mu
	servers []*http.Server
	tunnels map[*tunnel]struct{}
	// The router's own HTTP/1.1 front end (h1.go).
	listeners []net.Listener
	h1conns   map[*h1conn]struct{}
	// remotes are the routers of other regions (Forwarder), by address.
	remotes sync.Map
}

// New makes a router with an empty table (Run or Update fills it).
func New(opts Options) (*Router, error) {
	opts.defaults()
	rt := &Router{opts: opts, log: opts.Logger, sink: opts.Sink, now: opts.Now, dial: opts.Dial,
		via: opts.Via, viaHeader: []string{opts.Via}, tunnels: map[*tunnel]struct{}{}, h1conns: map[*h1conn]struct{}{}}
	if rt.dial == nil {
		rt.dial = defaultDialer(opts.ConnectTimeout, opts.UnackedTimeout)
	}
	rt.reg = newRegistry(poolOptions{maxIdle: opts.MaxIdlePerBackend, idleTimeout: opts.BackendIdleTimeout,
		probeAfter: min(200*time.Millisecond, opts.BackendIdleTimeout/2)})
	rt.defaultCert = opts.DefaultCert
	if rt.defaultCert == nil {
		c, err := SelfSigned(opts.Domain, opts.Now())
		if err != nil {
			return nil, err
		}
		rt.defaultCert = c
	}
	rt.reqs.New = func() any {
		return &reqState{logBuf: make([]byte, 0, 512), rid: make([]byte, 0, 64), fwd: make([]byte, 0, 64)}
	}
	rt.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	rt.table.Store(rt.reg.build(&Input{}, buildOptions{BacklogPerDyno: opts.BacklogPerDyno}))
	return rt, nil
}

// Update installs a table built from in. Requests in flight keep the
// table (and backend) they started with.
func (rt *Router) Update(in *Input) *Table {
	t := rt.reg.build(in, buildOptions{BacklogPerDyno: rt.opts.BacklogPerDyno})
	rt.table.Store(t)
	return t
}

// Table is the current route table.
func (rt *Router) Table() *Table { return rt.table.Load() }

// watchedTables are the state tables a route table depends on.
var watchedTables = []string{"apps", "domains", "dynos", "certs", "config"}

// Run keeps the route table current until ctx ends: it rebuilds it when
// the state changes or gossip reports a node down, reaps idle dyno
// connections and publishes metrics. When the control plane is
// unreachable the local replica simply stops changing, and the router
// keeps routing on the last table.
func (rt *Router) Run(ctx context.Context) {
	var down string
	var ws interface{ WatchCtx(context.Context) error }
	rebuild := true
	lastMetrics := rt.now()
	for {
		if rebuild && rt.opts.State != nil {
			// Watch the snapshot the table is built from, so no change
			// between building and waiting is missed.
			snap := rt.opts.State.Snap()
			ws = snap.Watch(watchedTables...)
			in := InputFromSnap(snap, rt.members())
			down = downSignature(in.Down)
			old := rt.table.Load()
			t := rt.Update(in)
			rt.logTableChange(old, t)
		}
		rebuild = false
		wctx, cancel := context.WithTimeout(ctx, rt.opts.MembersPoll)
		var err error
		if ws != nil {
			err = ws.WatchCtx(wctx)
		} else {
			<-wctx.Done()
			err = wctx.Err()
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			rebuild = true
			continue
		}
		// Periodic work.
		if rt.opts.State != nil && rt.opts.Members != nil && downSignature(downNodes(rt.members())) != down {
			rebuild = true
		}
		rt.reapIdle()
		if now := rt.now(); now.Sub(lastMetrics) >= rt.opts.MetricsInterval {
			lastMetrics = now
			rt.publishMetrics()
		}
	}
}

func (rt *Router) members() []cluster.Member {
	if rt.opts.Members == nil {
		return nil
	}
	return rt.opts.Members.Members()
}

func downSignature(down map[string]bool) string {
	names := make([]string, 0, len(down))
	for n := range down {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func (rt *Router) logTableChange(old, t *Table) {
	if !rt.log.Enabled(rt.ctx, slog.LevelDebug) {
		return
	}
	rt.log.Debug("router: table updated", "index", t.Index, "hosts", len(t.hosts), "wildcards", len(t.wild),
		"backends", len(t.backends), "previous_backends", len(old.backends))
}

// reapIdle closes dyno connections idle for longer than the backend idle
// timeout.
func (rt *Router) reapIdle() {
	cutoff := nowNano(rt.now) - int64(rt.opts.BackendIdleTimeout)
	for _, b := range rt.table.Load().backends {
		b.pool.closeIdle(cutoff, false)
	}
}

// serveStd answers plain HTTP on ln with net/http (Options.NetHTTP).
func (rt *Router) serveStd(ln net.Listener, proto string) error {
	srv, err := rt.server(ln, proto)
	if err != nil {
		return err
	}
	return srv.Serve(ln)
}

// ServeTLS answers HTTPS (HTTP/1.1 and HTTP/2, certificates by SNI) on ln
// until Shutdown or Close.
func (rt *Router) ServeTLS(ln net.Listener) error {
	srv, err := rt.server(ln, "https")
	if err != nil {
		return err
	}
	srv.TLSConfig = rt.TLSConfig()
	return srv.ServeTLS(ln, "", "")
}

// TLSConfig is the router's server TLS configuration.
func (rt *Router) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: rt.getCertificate}
}

func (rt *Router) server(ln net.Listener, proto string) (*http.Server, error) {
	port := ""
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	} else if _, p, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		port = p
	}
	srv := &http.Server{
		Handler:           &frontend{rt: rt, proto: proto, port: port},
		ReadHeaderTimeout: rt.opts.ReadHeaderTimeout,
		IdleTimeout:       rt.opts.ClientIdleTimeout,
		MaxHeaderBytes:    rt.opts.MaxHeaderBytes,
		ConnState:         rt.connState,
		ErrorLog:          log.New(slogWriter{rt.log}, "", 0),
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil, http.ErrServerClosed
	}
	rt.servers = append(rt.servers, srv)
	return srv, nil
}

func (rt *Router) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		rt.stats.active.Add(1)
	case http.StateClosed, http.StateHijacked:
		rt.stats.active.Add(-1)
	}
}

// slogWriter sends net/http's server errors (TLS handshake failures,
// malformed requests) to the debug log: clients cause them, not the router.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("router: http server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// trackTunnel registers (or forgets) an upgraded connection so Shutdown
// can close it; false means the router is closing.
func (rt *Router) trackTunnel(t *tunnel, add bool) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if !add {
		delete(rt.tunnels, t)
		return true
	}
	if rt.closed {
		return false
	}
	rt.tunnels[t] = struct{}{}
	return true
}

// Shutdown stops accepting, lets requests in flight finish (until ctx
// ends), closes upgraded connections and idle dyno connections.
func (rt *Router) Shutdown(ctx context.Context) error {
	return rt.stop(ctx, func(s *http.Server) error { return s.Shutdown(ctx) })
}

// Close stops the router at once.
func (rt *Router) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return rt.stop(ctx, func(s *http.Server) error { return s.Close() })
}

func (rt *Router) stop(ctx context.Context, f func(*http.Server) error) error {
	rt.mu.Lock()
	rt.closed = true
	rt.closing.Store(true)
	servers, lns := rt.servers, rt.listeners
	rt.mu.Unlock()
	var errs []error
	for _, ln := range lns {
		_ = ln.Close()
	}
	for _, s := range servers {
		if err := f(s); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("router: stopping a listener: %w", err))
		}
	}
	// HTTP/1.1 front end: idle connections close now, busy ones after
	// their request, or when ctx ends.
	for {
		rt.mu.Lock()
		busy := 0
		for hc := range rt.h1conns {
			if hc.state.CompareAndSwap(h1Idle, h1Closed) {
				_ = hc.nc.Close()
				rt.stats.active.Add(-1)
			} else if hc.state.Load() == h1Active {
				busy++
			}
		}
		rt.mu.Unlock()
		if busy == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	rt.mu.Lock()
	for hc := range rt.h1conns {
		hc.close()
	}
	for t := range rt.tunnels {
		t.client.Close()
		t.dyno.Close()
	}
	rt.mu.Unlock()
	rt.cancel()
	for _, b := range rt.table.Load().backends {
		b.pool.closeIdle(0, true)
	}
	rt.remotes.Range(func(_, v any) bool {
		v.(*Backend).pool.closeIdle(0, true)
		return true
	})
	if ctx.Err() != nil && len(servers) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

// atomicTime is a time usable from two goroutines.
type atomicTime struct{ ns atomic.Int64 }

func (t *atomicTime) store(v time.Time) { t.ns.Store(v.UnixNano()) }
func (t *atomicTime) load() time.Time   { return time.Unix(0, t.ns.Load()) }

// unknownHost is the status and page for a Host that matches no app: 404,
// or 503 while the replica has not caught up yet (Options.Synced).
func (rt *Router) unknownHost() (int, string) {
	if !rt.synced.Load() {
		if rt.opts.Synced != nil && !rt.opts.Synced() {
			return http.StatusServiceUnavailable, pageNotSynced
		}
		rt.synced.Store(true)
	}
	return http.StatusNotFound, pageNoSuchApp
}
