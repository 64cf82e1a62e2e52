package router

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

func mkBackends(zones ...string) []*Backend {
	var out []*Backend
	for i, z := range zones {
		out = append(out, &Backend{key: string(rune('a' + i)), Name: "web." + string(rune('1'+i)), Zone: z})
	}
	return out
}

func TestPickPowerOfTwoChoices(t *testing.T) {
	bs := mkBackends("a", "b", "a")
	bs[0].inflight.Store(5)
	bs[1].inflight.Store(1)
	bs[2].inflight.Store(3)
	// With every pair drawn, the less loaded of the two always wins.
	counts := map[string]int{}
	for i := uint64(0); i < 3000; i++ {
		r := i*0x9e3779b97f4a7c15 + 12345
		r ^= r >> 29
		b := pick(bs, nil, "a", 0, r*0xbf58476d1ce4e5b9)
		counts[b.Name]++
	}
	if counts["web.1"] != 0 {
		t.Fatalf("the most loaded backend was picked: %v", counts)
	}
	if counts["web.2"] <= counts["web.3"] {
		t.Fatalf("the least loaded backend should win most: %v", counts)
	}
}

func TestPickPrefersLocalZoneOnTies(t *testing.T) {
	bs := mkBackends("b", "a")
	for i := uint64(0); i < 100; i++ {
		if b := pick(bs, nil, "a", 0, i*0x9e3779b97f4a7c15); b.Zone != "a" {
			t.Fatalf("picked zone %s on a tie", b.Zone)
		}
	}
	// A remote dyno with fewer requests in flight still wins.
	bs[1].inflight.Store(2)
	if b := pick(bs, nil, "a", 0, 42); b.Zone != "b" {
		t.Fatalf("picked the busier local dyno")
	}
}

func TestPickSkipsQuarantinedAndTried(t *testing.T) {
	bs := mkBackends("a", "a", "a", "a")
	now := time.Now().UnixNano()
	bs[0].quarantine(now, time.Second)
	bs[1].quarantine(now, time.Second)
	for i := uint64(0); i < 200; i++ {
		b := pick(bs, []*Backend{bs[2]}, "a", now, i*0x9e3779b97f4a7c15)
		if b != bs[3] {
			t.Fatalf("picked %s", b.Name)
		}
	}
	// Everything quarantined: still try (untried) ones rather than fail.
	bs[2].quarantine(now, time.Second)
	bs[3].quarantine(now, time.Second)
	if b := pick(bs, []*Backend{bs[0]}, "a", now, 7); b == nil || b == bs[0] {
		t.Fatalf("picked %v with everything quarantined", b)
	}
	// Quarantine expires.
	if b := pick(bs[:1], nil, "a", now+int64(2*time.Second), 7); b != bs[0] {
		t.Fatal("expired quarantine still applies")
	}
	if b := pick(bs, bs, "a", now, 7); b != nil {
		t.Fatal("picked a tried backend")
	}
	if pick(nil, nil, "a", now, 1) != nil {
		t.Fatal("picked from nothing")
	}
}

