package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slipwayhq/slipway/cluster"
	"github.com/slipwayhq/slipway/fsm"
)

func TestRoutesToEveryDynoWithHerokuHeaders(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	var names []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("web.%d", i)
		tr.addDyno(app, name, hostPort(echoBackend(t, name)), "n1", "a", fsm.DynoUp)
		names = append(names, name)
	}
	tr.waitTable()
	seen := map[string]int{}
	for i := 0; i < 90; i++ {
		resp, body := tr.get("demo.localhost", "/hello?x=1")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		seen[resp.Header.Get("X-Dyno")]++
	}
	for _, n := range names {
		if seen[n] == 0 {
			t.Fatalf("dyno %s got no requests: %v", n, seen)
		}
	}

	// Headers: a valid request id is kept, X-Forwarded-For appended,
	// hop-by-hop headers (and those Connection names) dropped.
	rid := "abcdefghij0123456789-+/="
	resp, _ := tr.get("Demo.LOCALHOST:80", "/path", "X-Request-Id", rid, "X-Forwarded-For", "203.0.113.9",
		"Connection", "X-Private", "X-Private", "secret", "Keep-Alive", "timeout=5", "Proxy-Authorization", "Basic x",
		"X-Forwarded-Proto", "gopher", "Via", "1.0 cdn")
	h := resp.Header
	check := func(name, want string) {
		t.Helper()
		if got := h.Get("X-Got-" + name); got != want {
			t.Errorf("dyno got %s = %q, want %q", name, got, want)
		}
	}
	check("X-Request-Id", rid)
	check("X-Forwarded-For", "203.0.113.9, 127.0.0.1")
	check("X-Forwarded-Proto", "http")
	_, port, _ := net.SplitHostPort(tr.addr)
	check("X-Forwarded-Port", port)
	check("Via", "1.0 cdn, 1.1 slipway")
	check("Host", "Demo.LOCALHOST:80")
	check("Uri", "/path")
	for _, hop := range []string{"X-Private", "Keep-Alive", "Proxy-Authorization", "Connection"} {
		if v := h.Get("X-Got-" + hop); v != "" {
			t.Errorf("hop-by-hop header %s reached the dyno: %q", hop, v)
		}
	}
	ms, err := strconv.ParseInt(h.Get("X-Got-X-Request-Start"), 10, 64)
	if err != nil || time.Since(time.UnixMilli(ms)) > time.Minute || time.Since(time.UnixMilli(ms)) < 0 {
		t.Errorf("X-Request-Start = %q, want epoch milliseconds", h.Get("X-Got-X-Request-Start"))
	}
	if h.Get("Via") != "1.1 slipway" {
		t.Errorf("response Via = %q", h.Get("Via"))
	}
	// An invalid request id is replaced by a UUID.
	resp, _ = tr.get("demo.localhost", "/", "X-Request-Id", "short")
	if id := resp.Header.Get("X-Got-X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("generated request id %q is not a UUID", id)
	}
	l := tr.sink.waitLine(t, "request_id="+rid)
	re := regexp.MustCompile(`^at=info method=GET path="/path" host=Demo.LOCALHOST:80 request_id=` + regexp.QuoteMeta(rid) +
		` fwd="203.0.113.9, 127.0.0.1" dyno=web\.[123] connect=\d+ms service=\d+ms status=200 bytes=\d+ protocol=http$`)
	if !re.MatchString(l.Text) {
		t.Errorf("log line %q does not match %s", l.Text, re)
	}
	if l.Source != "heroku" || l.Proc != "router" || l.AppID != app.ID || l.AppName != "demo" {
		t.Errorf("log line metadata %+v", l)
	}
}

func TestResponseHopByHopHeadersStripped(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "1")
		w.Header().Set("Keep-Alive", "timeout=2")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		io.WriteString(w, "ok")
	}))
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	resp, body := tr.get("demo.localhost", "/")
	if body != "ok" || resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Fatalf("body %q headers %v", body, resp.Header)
	}
	if c := resp.Header.Values("Set-Cookie"); len(c) != 2 {
		t.Fatalf("Set-Cookie = %v", c)
	}
}

func TestUnknownHostGets404Page(t *testing.T) {
	tr := newTestRouter(t, Options{})
	tr.createApp("demo")
	tr.waitTable()
	for _, host := range []string{"nope.localhost", "[::1]:80", "127.0.0.1", "a..b", "x:y", ""} {
		resp, body := tr.get(host, "/")
		if resp.StatusCode != 404 || !strings.Contains(body, "nothing here") {
			t.Errorf("host %q: status %d body %q", host, resp.StatusCode, body)
		}
	}
	// The router is still up.
	resp, _ := tr.get("demo.localhost", "/")
	if resp.StatusCode != 503 {
		t.Fatalf("demo without dynos: %d", resp.StatusCode)
	}
}

