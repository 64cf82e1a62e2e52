package drills

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/testbed"
)

// Target is one URL the prober requests, with an optional Host header and
// what the answer must contain.
type Target struct {
	Node string // the node the request goes to
	URL  string
	Host string
	// Want, if set, must be in the answer's body: an answer without it
	// (another release, an error page served with 200) is a failed probe.
	Want string
}

// Targets returns what to probe now; it is called before every round, so
// it follows nodes going out of and back into service.
type Targets func() []Target

// HealthTargets probes each in-service node's API /health: it shows
// whether each node's HTTP endpoint answers, not whether apps are served.
// The drills probe the routers (RouterTargets).
func HealthTargets(tb *testbed.Testbed, inService func() []string) Targets {
	return func() []Target {
		var out []Target
		for _, n := range inService() {
			out = append(out, Target{Node: n, URL: tb.APIURL(n) + "/health"})
		}
		return out
	}
}

// RouterTargets probes an app through each in-service node's router (port
// 80, Host APP.<cluster domain>), the way users reach apps; every answer
// must contain want.
func RouterTargets(tb *testbed.Testbed, inService func() []string, app, want string) Targets {
	return func() []Target {
		var out []Target
		for _, n := range inService() {
			out = append(out, Target{Node: n, URL: tb.RouterURL(n) + "/", Host: app + "." + tb.Domain(), Want: want})
		}
		return out
	}
}

// Probe is one probe's result.
type Probe struct {
	Node   string
	Start  time.Time
	End    time.Time
	OK     bool
	Status int
	Err    string
	// Dyno is the dyno that answered, when the answer names it ("hello
	// from web.2 ...").
	Dyno string
}

// Prober requests every target every Interval and records the results. A
// probe succeeds on a 2xx or 3xx answer within Timeout.
type Prober struct {
	Targets  Targets
	Interval time.Duration // default 100ms
	Timeout  time.Duration // default 2s
	Now      func() time.Time

	http   *http.Client
	mu     sync.Mutex
	probes []Probe
	flight inflight
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (p *Prober) defaults() {
	if p.Interval == 0 {
		p.Interval = 100 * time.Millisecond
	}
	if p.Timeout == 0 {
		p.Timeout = 2 * time.Second
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	// No redirects followed; no connection reuse, so that every probe
	// finds out afresh whether the target accepts connections.
	if p.http == nil {
		p.http = &http.Client{Timeout: p.Timeout, Transport: &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
}

// Start starts probing.
func (p *Prober) Start(ctx context.Context) {
	p.defaults()
	ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for ctx.Err() == nil {
			var round sync.WaitGroup
			for _, t := range p.Targets() {
				round.Add(1)
				id := p.flight.begin(t.Node, p.Now())
				go func() {
					defer round.Done()
					pr := p.probe(t)
					p.mu.Lock()
					p.probes = append(p.probes, pr)
					p.mu.Unlock()
					p.flight.end(id, t.Node)
				}()
			}
			round.Wait()
			sleep(ctx, p.Interval)
		}
	}()
}

func (p *Prober) probe(t Target) Probe {
	pr := Probe{Node: t.Node, Start: p.Now()}
	req, err := http.NewRequest(http.MethodGet, t.URL, nil)
	if err == nil {
		if t.Host != "" {
			req.Host = t.Host
		}
		var resp *http.Response
		resp, err = p.http.Do(req)
		if err == nil {
			var body string
			body, err = readBody(resp.Body, 64<<10)
			resp.Body.Close()
			pr.Status = resp.StatusCode
			pr.Dyno = answeredBy(body)
			switch {
			case err != nil:
				err = fmt.Errorf("HTTP %d, reading the body: %w", resp.StatusCode, err)
			case resp.StatusCode < 200 || resp.StatusCode >= 400:
				pr.Err = fmt.Sprintf("HTTP %d %.100q", resp.StatusCode, body)
			case t.Want != "" && !strings.Contains(body, t.Want):
				pr.Err = fmt.Sprintf("HTTP %d %.100q, not %q", resp.StatusCode, body, strings.TrimSpace(t.Want))
			default:
				pr.OK = true
			}
		}
	}
	if err != nil {
		pr.Err = err.Error()
	}
	pr.End = p.Now()
	return pr
}

// readBody reads at most n bytes of a body.
func readBody(r io.Reader, n int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, n))
	return string(b), err
}

// answeredBy finds the dyno's name in the web app's answer ("hello from
// web.2 release v3 ...").
func answeredBy(body string) string {
	rest, ok := strings.CutPrefix(body, "hello from ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, " ")
	return name
}

// Stop stops probing and waits for the last round.
func (p *Prober) Stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
}

// Inflight is how many probes are under way to a node.
func (p *Prober) Inflight(node string) int { return p.flight.count(node) }

// OldestInflight is when the oldest probe under way that began at or
// after since began.
func (p *Prober) OldestInflight(since time.Time) (time.Time, bool) {
	return p.flight.oldestSince(since)
}

// Probes returns a copy of the results so far.
func (p *Prober) Probes() []Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Probe(nil), p.probes...)
}