func TestBuildTable(t *testing.T) {
	reg := newRegistry(poolOptions{maxIdle: 1})
	app := &fsm.App{ID: "app1", Name: "demo", Region: "local"}
	dyno := func(id, name, typ, state, node string, port int) *fsm.Dyno {
		return &fsm.Dyno{ID: id, AppID: "app1", Name: name, Type: typ, State: state, Node: node, Addr: "10.0.0.1", Port: port}
	}
	in := &Input{
		Apps:    []*fsm.App{app},
		Domains: []*fsm.Domain{{AppID: "app1", Hostname: "demo.localhost"}, {AppID: "app1", Hostname: "*.Example.com"}},
		Dynos: []*fsm.Dyno{
			dyno("d1", "web.1", "web", fsm.DynoUp, "n1", 1),
			dyno("d2", "web.2", "web", fsm.DynoStarting, "n1", 2),
			dyno("d3", "worker.1", "worker", fsm.DynoUp, "n1", 3),
			dyno("d4", "web.3", "web", fsm.DynoUp, "n2", 4),
			dyno("d5", "web.4", "web", fsm.DynoCrashed, "n1", 5),
		},
		Pages: map[string]Pages{"app1": {Error: "https://x/e"}},
	}
	t1 := reg.build(in, buildOptions{})
	a := t1.Lookup("demo.localhost")
	if a == nil || len(a.Backends) != 2 || a.Backlog != 400 || a.Crashed || a.Pages.Error != "https://x/e" {
		t.Fatalf("app entry %+v", a)
	}
	if t1.Lookup("API.example.com:8080") != a || t1.Lookup("example.com") != nil {
		t.Fatal("wildcard lookup")
	}
	// Backends keep their identity (counters, pools) across tables.
	a.Backends[0].inflight.Store(7)
	in.Down = map[string]bool{"n2": true}
	t2 := reg.build(in, buildOptions{BacklogPerDyno: 10})
	b := t2.Lookup("demo.localhost")
	if len(b.Backends) != 1 || b.Backends[0].inflight.Load() != 7 || b.Backlog != 10 || b.state != a.state {
		t.Fatalf("rebuilt entry %+v", b)
	}
	// d4 left the table: retired.
	if !a.Backends[1].retired.Load() {
		t.Fatal("a backend that left the table was not retired")
	}
	// Only crashed web dynos left: H10.
	in.Dynos = in.Dynos[4:]
	if t3 := reg.build(in, buildOptions{}); !t3.Lookup("demo.localhost").Crashed {
		t.Fatal("crashed app not flagged")
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{"Demo.Localhost": "demo.localhost", "demo.localhost:5000": "demo.localhost",
		"demo.localhost.": "demo.localhost", "a_b.example.com": "a_b.example.com"} {
		if got, ok := normalizeHost(in); !ok || got != want {
			t.Errorf("normalizeHost(%q) = %q, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", ":80", "[::1]", "a b", "x:y", "demo.localhost:80x", strings.Repeat("a", 254), "a\x00b"} {
		if got, ok := normalizeHost(bad); ok {
			t.Errorf("normalizeHost(%q) = %q, want rejection", bad, got)
		}
	}
}

func headerOf(rh *respHead) http.Header {
	h := http.Header{}
	fieldsToHeader(rh.fields, h)
	return h
}

func TestParseHead(t *testing.T) {
	var rh respHead
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n" +
		"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n\r\n"
	if err := parseHead([]byte(head), &rh); err != nil {
		t.Fatal(err)
	}
	h := headerOf(&rh)
	if rh.status != 200 || rh.contentLength != 5 || rh.chunked || !rh.reusable() || h.Get("Content-Type") != "text/plain" ||
		len(h["Set-Cookie"]) != 2 || h.Get("X-Drop") != "" || h.Get("Keep-Alive") != "" || h.Get("Connection") != "" || h.Get("Content-Length") != "" {
		t.Fatalf("rh %+v h %v", rh, h)
	}
	if err := parseHead([]byte("HTTP/1.0 404\nTransfer-Encoding: gzip, chunked\nContent-Length: 3\n\n"), &rh); err != nil {
		t.Fatal(err)
	}
	if rh.status != 404 || !rh.chunked || rh.contentLength != -1 || rh.reusable() || len(rh.fields) != 0 {
		t.Fatalf("rh %+v", rh)
	}
	for _, bad := range []string{"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "garbage\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n"} {
		if err := parseHead([]byte(bad), &rh); err == nil {
			t.Errorf("parseHead(%q) accepted", bad)
		}
	}
}

func TestParseRequest(t *testing.T) {
	var q h1req
	head := "POST /p?q=1 HTTP/1.1\r\nHost: Demo.localhost\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n" +
		"Content-Length: 12\r\nExpect: 100-continue\r\nX-Request-Id: abc\r\nVia: 1.0 cdn\r\nX-App: ok\r\n\r\n"
	if err := parseRequest([]byte(head), &q); err != nil {
		t.Fatal(err)
	}
	if string(q.method) != "POST" || string(q.target) != "/p?q=1" || string(q.host) != "Demo.localhost" || q.contentLength != 12 ||
		!q.expectContinue || !q.connClose || string(q.rid) != "abc" || q.bad {
		t.Fatalf("%+v", q)
	}
	kinds := map[string]uint8{}
	for _, f := range q.fields {
		kinds[string(f.k)] = f.kind
	}
	if kinds["X-Hop"] != fieldSkip || kinds["X-App"] != fieldForward || kinds["X-Forwarded-For"] != fieldXFF || kinds["Via"] != fieldVia || kinds["Host"] != fieldSkip {
		t.Fatalf("field kinds %v", kinds)
	}
	if err := parseRequest([]byte("GET http://Other.example.com/x HTTP/1.1\r\nHost: demo.localhost\r\n\r\n"), &q); err != nil ||
		string(q.host) != "Other.example.com" || string(q.target) != "/x" {
		t.Fatalf("absolute form: %v %q %q", err, q.host, q.target)
	}
	if err := parseRequest([]byte("GET / HTTP/1.0\r\n\r\n"), &q); err != nil || !q.http10 {
		t.Fatalf("HTTP/1.0 without Host: %v", err)
	}
	if err := parseRequest([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("v", 8200)+"\r\n\r\n"), &q); err != nil || !q.bad {
		t.Fatalf("over the limits: %v bad=%v", err, q.bad)
	}
	for raw, want := range map[string]error{
		"GET / HTTP/1.1\r\n\r\n":                                                                errBadRequest, // no Host
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n":                                          errBadRequest,
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n":                                                     errVersion,
		"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n":                                                  errBadRequest,
		"G(T / HTTP/1.1\r\nHost: a\r\n\r\n":                                                     errBadRequest,
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n": errBadRequest,
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n":                         errNotImplemented,
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n":          errBadRequest,
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n":                                   errExpectation,
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n":                                          errBadRequest,
		"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n":                                          errBadRequest,
	} {
		if err := parseRequest([]byte(raw), &q); err != want {
			t.Errorf("parseRequest(%q) = %v, want %v", raw, err, want)
		}
	}
}

func TestChunkRelay(t *testing.T) {
	in := "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	br := bufio.NewReaderSize(&slowReader{s: in}, 16)
	n, rerr, werr := relayChunks(bw, br, true, func() error { return nil })
	bw.Flush()
	if rerr != nil || werr != nil || n != 9 || out.String() != in[:len(in)-4] {
		t.Fatalf("raw relay: %d %v %v %q", n, rerr, werr, out.String())
	}
	out.Reset()
	br = bufio.NewReaderSize(strings.NewReader(in), 64)
	n, rerr, _ = relayChunks(bw, br, false, func() error { return nil })
	bw.Flush()
	if rerr != nil || out.String() != "Wikipedia" {
		t.Fatalf("decoded relay: %v %q", rerr, out.String())
	}
	if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
		t.Fatalf("relay read past the body: %q", rest)
	}
	for _, bad := range []string{"zz\r\n", "4\r\nWikiXX", "4\r\nWi"} {
		_, rerr, _ := relayChunks(bw, bufio.NewReader(strings.NewReader(bad)), true, func() error { return nil })
		if rerr == nil {
			t.Errorf("relayChunks(%q) accepted", bad)
		}
	}
}

func TestPeekHead(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"), 16)
	if _, err := peekHead(br); err != errHeadTooLarge {
		t.Fatalf("head over the buffer: %v", err)
	}
	br = bufio.NewReaderSize(&slowReader{s: "HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"}, 4096)
	head, err := peekHead(br)
	if err != nil || string(head) != "HTTP/1.1 200 OK\r\nA: b\r\n\r\n" {
		t.Fatalf("%q %v", head, err)
	}
	br = bufio.NewReaderSize(strings.NewReader("HTTP/1.1 200"), 4096)
	if _, err := peekHead(br); err != errMalformed {
		t.Fatalf("truncated head: %v", err)
	}
}

// slowReader returns one byte per Read.
type slowReader struct{ s string }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, bytes.ErrTooLarge
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestRequestID(t *testing.T) {
	rq := &reqState{}
	rq.setRequestID([]byte("0123456789abcdefghij"), 1)
	if string(rq.rid) != "0123456789abcdefghij" {
		t.Fatal("valid id not kept")
	}
	for _, bad := range []struct {
		v string
		n int
	}{{"", 0}, {"short", 1}, {strings.Repeat("a", 201), 1}, {"0123456789abcdefghij!", 1}, {"0123456789abcdefghij", 2}} {
		rq.setRequestID([]byte(bad.v), bad.n)
		if len(rq.rid) != 36 || rq.rid[14] != '4' {
			t.Fatalf("id for %q: %q", bad.v, rq.rid)
		}
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"demo.localhost", "Demo.LOCALHOST:80", "[::1]:80", "a..b.", "*.example.com", "x:y"} {
		f.Add(s)
	}
	tbl := newRegistry(poolOptions{}).build(&Input{Apps: []*fsm.App{{ID: "a", Name: "a"}},
		Domains: []*fsm.Domain{{AppID: "a", Hostname: "a.localhost"}, {AppID: "a", Hostname: "*.example.com"}}}, buildOptions{})
	f.Fuzz(func(t *testing.T, host string) {
		h, ok := normalizeHost(host)
		if ok {
			if h != strings.ToLower(h) || strings.ContainsAny(h, ": \r\n\t") || h == "" {
				t.Fatalf("normalizeHost(%q) = %q", host, h)
			}
			if h2, ok2 := normalizeHost(h); !ok2 || h2 != h {
				t.Fatalf("not idempotent: %q -> %q -> %q", host, h, h2)
			}
		}
		_ = tbl.Lookup(host)
		_ = tbl.certs.lookup(host)
	})
}

func FuzzParseHead(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HTTP/1.0 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 204\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		br := bufio.NewReaderSize(strings.NewReader(s), 4096)
		head, err := peekHead(br)
		if err != nil {
			return
		}
		var rh respHead
		if err := parseHead(head, &rh); err != nil {
			return
		}
		h := headerOf(&rh)
		if rh.status < 100 || rh.status > 999 {
			t.Fatalf("status %d", rh.status)
		}
		for k, vv := range h {
			if !validToken(k) {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vv {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("header %s value %q", k, v)
				}
			}
		}
		if (rh.chunked || rh.otherTE) && rh.contentLength != -1 {
			t.Fatal("both a transfer coding and a length")
		}
	})
}

