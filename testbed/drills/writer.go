package drills

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/client"
)

// Endpoint is a node's API.
type Endpoint struct {
	Name string
	URL  string
}

// Writer is the steady writer of API changes: each worker in turn sets one
// of Keys of App's config vars to a unique value, or reads the config back
// with X-Slipway-Consistency: linearizable, through the next node Nodes
// returns (so every node's API is used). It records every operation.
type Writer struct {
	App     string
	Keys    []string
	Token   string
	Workers int           // default 2
	Pause   time.Duration // between one worker's operations (default 100ms)
	Timeout time.Duration // per request (default 15s: longer than the API's 7s hold)
	// ReadRatio is the share of operations that are reads (default 0.4).
	ReadRatio float64
	// Nodes returns the endpoints to send through now.
	Nodes func() []Endpoint
	// Now is the clock (default time.Now).
	Now func() time.Time

	http *http.Client
	seq  atomic.Int64
	turn atomic.Int64

	mu     sync.Mutex
	ops    []Op
	flight inflight
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (w *Writer) defaults() {
	if w.Workers == 0 {
		w.Workers = 2
	}
	if w.Pause == 0 {
		w.Pause = 100 * time.Millisecond
	}
	if w.Timeout == 0 {
		w.Timeout = 15 * time.Second
	}
	if w.ReadRatio == 0 {
		w.ReadRatio = 0.4
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.http == nil {
		w.http = &http.Client{Timeout: w.Timeout}
	}
}

// Start starts the workers.
func (w *Writer) Start(ctx context.Context) {
	w.defaults()
	ctx, w.cancel = context.WithCancel(ctx)
	for i := 0; i < w.Workers; i++ {
		w.wg.Add(1)
		go w.work(ctx, i)
	}
}

// Stop stops the workers and waits for their operations to end.
func (w *Writer) Stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
}

func (w *Writer) work(ctx context.Context, id int) {
	defer w.wg.Done()
	// Reads are spread evenly among writes in a fixed pattern (no
	// randomness: a run is easier to compare with another): with a ratio
	// of 0.4, write write read write read, and again.
	n := 0
	for ctx.Err() == nil {
		nodes := w.Nodes()
		if len(nodes) == 0 {
			sleep(ctx, w.Pause)
			continue
		}
		ep := nodes[int(w.turn.Add(1)-1)%len(nodes)]
		n++
		if int(float64(n)*w.ReadRatio) != int(float64(n-1)*w.ReadRatio) {
			w.Read(ctx, id, ep, true, false)
		} else {
			w.Write(ctx, id, ep, false)
		}
		sleep(ctx, w.Pause)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (w *Writer) finish(id int64, op Op) Op {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
	w.flight.end(id, op.Node)
	return op
}

// Inflight is how many operations are under way through a node.
func (w *Writer) Inflight(node string) int { return w.flight.count(node) }

// OldestInflight is when the oldest operation under way that began at or
// after since began.
func (w *Writer) OldestInflight(since time.Time) (time.Time, bool) {
	return w.flight.oldestSince(since)
}

func (w *Writer) client(ep Endpoint) *client.Client {
	return client.New(ep.URL, w.Token, client.WithHTTPClient(w.http), client.WithUserAgent("slipway-drill-writer"))
}

// Write sets the next key to a new unique value through ep and records the
// operation. expected marks a failure the caller provokes on purpose.
// Operations already started are not cut short when ctx is canceled:
// the writer's history needs their real outcome.
func (w *Writer) Write(ctx context.Context, worker int, ep Endpoint, expected bool) Op {
	w.defaults()
	seq := w.seq.Add(1)
	key := w.Keys[int(seq)%len(w.Keys)]
	value := fmt.Sprintf("v%d", seq)
	op := Op{Worker: worker, Kind: Write, Node: ep.Name, Key: key, Value: value, Start: w.Now(), Expected: expected}
	id := w.flight.begin(ep.Name, op.Start)
	_, err := w.client(ep).UpdateConfigVars(context.WithoutCancel(ctx), w.App, map[string]*string{key: &value})
	op.End = w.Now()
	op.Outcome, op.Status, op.ErrID, op.Err = classify(err)
	return w.finish(id, op)
}

// Read reads the app's config vars through ep, linearizably or from the
// node's own replica (stale), and records the operation.
func (w *Writer) Read(ctx context.Context, worker int, ep Endpoint, linearizable, expected bool) Op {
	w.defaults()
	kind, hdr := StaleRead, http.Header(nil)
	if linearizable {
		kind, hdr = Read, http.Header{"X-Slipway-Consistency": {"linearizable"}}
	}
	op := Op{Worker: worker, Kind: kind, Node: ep.Name, Start: w.Now(), Expected: expected}
	id := w.flight.begin(ep.Name, op.Start)
	vars := map[string]string{}
	_, err := w.client(ep).Do(context.WithoutCancel(ctx), http.MethodGet, client.Path("apps", w.App, "config-vars"), nil, &vars, hdr)
	op.End = w.Now()
	op.Outcome, op.Status, op.ErrID, op.Err = classify(err)
	if op.Outcome == Ambiguous {
		op.Outcome = Failed // a read that failed had no effect
	}
	if err == nil {
		op.Values = vars
	}
	return w.finish(id, op)
}

// classify decides whether a failed request may have taken effect.
func classify(err error) (Outcome, int, string, string) {
	if err == nil {
		return OK, 0, "", ""
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		// 4xx: refused before anything changed (each write is one Raft
		// command, applied completely or not at all). 5xx, including
		// 503 unavailable: the command may have been committed anyway.
		if apiErr.Status >= 400 && apiErr.Status < 500 && apiErr.Status != http.StatusRequestTimeout {
			return Failed, apiErr.Status, apiErr.ID, apiErr.Error()
		}
		return Ambiguous, apiErr.Status, apiErr.ID, apiErr.Error()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return Failed, 0, "", err.Error() // never sent
	}
	return Ambiguous, 0, "", err.Error()
}

// Ops returns a copy of the history so far.
func (w *Writer) Ops() []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Op(nil), w.ops...)
}

// shortErr trims an error for a report line.
func shortErr(s string) string {
	if strings.HasPrefix(s, "PATCH ") || strings.HasPrefix(s, "GET ") {
		if i := strings.Index(s, ": "); i > 0 {
			s = s[i+2:]
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