func TestCustomAndWildcardDomains(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	other := tr.createApp("other")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "demo")), "n1", "a", fsm.DynoUp)
	tr.addDyno(other, "web.1", hostPort(echoBackend(t, "other")), "n1", "a", fsm.DynoUp)
	tr.ok(fsm.CmdDomainCreate, fsm.DomainCreate{Domain: fsm.Domain{ID: uuid.NewString(), AppID: app.ID, Hostname: "www.example.com"}})
	tr.ok(fsm.CmdDomainCreate, fsm.DomainCreate{Domain: fsm.Domain{ID: uuid.NewString(), AppID: other.ID, Hostname: "*.example.com"}})
	tr.waitTable()
	for host, want := range map[string]string{"www.example.com": "demo", "WWW.Example.COM.": "demo", "api.example.com": "other",
		"a.b.example.com": "other", "other.localhost": "other"} {
		resp, _ := tr.get(host, "/")
		if got := resp.Header.Get("X-Dyno"); got != want {
			t.Errorf("%s routed to %q, want %q", host, got, want)
		}
	}
	if resp, _ := tr.get("example.com", "/"); resp.StatusCode != 404 {
		t.Errorf("bare example.com: %d", resp.StatusCode)
	}
}

// hcase is one H-code scenario.
func expectError(t *testing.T, tr *testRouter, resp *http.Response, body string, status int, code Code, page string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d (body %q)", code, resp.StatusCode, status, body)
	}
	if page != "" && !strings.Contains(body, page) {
		t.Fatalf("%s: page %q does not contain %q", code, body, page)
	}
	info := code.info()
	tr.sink.waitLine(t, "at="+info.level+" code="+string(code)+` desc="`+info.desc+`"`, "status="+strconv.Itoa(info.status))
}

func TestH14NoWebDynosAndH10Crashed(t *testing.T) {
	tr := newTestRouter(t, Options{})
	tr.createApp("empty")
	crashed := tr.createApp("crashy")
	tr.addDyno(crashed, "web.1", freeAddr(t), "n1", "a", fsm.DynoCrashed)
	worker := tr.createApp("worker")
	tr.addDyno(worker, "worker.1", freeAddr(t), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	resp, body := tr.get("empty.localhost", "/")
	expectError(t, tr, resp, body, 503, H14, "Application error")
	l := tr.sink.waitLine(t, "code=H14", "host=empty.localhost")
	if !regexp.MustCompile(`^at=error code=H14 desc="No web processes running" method=GET path="/" host=empty.localhost request_id=\S+ fwd="127.0.0.1" dyno= connect= service= status=503 bytes=\d+ protocol=http$`).MatchString(l.Text) {
		t.Errorf("H14 line %q", l.Text)
	}
	resp, body = tr.get("crashy.localhost", "/")
	expectError(t, tr, resp, body, 503, H10, "Application error")
	resp, body = tr.get("worker.localhost", "/")
	expectError(t, tr, resp, body, 503, H14, "Application error")
}

func TestH80MaintenanceAndCustomPages(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	on := true
	tr.ok(fsm.CmdAppUpdate, fsm.AppUpdate{AppID: app.ID, Maintenance: &on})
	tr.waitTable()
	resp, body := tr.get("demo.localhost", "/")
	expectError(t, tr, resp, body, 503, H80, "Offline for maintenance")
	tr.setConfig(app, "MAINTENANCE_PAGE_URL", "https://pages.example.com/maint.html", "ERROR_PAGE_URL", "https://pages.example.com/err.html?a=1&b=2")
	tr.waitTable()
	resp, body = tr.get("demo.localhost", "/")
	expectError(t, tr, resp, body, 503, H80, `<iframe src="https://pages.example.com/maint.html">`)
	off := false
	tr.ok(fsm.CmdAppUpdate, fsm.AppUpdate{AppID: app.ID, Maintenance: &off})
	tr.waitTable()
	if resp, _ := tr.get("demo.localhost", "/"); resp.StatusCode != 200 {
		t.Fatalf("after maintenance off: %d", resp.StatusCode)
	}
	empty := tr.createApp("empty")
	tr.setConfig(empty, "ERROR_PAGE_URL", "https://pages.example.com/err.html?a=1&b=2")
	tr.waitTable()
	resp, body = tr.get("empty.localhost", "/")
	expectError(t, tr, resp, body, 503, H14, `<iframe src="https://pages.example.com/err.html?a=1&amp;b=2">`)
}

func TestH11BacklogTooDeep(t *testing.T) {
	tr := newTestRouter(t, Options{BacklogPerDyno: 2})
	app := tr.createApp("demo")
	release := make(chan struct{})
	var arrived atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
		io.WriteString(w, "done")
	}))
	defer s.Close()
	defer close(release)
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+tr.addr+"/", nil)
			req.Host = "demo.localhost"
			if resp, err := tr.client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	if !eventually(10*time.Second, func() bool { return arrived.Load() == 2 }) {
		t.Fatal("held requests did not arrive")
	}
	resp, body := tr.get("demo.localhost", "/")
	expectError(t, tr, resp, body, 503, H11, "Application error")
	release <- struct{}{}
	release <- struct{}{}
	wg.Wait()
}

