package router

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/fsm"
	"github.com/slipwayhq/slipway/logplex"
)

// netHTTPFlag runs the tests with net/http serving plain HTTP too (the
// router's own HTTP/1.1 server is the default): go test -args -nethttp.
var netHTTPFlag = flag.Bool("nethttp", false, "serve plain HTTP with net/http in tests")

// memSink collects log lines.
type memSink struct {
	mu    sync.Mutex
	lines []logplex.Line
}

func (s *memSink) Emit(l logplex.Line) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
}

func (s *memSink) all() []logplex.Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]logplex.Line(nil), s.lines...)
}

// waitLine waits for a line containing every one of parts.
func (s *memSink) waitLine(t *testing.T, parts ...string) logplex.Line {
	t.Helper()
	var last []logplex.Line
	ok := eventually(10*time.Second, func() bool {
		last = s.all()
		for _, l := range last {
			match := true
			for _, p := range parts {
				if !strings.Contains(l.Text, p) {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
		return false
	})
	if !ok {
		var texts []string
		for _, l := range last {
			texts = append(texts, l.Text)
		}
		t.Fatalf("no log line with %q; lines:\n%s", parts, strings.Join(texts, "\n"))
	}
	for _, l := range last {
		match := true
		for _, p := range parts {
			if !strings.Contains(l.Text, p) {
				match = false
			}
		}
		if match {
			return l
		}
	}
	return logplex.Line{}
}

func eventually(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testRouter is a router serving HTTP (and HTTPS) on loopback, fed from a
// real FSM whose tables the test fills with commands.
type testRouter struct {
	t      *testing.T
	rt     *Router
	f      *fsm.FSM
	sink   *memSink
	addr   string // HTTP host:port
	tlsURL string // HTTPS host:port
	idx    uint64
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func newTestRouter(t *testing.T, opts Options) *testRouter {
	t.Helper()
	f, err := fsm.New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	opts.State = f
	opts.Sink = sink
	opts.NetHTTP = opts.NetHTTP || *netHTTPFlag
	if opts.Zone == "" {
		opts.Zone = "a"
	}
	if opts.Region == "" {
		opts.Region = "local"
	}
	if os.Getenv("ROUTER_TEST_DEBUG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rt, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRouter{t: t, rt: rt, f: f, sink: sink, addr: ln.Addr().String(), tlsURL: tln.Addr().String(), cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); rt.Run(ctx) }()
	go func() { defer wg.Done(); _ = rt.Serve(ln) }()
	go func() { defer wg.Done(); _ = rt.ServeTLS(tln) }()
	go func() { wg.Wait(); close(tr.done) }()
	tr.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", tr.addr)
		},
		MaxIdleConnsPerHost: 64,
	}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(tr.close)
	return tr
}

func (tr *testRouter) close() {
	tr.client.CloseIdleConnections()
	_ = tr.rt.Close()
	tr.cancel()
	select {
	case <-tr.done:
	case <-time.After(10 * time.Second):
		tr.t.Error("router did not stop")
	}
}

func (tr *testRouter) apply(typ string, data any) *fsm.Result {
	tr.t.Helper()
	c, err := fsm.NewCommand(typ, uuid.NewString(), time.Now(), "", data)
	if err != nil {
		tr.t.Fatal(err)
	}
	b, err := c.Encode()
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.idx++
	return tr.f.ApplyCommand(tr.idx, b)
}

func (tr *testRouter) ok(typ string, data any) *fsm.Result {
	tr.t.Helper()
	res := tr.apply(typ, data)
	if res.Err != nil {
		tr.t.Fatalf("%s: %v", typ, res.Err)
	}
	return res
}

func (tr *testRouter) createApp(name string) *fsm.App {
	tr.t.Helper()
	var a fsm.App
	res := tr.ok(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: uuid.NewString(), Name: name, Region: "local"},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: name + ".localhost"})
	if err := res.Decode(&a); err != nil {
		tr.t.Fatal(err)
	}
	return &a
}

// addDyno creates a web dyno of app at addr (host:port) in a state.
func (tr *testRouter) addDyno(app *fsm.App, name, addr, node, zone, state string) string {
	tr.t.Helper()
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		tr.t.Fatal(err)
	}
	port, _ := strconv.Atoi(ps)
	typ, _, _ := strings.Cut(name, ".")
	d := fsm.Dyno{ID: uuid.NewString(), AppID: app.ID, Name: name, Type: typ, Command: "./web", Size: "Basic"}
	inst := uuid.NewString()
	tr.ok(fsm.CmdDynoPlan, fsm.DynoPlan{Create: []fsm.Dyno{d}, Place: []fsm.Placement{{ID: d.ID, Node: node, Zone: zone, Addr: host, Port: port, Instance: inst}}})
	if state != fsm.DynoStarting {
		tr.ok(fsm.CmdDynoReport, fsm.DynoReport{ID: d.ID, Instance: inst, Node: node, State: state})
	}
	return d.ID
}

// removeDyno stops and removes a dyno.
func (tr *testRouter) removeDyno(id string) {
	tr.t.Helper()
	tr.ok(fsm.CmdDynoPlan, fsm.DynoPlan{Stop: []string{id}})
	tr.ok(fsm.CmdDynoPlan, fsm.DynoPlan{Remove: []string{id}})
}

// waitTable waits until the router's table reflects the FSM's state.
func (tr *testRouter) waitTable() {
	tr.t.Helper()
	var want, got string
	if !eventually(10*time.Second, func() bool {
		in := InputFromSnap(tr.f.Snap(), tr.rt.members())
		want = newRegistry(poolOptions{}).build(in, buildOptions{BacklogPerDyno: tr.rt.opts.BacklogPerDyno}).signature()
		got = tr.rt.Table().signature()
		return got == want
	}) {
		tr.t.Fatalf("the router's table never caught up:\n%s\nwant:\n%s", got, want)
	}
}

func (tr *testRouter) setConfig(app *fsm.App, kv ...string) {
	tr.t.Helper()
	ch := map[string]*string{}
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		ch[kv[i]] = &v
	}
	tr.ok(fsm.CmdConfigUpdate, fsm.ConfigUpdate{AppID: app.ID, Changes: ch, ReleaseID: uuid.NewString()})
}

// get sends a request for host through the router.
func (tr *testRouter) do(method, host, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	tr.t.Helper()
	req, err := http.NewRequest(method, "http://"+tr.addr+path, body)
	if err != nil {
		tr.t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := tr.client.Do(req)
	if err != nil {
		tr.t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		tr.t.Fatalf("reading %s %s%s: %v", method, host, path, err)
	}
	return resp, string(b)
}

func (tr *testRouter) get(host, path string, hdr ...string) (*http.Response, string) {
	tr.t.Helper()
	return tr.do("GET", host, path, nil, hdr...)
}

// echoBackend is a dyno that answers with its name and what it received.
func echoBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Dyno", name)
		for k, vv := range r.Header {
			for _, v := range vv {
				w.Header().Add("X-Got-"+k, v)
			}
		}
		w.Header().Set("X-Got-Host", r.Host)
		w.Header().Set("X-Got-Uri", r.RequestURI)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", name, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}