func FuzzRequestID(f *testing.F) {
	f.Add("0123456789abcdefghij")
	f.Add("bad id")
	f.Fuzz(func(t *testing.T, s string) {
		rq := &reqState{}
		rq.setRequestID([]byte(s), 1)
		if validRequestID(s) != (string(rq.rid) == s) {
			t.Fatalf("id %q -> %q", s, rq.rid)
		}
		for _, c := range rq.rid {
			if c < '!' || c > '~' {
				t.Fatalf("request id byte %q", c)
			}
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
		"POST /x?y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"GET http://a.example.com/p HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\nX-Request-Id: 0123456789abcdefghij\r\n\r\n",
		"PUT / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 5\n\n",
	} {
		f.Add(s)
	}
	tbl := newRegistry(poolOptions{}).build(&Input{Apps: []*fsm.App{{ID: "a", Name: "a"}},
		Domains: []*fsm.Domain{{AppID: "a", Hostname: "a.localhost"}}}, buildOptions{})
	f.Fuzz(func(t *testing.T, s string) {
		br := bufio.NewReaderSize(strings.NewReader(s), 4096)
		head, err := peekHead(br)
		if err != nil {
			return
		}
		var q h1req
		if err := parseRequest(head, &q); err != nil {
			return
		}
		if len(q.method) == 0 || len(q.target) == 0 || !validToken(q.method) {
			t.Fatalf("accepted method %q target %q", q.method, q.target)
		}
		if q.chunked && q.contentLength > 0 {
			t.Fatal("both framings accepted")
		}
		for _, f := range q.fields {
			if !validToken(f.k) || bytes.ContainsAny(f.v, "\r\n\x00") {
				t.Fatalf("field %q: %q", f.k, f.v)
			}
		}
		_ = tbl.lookup(q.host)
		// What reaches the dyno parses as one request (the target is the
		// client's, passed as is; net/http is stricter about it).
		q.target = []byte("/")
		rq := &reqState{req: q, fe: &frontend{proto: "http", port: "80"}, fwd: []byte("127.0.0.1")}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		hc := &h1conn{rt: &Router{via: "1.1 slipway", now: time.Now}}
		hc.writeDynoHead(bw, rq)
		bw.Flush()
		req, err := http.ReadRequest(bufio.NewReader(&out))
		if err != nil {
			t.Fatalf("the dyno would get an unreadable request %q: %v", out.String(), err)
		}
		if req.Header.Get("X-Forwarded-For") != "127.0.0.1" && !bytes.Contains(out.Bytes(), []byte("X-Forwarded-For: ")) {
			t.Fatalf("no X-Forwarded-For in %q", out.String())
		}
	})
}

// Each quarantine since the last successful connect lasts twice as long
// as the one before, up to 8 × the base; a connect clears the strikes.
func TestQuarantineBacksOff(t *testing.T) {
	b := &Backend{}
	base := time.Second
	now := int64(1_000_000_000_000)
	for i, want := range []time.Duration{1, 2, 4, 8, 8} {
		b.quarantine(now, base)
		if got := time.Duration(b.quarantinedUntil.Load() - now); got != want*base {
			t.Fatalf("quarantine %d lasts %s, want %s", i+1, got, want*base)
		}
		now += int64(9 * base) // each one over
	}
	b.connected()
	b.quarantine(now, base)
	if got := time.Duration(b.quarantinedUntil.Load() - now); got != base {
		t.Fatalf("after a connect the quarantine lasts %s, want %s", got, base)
	}
}
