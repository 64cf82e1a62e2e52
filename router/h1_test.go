package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// rawExchange writes raw to the router and reads n responses.
func (tr *testRouter) rawExchange(t *testing.T, raw string, methods ...string) []*http.Response {
	t.Helper()
	c, br := tr.raw(t, raw)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var out []*http.Response
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("reading response %d: %v", len(out)+1, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading body %d: %v", len(out)+1, err)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, resp)
	}
	return out
}

func body(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

func TestHTTP1FramingPipeliningAndHTTP10(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	// A dyno answering like an old server: no length, body until close.
	closer := rawBackend(t, func(c net.Conn) {
		readRequestHead(c)
		io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close")
	})
	tr.addDyno(app, "web.1", closer, "n1", "a", fsm.DynoUp)
	echo := tr.createApp("echo")
	tr.addDyno(echo, "web.1", hostPort(echoBackend(t, "e")), "n1", "a", fsm.DynoUp)
	tr.waitTable()

	// To an HTTP/1.1 client the body is chunked and the connection stays.
	rs := tr.rawExchange(t, "GET / HTTP/1.1\r\nHost: demo.localhost\r\n\r\nGET /again HTTP/1.1\r\nHost: echo.localhost\r\n\r\n", "GET", "GET")
	if got := body(rs[0]); got != "until-close" || rs[0].TransferEncoding == nil || rs[0].Close {
		t.Fatalf("reframed: %q te=%v close=%v", got, rs[0].TransferEncoding, rs[0].Close)
	}
	if got := body(rs[1]); got != "e:" || rs[1].Header.Get("X-Got-Uri") != "/again" {
		t.Fatalf("pipelined second response %q", got)
	}
	// To an HTTP/1.0 client: body until close.
	rs = tr.rawExchange(t, "GET / HTTP/1.0\r\nHost: demo.localhost\r\n\r\n", "GET")
	if got := body(rs[0]); got != "until-close" || !rs[0].Close {
		t.Fatalf("HTTP/1.0: %q close=%v", got, rs[0].Close)
	}
	// HTTP/1.0 keep-alive, pipelined, with a HEAD and a POST.
	rs = tr.rawExchange(t, "HEAD / HTTP/1.0\r\nHost: echo.localhost\r\nConnection: keep-alive\r\n\r\n"+
		"POST /p HTTP/1.0\r\nHost: echo.localhost\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /nope HTTP/1.1\r\nHost: nope.localhost\r\n\r\n", "HEAD", "POST", "GET")
	if rs[0].StatusCode != 200 || body(rs[0]) != "" || rs[0].Header.Get("Connection") != "keep-alive" {
		t.Fatalf("HEAD: %d %v", rs[0].StatusCode, rs[0].Header)
	}
	if got := body(rs[1]); got != "e:abc" {
		t.Fatalf("POST over HTTP/1.0: %q", got)
	}
	if rs[2].StatusCode != 404 {
		t.Fatalf("unknown host: %d", rs[2].StatusCode)
	}
	// A chunked request body with a trailer reaches the dyno whole.
	rs = tr.rawExchange(t, "POST /c HTTP/1.1\r\nHost: echo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "POST")
	if got := body(rs[0]); got != "e:abcde" {
		t.Fatalf("chunked upload: %q", got)
	}
	// An error page for a request with an unread body closes the connection.
	rs = tr.rawExchange(t, "POST / HTTP/1.1\r\nHost: "+strings.Repeat("x", 3)+".localhost\r\nContent-Length: 5\r\n\r\nhello", "POST")
	if rs[0].StatusCode != 404 || (!rs[0].Close && !*netHTTPFlag) { // net/http drains small bodies instead
		t.Fatalf("404 with a body: %d close=%v", rs[0].StatusCode, rs[0].Close)
	}
}

func TestStaleKeepAliveConnectionsAreRetried(t *testing.T) {
	tr := newTestRouter(t, Options{BackendIdleTimeout: time.Minute})
	app := tr.createApp("demo")
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	s.Config.IdleTimeout = 30 * time.Millisecond // an app server closing idle keep-alives quickly
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	for i := 0; i < 10; i++ {
		if resp, b := tr.get("demo.localhost", "/"); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(80 * time.Millisecond) // the app has closed the idle connection by now
	}
	if conns.Load() < 5 {
		t.Fatalf("the app saw only %d connections: were stale ones not detected?", conns.Load())
	}
}

func TestUnreachableNodeQuarantinesAllItsDynos(t *testing.T) {
	dead := map[string]bool{}
	tr := newTestRouter(t, Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		if dead[addr] {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}})
	app := tr.createApp("demo")
	a1, a2 := freeAddr(t), hostPort(echoBackend(t, "live"))
	b1 := freeAddr(t)
	dead[a1], dead[b1] = true, true
	tr.addDyno(app, "web.1", a1, "n2", "a", fsm.DynoUp)
	tr.addDyno(app, "web.2", b1, "n2", "a", fsm.DynoUp)
	tr.addDyno(app, "web.3", a2, "n1", "a", fsm.DynoUp)
	tr.waitTable()
	for i := 0; i < 10; i++ {
		if resp, b := tr.get("demo.localhost", "/"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	tr.expectNodeQuarantined(t, "n2", "unreachable")
}

func TestClientGoneDuringResponseIsH27(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	big := strings.Repeat("x", 8<<20)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }))
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	c, br := tr.raw(t, "GET /big HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
	if _, err := br.Peek(100); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	l := tr.sink.waitLine(t, "code=H27", `path="/big"`)
	if !strings.HasPrefix(l.Text, "sock=client at=warning code=H27") || !strings.Contains(l.Text, "status=200") {
		t.Fatalf("H27 line %q", l.Text)
	}
	// The router still serves.
	if resp, _ := tr.get("demo.localhost", "/"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
}

// A dyno on a silent node (connects hang: the node is gone, gossip does
// not know yet) costs a request RetryConnectTimeout, not ConnectTimeout,
// while another dyno is left to try; the last dyno gets ConnectTimeout.
func TestSilentNodeGetsTheShortConnectTimeout(t *testing.T) {
	var mu sync.Mutex
	var waits []time.Duration // how long each dial to the silent node could wait
	silent := freeAddr(t)
	tr := newTestRouter(t, Options{ConnectTimeout: 20 * time.Second, RetryConnectTimeout: 100 * time.Millisecond,
		Quarantine: 20 * time.Millisecond,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if addr == silent {
				d, ok := ctx.Deadline()
				mu.Lock()
				if ok {
					waits = append(waits, time.Until(d))
				} else {
					waits = append(waits, -1)
				}
				mu.Unlock()
				if !ok {
					return nil, errors.New("a dial without a deadline")
				}
				<-ctx.Done()
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
			}
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", silent, "n2", "a", fsm.DynoUp)
	tr.addDyno(app, "web.2", hostPort(echoBackend(t, "live")), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	dials := func() int { mu.Lock(); defer mu.Unlock(); return len(waits) }
	for i := 0; i < 200 && dials() < 3; i++ {
		start := time.Now()
		resp, b := tr.get("demo.localhost", "/")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		// Far below the 20 s ConnectTimeout, whatever the machine.
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("request %d took %s: the silent dyno's connect was not cut short", i, d)
		}
		time.Sleep(25 * time.Millisecond) // past the quarantine
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) < 3 {
		t.Fatalf("the silent dyno was dialed %d times in 200 requests", len(waits))
	}
	for _, w := range waits {
		if w < 0 || w > 100*time.Millisecond {
			t.Fatalf("a dial to the silent dyno could wait %s, want at most RetryConnectTimeout (100ms)", w)
		}
	}
}

// The only dyno gets the full ConnectTimeout (nothing else to try).
func TestLastDynoGetsTheFullConnectTimeout(t *testing.T) {
	got := make(chan time.Duration, 1)
	tr := newTestRouter(t, Options{ConnectTimeout: 30 * time.Second, RetryConnectTimeout: 100 * time.Millisecond,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			w := time.Hour // no deadline of its own: the dialer's timeout applies
			if d, ok := ctx.Deadline(); ok {
				w = time.Until(d)
			}
			select {
			case got <- w:
			default:
			}
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", freeAddr(t), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	resp, body := tr.get("demo.localhost", "/")
	expectError(t, tr, resp, body, 503, H21, "Application error")
	if w := <-got; w < time.Second {
		t.Fatalf("the only dyno's dial could wait %s, not the ConnectTimeout", w)
	}
}

// unackedConn is a connection to a dyno whose node vanished after the
// connect: what is written is never acknowledged, and the kernel fails
// the connection with ETIMEDOUT (TCP_USER_TIMEOUT).
type unackedConn struct{ net.Conn }

func (unackedConn) Write(p []byte) (int, error) { return len(p), nil }
func (unackedConn) Read([]byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
}

func TestUnacknowledgedRequestIsRetriedAndQuarantinesTheNode(t *testing.T) {
	gone := freeAddr(t)
	live := hostPort(echoBackend(t, "live"))
	tr := newTestRouter(t, Options{Quarantine: time.Minute, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == gone {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", live)
			if err != nil {
				return nil, err
			}
			return unackedConn{c}, nil
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", gone, "n2", "a", fsm.DynoUp)
	tr.addDyno(app, "web.2", live, "n1", "a", fsm.DynoUp)
	tr.addDyno(app, "web.3", freeAddr(t), "n2", "a", fsm.DynoUp) // another dyno of the gone node
	tr.waitTable()
	// Requests until web.1 has been tried once (two choices of three).
	web1 := func() *Backend {
		for _, b := range tr.rt.Table().backends {
			if b.Name == "web.1" {
				return b
			}
		}
		t.Fatal("no web.1 in the table")
		return nil
	}
	for i := 0; i < 50 && !web1().quarantined(time.Now().UnixNano()); i++ {
		if resp, b := tr.get("demo.localhost", "/"); resp.StatusCode != 200 || !strings.Contains(b, "live") {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, b)
		}
	}
	tr.expectNodeQuarantined(t, "n2", "stopped acknowledging")
}

// With only the gone dyno, a request that cannot be retried is an H13,
// not an H12 after the 30 s first-byte timeout.
func TestUnacknowledgedRequestWithoutRetryIsH13(t *testing.T) {
	gone := freeAddr(t)
	live := hostPort(echoBackend(t, "live"))
	tr := newTestRouter(t, Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", live)
		if err != nil {
			return nil, err
		}
		return unackedConn{c}, nil
	}})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", gone, "n2", "a", fsm.DynoUp)
	tr.waitTable()
	start := time.Now()
	resp, body := tr.do("POST", "demo.localhost", "/", strings.NewReader("payload"))
	expectError(t, tr, resp, body, 503, H13, "Application error")
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %s: waited for the first-byte timeout", d)
	}
}

// expectNodeQuarantined checks that every dyno of node is quarantined.
func (tr *testRouter) expectNodeQuarantined(t *testing.T, node, why string) {
	t.Helper()
	now := time.Now().UnixNano()
	for _, b := range tr.rt.Table().backends {
		if b.Node == node && !b.quarantined(now) {
			t.Errorf("%s on the node that is %s is not quarantined", b.Name, why)
		}
	}
}
