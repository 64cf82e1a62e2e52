package drills

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/testbed"
)

// Target is one URL the prober requests, with an optional Host header.
type Target struct {
	Node string // the node the request goes to
	URL  string
	Host string
}

// Targets returns what to probe now; it is called before every round, so
// it follows nodes going out of and back into service.
type Targets func() []Target

// HealthTargets probes each in-service node's API /health. This is what
// the drills probe until the router exists: it shows whether each node's
// HTTP endpoint answers, not whether apps are served.
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
// 80, Host APP.<cluster domain>), the way users reach apps. Use it in Run
// instead of HealthTargets once the router (issue 5) serves apps and the
// drill deploys one.
func RouterTargets(tb *testbed.Testbed, inService func() []string, app string) Targets {
	return func() []Target {
		var out []Target
		for _, n := range inService() {
			nd, err := tb.Node(n)
			if err != nil {
				continue
			}
			out = append(out, Target{Node: n, URL: fmt.Sprintf("http://%s:80/", nd.Addr), Host: app + "." + tb.Domain()})
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

// Start starts probing.
func (p *Prober) Start(ctx context.Context) {
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
	p.http = &http.Client{Timeout: p.Timeout, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
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
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			pr.Status = resp.StatusCode
			pr.OK = resp.StatusCode >= 200 && resp.StatusCode < 400
			if !pr.OK {
				pr.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
			}
		}
	}
	if err != nil {
		pr.Err = err.Error()
	}
	pr.End = p.Now()
	return pr
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