func TestH12RequestTimeout(t *testing.T) {
	tr := newTestRouter(t, Options{FirstByteTimeout: 300 * time.Millisecond})
	app := tr.createApp("demo")
	stop := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(stop)
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	resp, body := tr.get("demo.localhost", "/slow")
	expectError(t, tr, resp, body, 503, H12, "Application error")
	tr.sink.waitLine(t, "code=H12", "dyno=web.1", "service=300ms")
}

// rawBackend is a dyno that runs f on each accepted connection.
func rawBackend(t *testing.T, f func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); f(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// readRequestHead consumes one request head from a raw connection.
func readRequestHead(c net.Conn) *bufio.Reader {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err == nil {
		io.Copy(io.Discard, req.Body)
	}
	return br
}

func TestBackendFailuresH13H15H17H18(t *testing.T) {
	tr := newTestRouter(t, Options{IdleTimeout: 300 * time.Millisecond})
	cases := []struct {
		name   string
		code   Code
		status int // status the client sees (0: connection dropped)
		f      func(c net.Conn)
	}{
		{"closes", H13, 503, func(c net.Conn) { readRequestHead(c) }},
		{"garbage", H17, 503, func(c net.Conn) { readRequestHead(c); io.WriteString(c, "FOO BAR\r\n\r\n") }},
		{"stalls", H15, 0, func(c net.Conn) {
			readRequestHead(c)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
			time.Sleep(2 * time.Second)
		}},
		{"cut", H18, 0, func(c net.Conn) {
			readRequestHead(c)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhalf\r\n")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := tr.createApp(tc.name)
			tr.addDyno(app, "web.1", rawBackend(t, tc.f), "n1", "a", fsm.DynoUp)
			tr.waitTable()
			req, _ := http.NewRequest("GET", "http://"+tr.addr+"/", nil)
			req.Host = tc.name + ".localhost"
			resp, err := tr.client.Do(req)
			if tc.status != 0 {
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				expectError(t, tr, resp, string(body), tc.status, tc.code, "Application error")
				return
			}
			// The response started: the client must see it cut short.
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Fatalf("%s: the client got a complete response", tc.code)
			}
			info := tc.code.info()
			tr.sink.waitLine(t, "code="+string(tc.code), `desc="`+info.desc+`"`, "host="+tc.name+".localhost", "status=200")
		})
	}
	l := tr.sink.waitLine(t, "code=H18")
	if !strings.HasPrefix(l.Text, "sock=backend at=error code=H18") {
		t.Errorf("H18 line %q", l.Text)
	}
}

func TestH19H21ConnectFailures(t *testing.T) {
	blackhole := freeAddr(t)
	tr := newTestRouter(t, Options{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == blackhole {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}})
	refused := tr.createApp("refused")
	tr.addDyno(refused, "web.1", freeAddr(t), "n1", "a", fsm.DynoUp)
	tr.addDyno(refused, "web.2", freeAddr(t), "n1", "a", fsm.DynoUp)
	slow := tr.createApp("slow")
	tr.addDyno(slow, "web.1", blackhole, "n1", "a", fsm.DynoUp)
	tr.waitTable()
	resp, body := tr.get("refused.localhost", "/")
	expectError(t, tr, resp, body, 503, H21, "Application error")
	resp, body = tr.get("slow.localhost", "/")
	expectError(t, tr, resp, body, 503, H19, "Application error")
}

