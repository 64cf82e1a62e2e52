package logplex

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	l := func(src, proc string) *Line { return &Line{Source: src, Proc: proc} }
	cases := []struct {
		f    Filter
		l    *Line
		want bool
	}{
		{Filter{}, l("app", "web.1"), true},
		{Filter{Source: "app"}, l("heroku", "router"), false},
		{Filter{Source: "heroku"}, l("heroku", "router"), true},
		{Filter{Dyno: "web"}, l("app", "web.1"), true},
		{Filter{Dyno: "web"}, l("app", "web.12"), true},
		{Filter{Dyno: "web"}, l("app", "worker.1"), false},
		{Filter{Dyno: "web"}, l("app", "webhook.1"), false},
		{Filter{Dyno: "web.1"}, l("app", "web.1"), true},
		{Filter{Dyno: "web.1"}, l("app", "web.10"), false},
		{Filter{Dyno: "router"}, l("heroku", "router"), true},
		{Filter{Source: "app", Dyno: "web"}, l("heroku", "web.1"), false},
	}
	for _, c := range cases {
		if got := c.f.Match(c.l); got != c.want {
			t.Errorf("%+v.Match(%s[%s]) = %v", c.f, c.l.Source, c.l.Proc, got)
		}
	}
	for _, bad := range []Filter{{Source: "bogus"}, {Dyno: "web 1"}, {Dyno: strings.Repeat("w", 200)}, {Dyno: "../x"}} {
		if bad.Validate() == nil && bad.Dyno != "../x" {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestRing(t *testing.T) {
	r := newRing(5)
	for i := 1; i <= 12; i++ {
		proc := "web.1"
		if i%2 == 0 {
			proc = "worker.1"
		}
		r.push(entry{Line: Line{Source: SourceApp, Proc: proc, Text: fmt.Sprint(i)}, Seq: uint64(i)})
	}
	if r.len() != 5 {
		t.Fatalf("len = %d", r.len())
	}
	texts := func(es []entry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Text)
		}
		return strings.Join(s, ",")
	}
	if got := texts(r.last(3, Filter{}, "a", "demo", "n1")); got != "10,11,12" {
		t.Fatalf("last 3 = %s", got)
	}
	if got := texts(r.last(100, Filter{}, "a", "demo", "n1")); got != "8,9,10,11,12" {
		t.Fatalf("last 100 = %s", got)
	}
	if got := texts(r.last(100, Filter{Dyno: "web"}, "a", "demo", "n1")); got != "9,11" {
		t.Fatalf("web = %s", got)
	}
	if r.last(0, Filter{}, "a", "demo", "n1") != nil {
		t.Fatal("last 0 returned lines")
	}
}

func TestHistoryLimitAndSplit(t *testing.T) {
	p := New(Options{NodeName: "n1", InputRate: MaxInputRate})
	defer p.Close()
	for i := 0; i < 2000; i++ {
		p.Emit(Line{AppID: "a", Source: SourceApp, Proc: "web.1", Text: fmt.Sprint(i)})
	}
	p.Emit(Line{AppID: "a", Source: SourceApp, Proc: "web.1", Text: strings.Repeat("x", 25000)})
	h := p.history("a", Filter{}, 10000)
	if len(h) != DefaultHistoryLines {
		t.Fatalf("history has %d lines", len(h))
	}
	n := len(h)
	if len(h[n-1].Text) != 5000 || len(h[n-2].Text) != 10000 || len(h[n-3].Text) != 10000 || h[n-4].Text != "1999" {
		t.Fatalf("long line not split in 3: %d %d %d %q", len(h[n-1].Text), len(h[n-2].Text), len(h[n-3].Text), h[n-4].Text)
	}
	for i := 1; i < n; i++ {
		if h[i].Seq != h[i-1].Seq+1 {
			t.Fatalf("sequence gap at %d", i)
		}
	}
	// Other apps are separate channels.
	if len(p.history("b", Filter{}, 10)) != 0 {
		t.Fatal("app b has lines")
	}
}

func TestInputRateLimitExactCounts(t *testing.T) {
	clk := newFakeClock()
	p := New(Options{NodeName: "n1", InputRate: 10, Now: clk.Now})
	defer p.Close()
	// Burst is two seconds' worth: 20 lines pass, 80 are dropped.
	for i := 0; i < 100; i++ {
		p.Emit(Line{AppID: "flood", Source: SourceApp, Proc: "web.1", Text: fmt.Sprint(i)})
	}
	for i := 0; i < 5; i++ {
		p.Emit(Line{AppID: "quiet", Source: SourceApp, Proc: "web.1", Text: fmt.Sprint(i)})
	}
	p.flushRateNotices()
	h := p.history("flood", Filter{}, 1000)
	if len(h) != 21 {
		t.Fatalf("flood history has %d lines, want 20 + a notice", len(h))
	}
	want := fmt.Sprintf("Error L12 (log input rate limit): 80 messages dropped since %s (the log-input rate is 10 lines/s per app on node n1)", FormatTime(clk.Now()))
	if last := h[20]; last.Text != want || last.Source != SourceHeroku || last.Proc != ProcLogplex {
		t.Fatalf("notice = %s[%s] %q", last.Source, last.Proc, last.Text)
	}
	// Another app is unaffected.
	if got := len(p.history("quiet", Filter{}, 100)); got != 5 {
		t.Fatalf("quiet app has %d lines", got)
	}
	// One second later, 10 more lines are accepted.
	clk.Add(time.Second)
	for i := 0; i < 15; i++ {
		p.Emit(Line{AppID: "flood", Source: SourceApp, Proc: "web.1", Text: "later"})
	}
	p.flushRateNotices()
	h = p.history("flood", Filter{}, 1000)
	if len(h) != 21+10+1 || !strings.Contains(h[len(h)-1].Text, ": 5 messages dropped") {
		t.Fatalf("after a second: %d lines, last %q", len(h), h[len(h)-1].Text)
	}
	// 0 is a kill switch.
	p.rate.Store(&rateState{value: 0, source: "cluster", gen: 99})
	p.Emit(Line{AppID: "quiet", Source: SourceApp, Proc: "web.1", Text: "killed"})
	if got := len(p.history("quiet", Filter{}, 100)); got != 5 {
		t.Fatalf("kill switch let a line through (%d lines)", got)
	}
}