func TestH26RequestLimits(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	resp, body := tr.get("demo.localhost", "/", "X-Big", strings.Repeat("a", 8200))
	expectError(t, tr, resp, body, 400, H26, "Bad Request")
	resp, body = tr.get("demo.localhost", "/"+strings.Repeat("p", 8200))
	expectError(t, tr, resp, body, 400, H26, "Bad Request")
	// Still serving.
	if resp, _ := tr.get("demo.localhost", "/"); resp.StatusCode != 200 {
		t.Fatalf("after bad requests: %d", resp.StatusCode)
	}
}

// rawRequest writes raw bytes to the router and returns the connection.
func (tr *testRouter) raw(t *testing.T, s string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", tr.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func TestH27H28ClientInterruptedAndIdle(t *testing.T) {
	tr := newTestRouter(t, Options{IdleTimeout: 300 * time.Millisecond})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	c, _ := tr.raw(t, "POST /upload HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 1000\r\n\r\nonly-a-little")
	time.Sleep(50 * time.Millisecond)
	c.Close()
	l := tr.sink.waitLine(t, "code=H27", "path=\"/upload\"")
	if !strings.HasPrefix(l.Text, "sock=client at=warning code=H27") || !strings.Contains(l.Text, "status=499") {
		t.Errorf("H27 line %q", l.Text)
	}
	c2, br := tr.raw(t, "POST /idle HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 1000\r\n\r\nonly-a-little")
	defer c2.Close()
	tr.sink.waitLine(t, "code=H28", `desc="Client Connection Idle"`, "path=\"/idle\"", "status=499")
	// The router dropped the idle client.
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(br); err != nil && isTimeout(err) {
		t.Fatal("the idle client's connection stayed open")
	}
}

type panicForwarder struct{}

func (panicForwarder) Route(*App) (string, bool) { panic("boom") }

func TestH99PlatformErrorAndForwardSeam(t *testing.T) {
	tr := newTestRouter(t, Options{Forwarder: panicForwarder{}})
	res := tr.ok(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: uuid.NewString(), Name: "remote", Region: "eu"},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "remote.localhost"})
	_ = res
	tr.waitTable()
	resp, body := tr.get("remote.localhost", "/")
	expectError(t, tr, resp, body, 503, H99, "Application error")
}

type recordingForwarder struct {
	addr string
	got  atomic.Value
}

func (f *recordingForwarder) Route(app *App) (string, bool) {
	f.got.Store(app.Name + " " + app.Region)
	return f.addr, true
}

func TestForwardsAppsHomedElsewhere(t *testing.T) {
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
		w.WriteHeader(299)
	}))
	defer remote.Close()
	fw := &recordingForwarder{addr: hostPort(remote)}
	tr := newTestRouter(t, Options{Forwarder: fw})
	tr.ok(fsm.CmdAppCreate, fsm.AppCreate{App: fsm.App{ID: uuid.NewString(), Name: "remote", Region: "eu"},
		ReleaseID: uuid.NewString(), DefaultDomainID: uuid.NewString(), DefaultHostname: "remote.localhost"})
	tr.createApp("local")
	tr.waitTable()
	if resp, _ := tr.get("remote.localhost", "/"); resp.StatusCode != 299 || fw.got.Load() != "remote eu" || resp.Header.Get("X-Host") != "remote.localhost" {
		t.Fatalf("status %d forwarded %v", resp.StatusCode, fw.got.Load())
	}
	tr.sink.waitLine(t, "host=remote.localhost", "dyno=router.eu", "status=299")
	if resp, _ := tr.get("local.localhost", "/"); resp.StatusCode != 503 {
		t.Fatalf("a local app without dynos must get H14, not be forwarded: %d", resp.StatusCode)
	}
}

func TestRetriesConnectErrorsOnAnotherDyno(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", freeAddr(t), "n1", "a", fsm.DynoUp)
	tr.addDyno(app, "web.2", hostPort(echoBackend(t, "web.2")), "n1", "a", fsm.DynoUp)
	tr.addDyno(app, "web.3", freeAddr(t), "n2", "b", fsm.DynoUp)
	tr.waitTable()
	for i := 0; i < 30; i++ {
		resp, body := tr.get("demo.localhost", "/")
		if resp.StatusCode != 200 || resp.Header.Get("X-Dyno") != "web.2" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// The dead local dyno is quarantined (web.3, in another zone, loses
	// every tie to web.2 and is never tried).
	now := time.Now().UnixNano()
	for _, b := range tr.rt.Table().backends {
		if q := b.quarantined(now); b.Name != "web.3" && q != (b.Name == "web.1") {
			t.Errorf("%s quarantined = %v", b.Name, q)
		}
	}
}

func TestKillingADynoDuringAStreamFailsNoRequest(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	var servers []*httptest.Server
	for i := 1; i <= 3; i++ {
		s := echoBackend(t, fmt.Sprintf("web.%d", i))
		servers = append(servers, s)
		tr.addDyno(app, fmt.Sprintf("web.%d", i), hostPort(s), "n1", "a", fsm.DynoUp)
	}
	tr.waitTable()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+tr.addr+"/", nil)
				req.Host = "demo.localhost"
				resp, err := tr.client.Do(req)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	eventually(10*time.Second, func() bool { return ok.Load() > 300 })
	// Kill web.2: it stops accepting and drops its connections (what the
	// router sees of a kill -9: refused connects, closed keep-alives).
	servers[1].Listener.Close()
	servers[1].CloseClientConnections()
	before := ok.Load()
	eventually(10*time.Second, func() bool { return ok.Load() > before+600 })
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed (first: %v)", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
}

type fakeMembers struct {
	mu sync.Mutex
	m  []cluster.Member
}

func (f *fakeMembers) Members() []cluster.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cluster.Member(nil), f.m...)
}

func (f *fakeMembers) set(m ...cluster.Member) {
	f.mu.Lock()
	f.m = m
	f.mu.Unlock()
}

func TestDeadNodesDynosLeaveTheTableAtOnce(t *testing.T) {
	fm := &fakeMembers{}
	fm.set(cluster.Member{Name: "n1", State: cluster.StateAlive}, cluster.Member{Name: "n2", State: cluster.StateAlive})
	tr := newTestRouter(t, Options{Members: fm, MembersPoll: 20 * time.Millisecond})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	tr.addDyno(app, "web.2", hostPort(echoBackend(t, "web.2")), "n2", "b", fsm.DynoUp)
	lonely := tr.createApp("lonely")
	tr.addDyno(lonely, "web.1", hostPort(echoBackend(t, "lonely")), "n2", "b", fsm.DynoUp)
	tr.waitTable()
	count := func(app string) int { return len(tr.rt.Table().Lookup(app + ".localhost").Backends) }
	if count("demo") != 2 {
		t.Fatalf("backends = %d", count("demo"))
	}
	fm.set(cluster.Member{Name: "n1", State: cluster.StateAlive}, cluster.Member{Name: "n2", State: cluster.StateDead})
	if !eventually(5*time.Second, func() bool { return count("demo") == 1 }) {
		t.Fatal("n2's dyno stayed in the table")
	}
	// An app whose only dynos are on the dead node keeps them (this node
	// may be the one cut off; connect errors will tell).
	if count("lonely") != 1 {
		t.Fatalf("lonely backends = %d", count("lonely"))
	}
	for i := 0; i < 20; i++ {
		if resp, _ := tr.get("demo.localhost", "/"); resp.Header.Get("X-Dyno") != "web.1" {
			t.Fatalf("routed to %q", resp.Header.Get("X-Dyno"))
		}
	}
	fm.set(cluster.Member{Name: "n1", State: cluster.StateAlive}, cluster.Member{Name: "n2", State: cluster.StateAlive})
	if !eventually(5*time.Second, func() bool { return count("demo") == 2 }) {
		t.Fatal("n2's dyno did not come back")
	}
}

func TestExpect100ContinueAndOtherExpectations(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	c, br := tr.raw(t, "POST /up HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
		t.Fatalf("first line %q, %v", line, err)
	}
	br.ReadString('\n') // blank line
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "web.1:hello" || resp.Header.Get("X-Got-Expect") != "" {
		t.Fatalf("status %d body %q expect forwarded %q", resp.StatusCode, body, resp.Header.Get("X-Got-Expect"))
	}
	_, br = tr.raw(t, "POST /up HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 5\r\nExpect: teapot\r\n\r\nhello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusExpectationFailed {
		t.Fatalf("Expect: teapot → %v %v", resp, err)
	}
}