func TestTailOverflowL11ExactCount(t *testing.T) {
	p := New(Options{NodeName: "n1", TailBuffer: 10, InputRate: MaxInputRate})
	defer p.Close()
	s, _ := p.subscribe("a", Filter{}, 0)
	defer p.unsubscribe(s)
	for i := 0; i < 25; i++ {
		p.Emit(Line{AppID: "a", Source: SourceApp, Proc: "web.1", Text: fmt.Sprint(i)})
	}
	ctx := context.Background()
	var got []string
	for i := 0; i < 11; i++ {
		e, err := s.next(ctx, nil, time.Second, p.now)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Text)
	}
	if strings.Join(got[:10], ",") != "0,1,2,3,4,5,6,7,8,9" {
		t.Fatalf("first lines: %v", got)
	}
	if !regexp.MustCompile(`^Error L11 \(Tail buffer overflow\): This tail session dropped 15 messages since `).MatchString(got[10]) {
		t.Fatalf("notice: %q", got[10])
	}
	// After the notice, lines flow again, in order.
	p.Emit(Line{AppID: "a", Source: SourceApp, Proc: "web.1", Text: "next"})
	if e, err := s.next(ctx, nil, time.Second, p.now); err != nil || e.Text != "next" {
		t.Fatalf("next line: %q %v", e.Text, err)
	}
	// A notice takes its place in order when the queue has room again.
	for i := 0; i < 12; i++ {
		p.Emit(Line{AppID: "a", Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("b", i)})
	}
	for i := 0; i < 5; i++ {
		s.next(ctx, nil, time.Second, p.now)
	}
	p.Emit(Line{AppID: "a", Source: SourceApp, Proc: "web.1", Text: "after"})
	var rest []string
	for len(s.ch) > 0 {
		e, _ := s.next(ctx, nil, time.Second, p.now)
		rest = append(rest, e.Text)
	}
	if len(rest) != 7 || !strings.Contains(rest[5], "dropped 2 messages") || rest[6] != "after" {
		t.Fatalf("rest: %q", rest)
	}
}

// sseLines reads a session stream and returns its data lines (until EOF
// or n lines).
func sseLines(t *testing.T, body *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for n <= 0 || len(out) < n {
		line, err := body.ReadString('\n')
		if err != nil {
			return out
		}
		if d, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func TestSessionServesSSE(t *testing.T) {
	st := newTestState(t)
	app := st.createApp("demo")
	clk := newFakeClock()
	p := New(Options{NodeName: "n1", State: st, Now: clk.Now, InputRate: MaxInputRate})
	defer p.Close()
	for i := 0; i < 5; i++ {
		p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: fmt.Sprint("web ", i)})
		p.Emit(Line{AppID: app, Source: SourceHeroku, Proc: "router", Text: fmt.Sprint("router ", i)})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeSession(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	defer srv.Close()

	get := func(tok string) *http.Response {
		resp, err := http.Get(srv.URL + "/" + tok)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	sess, err := p.NewSession(app, SessionRequest{Lines: 3, Filter: Filter{Dyno: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	resp := get(sess.Token)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	lines := sseLines(t, bufio.NewReader(resp.Body), 0) // ends: the server closes
	resp.Body.Close()
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " app[web.1]: web 2") || !strings.HasSuffix(lines[2], " app[web.1]: web 4") {
		t.Fatalf("lines: %q", lines)
	}

	// Tail: history, then live lines.
	sess, _ = p.NewSession(app, SessionRequest{Lines: 1, Tail: true, Filter: Filter{Source: SourceHeroku}})
	resp = get(sess.Token)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if got := sseLines(t, br, 1); len(got) != 1 || !strings.HasSuffix(got[0], "heroku[router]: router 4") {
		t.Fatalf("tail history: %q", got)
	}
	p.Emit(Line{AppID: app, Source: SourceApp, Proc: "web.1", Text: "filtered out"})
	p.Emit(Line{AppID: app, Source: SourceHeroku, Proc: "web.1", Text: "State changed from starting to up"})
	if got := sseLines(t, br, 1); !strings.HasSuffix(got[0], "heroku[web.1]: State changed from starting to up") {
		t.Fatalf("live: %q", got)
	}

	// Bad, forged and expired tokens.
	for _, bad := range []string{"nope", sess.Token + "x", "eyJhIjoiYiJ9.AAAA", strings.Repeat("a", 5000)} {
		if r := get(bad); r.StatusCode != 404 {
			t.Fatalf("token %.20q: status %d", bad, r.StatusCode)
		}
	}
	clk.Add(DefaultSessionTTL + time.Second)
	r := get(sess.Token)
	b := new(strings.Builder)
	bufio.NewReader(r.Body).WriteTo(b)
	if r.StatusCode != 404 || !strings.Contains(b.String(), "expired") {
		t.Fatalf("expired: %d %s", r.StatusCode, b)
	}
	// Another node with another key cannot open it.
	q := New(Options{NodeName: "n2"})
	defer q.Close()
	clk2, _ := p.NewSession(app, SessionRequest{})
	if _, err := q.openSession(clk2.Token); err == nil {
		t.Fatal("a foreign key opened the session")
	}
}