func TestChunkedBodiesAndStreaming(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	step := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-step
			io.WriteString(w, "data: two\n\n")
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "te=%v len=%d body=%s", r.TransferEncoding, r.ContentLength, b)
	}))
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	pr, pw := io.Pipe()
	go func() { io.WriteString(pw, "chunk-a,"); io.WriteString(pw, "chunk-b"); pw.Close() }()
	_, body := tr.do("POST", "demo.localhost", "/", pr)
	if body != "te=[chunked] len=-1 body=chunk-a,chunk-b" {
		t.Fatalf("chunked upload: %q", body)
	}
	// A streamed response reaches the client before it ends.
	req, _ := http.NewRequest("GET", "http://"+tr.addr+"/sse", nil)
	req.Host = "demo.localhost"
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	close(step)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestHeadAndNoContentResponsesReuseConnections(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			return
		}
		w.Header().Set("Content-Length", "11")
		io.WriteString(w, "hello world")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	for i := 0; i < 20; i++ {
		for _, m := range []string{"HEAD", "GET"} {
			resp, body := tr.do(m, "demo.localhost", "/", nil)
			if resp.StatusCode != 200 || (m == "GET" && body != "hello world") || (m == "HEAD" && body != "") {
				t.Fatalf("%s: %d %q", m, resp.StatusCode, body)
			}
		}
		if resp, _ := tr.get("demo.localhost", "/204"); resp.StatusCode != 204 {
			t.Fatalf("204: %d", resp.StatusCode)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Fatalf("the router opened %d connections to the dyno for sequential requests", n)
	}
}

func TestMalformedRequestsAndSlowloris(t *testing.T) {
	tr := newTestRouter(t, Options{ReadHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 64 << 10})
	app := tr.createApp("demo")
	tr.addDyno(app, "web.1", hostPort(echoBackend(t, "web.1")), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	for _, raw := range []string{
		"GARBAGE\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: demo.localhost\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: demo.localhost\r\nBad Header\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: demo.localhost\r\nX: " + strings.Repeat("y", 70<<10) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: demo.localhost\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
		"CONNECT demo.localhost:443 HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
	} {
		c, br := tr.raw(t, raw)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode < 400 {
			t.Errorf("%.40q: status %d", raw, resp.StatusCode)
		}
		if err != nil && isTimeout(err) {
			t.Errorf("%.40q: no answer", raw)
		}
	}
	// Slowloris: a head that never ends is cut off.
	c, br := tr.raw(t, "GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Slow: ")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err := io.ReadAll(br)
	if err != nil && isTimeout(err) {
		t.Fatalf("a slowloris client was not disconnected after %v", time.Since(start))
	}
	if resp, _ := tr.get("demo.localhost", "/"); resp.StatusCode != 200 {
		t.Fatalf("router unhealthy after bad input: %d", resp.StatusCode)
	}
}

func TestLogLineEscapesFields(t *testing.T) {
	tr := newTestRouter(t, Options{})
	tr.createApp("demo")
	tr.waitTable()
	tr.get("demo.localhost", `/a"b\c`)
	l := tr.sink.waitLine(t, "code=H14")
	if !strings.Contains(l.Text, `path="/a%22b%5Cc"`) {
		t.Fatalf("path not escaped: %q", l.Text)
	}
}

func TestShutdownWaitsForInflightRequests(t *testing.T) {
	tr := newTestRouter(t, Options{})
	app := tr.createApp("demo")
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished")
	}))
	defer s.Close()
	tr.addDyno(app, "web.1", hostPort(s), "n1", "a", fsm.DynoUp)
	tr.waitTable()
	got := make(chan string, 1)
	go func() {
		_, body := tr.get("demo.localhost", "/")
		got <- body
	}()
	eventually(5*time.Second, func() bool { return app != nil && tr.rt.Table().Lookup("demo.localhost").state.inflight.Load() == 1 })
	done := make(chan error, 1)
	go func() { done <- tr.rt.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if b := <-got; b != "finished" {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// Until the node's replica has caught up, a Host no app has is a 503 (the
// app may exist), then a 404.
func TestUnknownHostBeforeSyncIs503(t *testing.T) {
	var synced atomic.Bool
	tr := newTestRouter(t, Options{Synced: synced.Load})
	tr.waitTable()
	resp, body := tr.get("nope.localhost", "/")
	if resp.StatusCode != 503 || !strings.Contains(body, "catching up") {
		t.Fatalf("before sync: %d %q", resp.StatusCode, body)
	}
	synced.Store(true)
	resp, body = tr.get("nope.localhost", "/")
	if resp.StatusCode != 404 || !strings.Contains(body, "No app is configured") {
		t.Fatalf("after sync: %d %q", resp.StatusCode, body)
	}
	// Once synced, always synced.
	synced.Store(false)
	if resp, _ = tr.get("nope.localhost", "/"); resp.StatusCode != 404 {
		t.Fatalf("after sync, then not: %d", resp.StatusCode)
	}
}
