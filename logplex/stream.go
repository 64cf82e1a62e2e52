package logplex

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/cluster"
)

// Region-wide history and tails (publish one / subscribe many). Each node
// keeps the lines born on it. A session asks every node of the region for
// its history and, for a tail, to stream its new lines: this node directly,
// the others over internal RPC (GET /internal/v1/logs/stream, NDJSON). A
// node subscribes the session and snapshots its history atomically, so no
// line is missed or repeated between history and tail. The histories are
// merged by time; a node that is down or does not answer is named in a
// notice line instead of failing the session.

// Internal RPC paths.
const (
	rpcStream = "/internal/v1/logs/stream"
	rpcDrains = "/internal/v1/logs/drains"
)

// Timing of streams.
const (
	keepaliveEvery = 5 * time.Second  // an internal stream's keepalive when idle
	streamDeadline = 20 * time.Second // an internal stream with nothing for this long is dead
	sseKeepalive   = 15 * time.Second // an SSE comment when idle, for proxies
	reconnectEvery = 2 * time.Second  // how often a tail retries nodes it has no stream from
)

// query is what a session asks each node.
type query struct {
	app   string
	lines int
	tail  bool
	f     Filter
}

func (q query) values() url.Values {
	v := url.Values{"app": {q.app}, "lines": {strconv.Itoa(q.lines)}}
	if q.tail {
		v.Set("tail", "1")
	}
	if q.f.Source != "" {
		v.Set("source", q.f.Source)
	}
	if q.f.Dyno != "" {
		v.Set("dyno", q.f.Dyno)
	}
	return v
}

func parseQuery(v url.Values) (query, error) {
	q := query{app: v.Get("app"), tail: v.Get("tail") == "1", f: Filter{Source: v.Get("source"), Dyno: v.Get("dyno")}}
	if q.app == "" {
		return q, errors.New("app is required")
	}
	if s := v.Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxSessionLines {
			return q, fmt.Errorf("lines must be 0-%d", MaxSessionLines)
		}
		q.lines = n
	}
	return q, q.f.Validate()
}

// wireRecord is one record of an internal stream.
type wireRecord struct {
	T    time.Time `json:"t,omitzero"`
	App  string    `json:"a,omitempty"`
	Name string    `json:"an,omitempty"`
	S    string    `json:"s,omitempty"`
	P    string    `json:"p,omitempty"`
	M    string    `json:"m,omitempty"`
	N    string    `json:"n,omitempty"`
	Q    uint64    `json:"q,omitempty"`
	H    bool      `json:"h,omitempty"` // end of history
	K    bool      `json:"k,omitempty"` // keepalive
}

func toWire(e *entry) wireRecord {
	return wireRecord{T: e.Time, App: e.AppID, Name: e.AppName, S: e.Source, P: e.Proc, M: e.Text, N: e.Node, Q: e.Seq}
}

func (r *wireRecord) entry() entry {
	return entry{Line: Line{AppID: r.App, AppName: r.Name, Time: r.T, Source: r.S, Proc: r.P, Text: r.M}, Node: r.N, Seq: r.Q}
}

// peer is a region member as a session sees it.
type peer struct {
	name, addr, state string
	self              bool
}

func (p peer) up() bool {
	return p.self || ((p.state == cluster.StateAlive || p.state == cluster.StateSuspect) && p.addr != "")
}

func (p *Pipeline) peers() []peer {
	out := []peer{{name: p.opts.NodeName, self: true, state: cluster.StateAlive}}
	c := p.opts.Cluster
	if c == nil {
		return out
	}
	region := c.Region()
	for _, m := range c.Members() {
		if m.Name == p.opts.NodeName || m.Meta.Region != region {
			continue
		}
		out = append(out, peer{name: m.Name, addr: m.Meta.RPC, state: m.State})
	}
	return out
}

// event is what a node's follower reports to its session.
type event struct {
	node    string
	history []entry // with hist: the node's history (possibly empty)
	hist    bool
	line    entry
	err     error
}

// follow streams one node's history and, for a tail, live lines into
// events, until ctx ends or the stream fails (reported as an error event).
func (p *Pipeline) follow(ctx context.Context, pr peer, q query, events chan<- event) {
	send := func(ev event) bool {
		ev.node = pr.name
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var err error
	if pr.self {
		err = p.followLocal(ctx, q, send)
	} else {
		err = p.followRemote(ctx, pr, q, send)
	}
	if err != nil && ctx.Err() == nil {
		send(event{err: err})
	}
}

func (p *Pipeline) followLocal(ctx context.Context, q query, send func(event) bool) error {
	if !q.tail {
		send(event{hist: true, history: p.history(q.app, q.f, q.lines)})
		return nil
	}
	s, hist := p.subscribe(q.app, q.f, q.lines)
	defer p.unsubscribe(s)
	if !send(event{hist: true, history: hist}) {
		return nil
	}
	for {
		e, err := s.next(ctx, p.ctx.Done(), time.Minute, p.now)
		switch {
		case errors.Is(err, errIdle):
			continue
		case err != nil:
			return nil
		}
		if !send(event{line: e}) {
			return nil
		}
	}
}

func (p *Pipeline) followRemote(ctx context.Context, pr peer, q query, send func(event) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := p.opts.Cluster.RPCRequest(ctx, http.MethodGet, pr.addr, rpcStream+"?"+q.values().Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", pr.name, resp.Status)
	}
	// A watchdog ends a stream that went silent (a node cut off without a
	// reset); nodes send keepalives when idle.
	watchdog := time.AfterFunc(streamDeadline, cancel)
	defer watchdog.Stop()
	dec := json.NewDecoder(bufio.NewReaderSize(resp.Body, 64<<10))
	var hist []entry
	inHistory := true
	for {
		var r wireRecord
		if err := dec.Decode(&r); err != nil {
			if ctx.Err() != nil && watchdog.Stop() {
				return nil // our own cancellation
			}
			if !inHistory && !q.tail {
				return nil
			}
			return fmt.Errorf("stream from %s ended: %w", pr.name, err)
		}
		watchdog.Reset(streamDeadline)
		switch {
		case r.K:
		case r.H:
			inHistory = false
			if !send(event{hist: true, history: hist}) {
				return nil
			}
			hist = nil
			if !q.tail {
				return nil
			}
		case inHistory:
			hist = append(hist, r.entry())
		default:
			if !send(event{line: r.entry()}) {
				return nil
			}
		}
	}
}

// handleStream serves GET /internal/v1/logs/stream: this node's history,
// an end-of-history record, then (tail=1) its new lines, as NDJSON.
func (p *Pipeline) handleStream(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var s *subscriber
	var hist []entry
	if q.tail {
		s, hist = p.subscribe(q.app, q.f, q.lines)
		defer p.unsubscribe(s)
	} else {
		hist = p.history(q.app, q.f, q.lines)
	}
	for i := range hist {
		if enc.Encode(toWire(&hist[i])) != nil {
			return
		}
	}
	if enc.Encode(wireRecord{H: true}) != nil || rc.Flush() != nil || !q.tail {
		return
	}
	for {
		e, err := s.next(r.Context(), p.ctx.Done(), keepaliveEvery, p.now)
		switch {
		case errors.Is(err, errIdle):
			err = enc.Encode(wireRecord{K: true})
		case err != nil:
			return
		default:
			err = enc.Encode(toWire(&e))
		}
		if err != nil {
			return
		}
		if len(s.ch) == 0 {
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// lineWriter is where a session's lines go (SSE to the client).
type lineWriter interface {
	lines(es []entry) error
	keepalive() error
}

// stream runs a session: the merged region-wide history, then live lines.
func (p *Pipeline) stream(ctx context.Context, q query, out lineWriter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan event, 256)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	active := map[string]context.CancelFunc{}
	start := func(pr peer, lines int) {
		fctx, fcancel := context.WithCancel(ctx)
		active[pr.name] = fcancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.follow(fctx, pr, query{app: q.app, lines: lines, tail: q.tail, f: q.f}, events)
		}()
	}
	var notices []entry
	say := func(format string, args ...any) {
		notices = append(notices, notice(q.app, "", p.now(), format, args...))
	}
	pending := map[string]bool{}
	for _, pr := range p.peers() {
		if !pr.up() {
			say("Error L15 (history unavailable): node %s is %s; its lines are missing", pr.name, pr.state)
			continue
		}
		pending[pr.name] = true
		start(pr, q.lines)
	}

	// History: wait for every node (or its failure, or the deadline).
	hist := map[string][]entry{}
	var early []entry // live lines from nodes that answered first
	deadline := time.NewTimer(p.opts.HistoryTimeout)
	defer deadline.Stop()
	for len(pending) > 0 {
		select {
		case ev := <-events:
			switch {
			case ev.hist && pending[ev.node]:
				hist[ev.node] = ev.history
				delete(pending, ev.node)
			case ev.err != nil:
				if pending[ev.node] {
					say("Error L15 (history unavailable): node %s did not answer (%v); its lines are missing", ev.node, ev.err)
					delete(pending, ev.node)
				}
				delete(active, ev.node)
			case ev.err == nil && !ev.hist:
				if len(early) < p.opts.TailBuffer {
					early = append(early, ev.line)
				}
			}
		case <-deadline.C:
			for name := range pending {
				say("Error L15 (history unavailable): node %s did not answer within %v; its lines are missing", name, p.opts.HistoryTimeout)
				active[name]()
				delete(active, name)
			}
			clear(pending)
		case <-ctx.Done():
			return ctx.Err()
		case <-p.sessionsDone:
			return nil
		}
	}
	merged := mergeHistory(hist, q.lines)
	if err := out.lines(append(notices, append(merged, early...)...)); err != nil {
		return err
	}
	if !q.tail {
		return nil
	}

	// Tail: forward live lines; reconnect to nodes that come (back) up.
	reconnect := time.NewTicker(reconnectEvery)
	defer reconnect.Stop()
	ka := time.NewTimer(sseKeepalive)
	defer ka.Stop()
	batch := make([]entry, 0, 256)
	lost := map[string]bool{} // nodes whose loss was announced
	for {
		select {
		case ev := <-events:
			batch = batch[:0]
			for more := true; more; {
				switch {
				case ev.err != nil:
					delete(active, ev.node)
					if !lost[ev.node] {
						lost[ev.node] = true
						batch = append(batch, notice(q.app, "", p.now(), "Warning: lost the stream from node %s (%v); its new lines are missing until it is back", ev.node, ev.err))
					}
				case ev.hist:
					if lost[ev.node] {
						delete(lost, ev.node)
						batch = append(batch, notice(q.app, "", p.now(), "Resumed the stream from node %s", ev.node))
					}
					batch = append(batch, ev.history...)
				default:
					batch = append(batch, ev.line)
				}
				if len(batch) >= cap(batch) {
					break
				}
				select {
				case ev = <-events:
				default:
					more = false
				}
			}
			if len(batch) > 0 {
				if err := out.lines(batch); err != nil {
					return err
				}
				ka.Reset(sseKeepalive)
			}
		case <-reconnect.C:
			for _, pr := range p.peers() {
				if _, ok := active[pr.name]; !ok && pr.up() {
					start(pr, 0)
				}
			}
		case <-ka.C:
			if err := out.keepalive(); err != nil {
				return err
			}
			ka.Reset(sseKeepalive)
		case <-ctx.Done():
			return ctx.Err()
		case <-p.sessionsDone:
			return nil
		}
	}
}

// mergeHistory merges the nodes' histories by time (then node, then
// sequence) and keeps the newest n lines.
func mergeHistory(hist map[string][]entry, n int) []entry {
	var all []entry
	for _, h := range hist {
		all = append(all, h...)
	}
	slices.SortStableFunc(all, func(a, b entry) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// sseWriter writes lines as Server-Sent Events: one event per batch, one
// data field per line (what `heroku logs` reads).
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

func (s *sseWriter) lines(es []entry) error {
	if len(es) == 0 {
		return nil
	}
	s.buf = s.buf[:0]
	for i := range es {
		s.buf = append(s.buf, "data: "...)
		s.buf = append(s.buf, Display(es[i].Line)...)
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, '\n')
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) keepalive() error {
	if _, err := s.w.Write([]byte(": keepalive\n\n")); err != nil {
		return err
	}
	return s.rc.Flush()
}

// AppExists reports whether an app exists (for sessions of deleted apps).
type AppExists func(appID string) bool

// ServeSession serves a log session's stream (GET on its logplex_url):
// text/event-stream with the history, then live lines with tail. An
// unknown, forged or expired token gets 404 (the heroku CLI then says the
// log stream timed out).
func (p *Pipeline) ServeSession(w http.ResponseWriter, r *http.Request, token string) {
	c, err := p.openSession(token)
	if err == nil && p.opts.State != nil {
		if _, ok := p.opts.State.Snap().App(c.App); !ok {
			err = ErrSessionNotFound
		}
	}
	if err != nil {
		msg := "Log session not found: create a new one (POST /apps/{app}/log-sessions)."
		if errors.Is(err, ErrSessionExpired) {
			msg = "This log session has expired: create a new one (POST /apps/{app}/log-sessions)."
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": "not_found", "message": msg})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if !c.Tail {
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	_ = sw.rc.Flush()
	q := query{app: c.App, lines: c.Lines, tail: c.Tail, f: Filter{Source: c.Source, Dyno: c.Dyno}}
	if err := p.stream(r.Context(), q, sw); err != nil && r.Context().Err() == nil {
		p.log.Debug("log session ended", "err", err)
	}
}

// DrainStatus values.
const (
	DrainOK      = "ok"      // the last delivery succeeded
	DrainFailing = "failing" // the last delivery failed (retrying)
	DrainIdle    = "idle"    // nothing delivered yet
)

// DrainHealth is a drain's delivery state, summed over the nodes that
// answered (each node delivers the lines born on it).
type DrainHealth struct {
	Status          string     `json:"status"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
	LastDeliveredAt *time.Time `json:"last_delivered_at,omitempty"`
	Delivered       uint64     `json:"delivered"`
	Dropped         uint64     `json:"dropped"`
	Rejected        uint64     `json:"rejected"`
	Buffered        int        `json:"buffered"`
	Nodes           int        `json:"nodes"`
}

func (h *DrainHealth) add(o DrainHealth) {
	h.Delivered += o.Delivered
	h.Dropped += o.Dropped
	h.Rejected += o.Rejected
	h.Buffered += o.Buffered
	h.Nodes += o.Nodes
	if o.LastErrorAt != nil && (h.LastErrorAt == nil || o.LastErrorAt.After(*h.LastErrorAt)) {
		h.LastError, h.LastErrorAt = o.LastError, o.LastErrorAt
	}
	if o.LastDeliveredAt != nil && (h.LastDeliveredAt == nil || o.LastDeliveredAt.After(*h.LastDeliveredAt)) {
		h.LastDeliveredAt = o.LastDeliveredAt
	}
	switch {
	case h.Status == DrainFailing || o.Status == DrainFailing:
		h.Status = DrainFailing
	case h.Status == DrainOK || o.Status == DrainOK:
		h.Status = DrainOK
	default:
		h.Status = DrainIdle
	}
}

// localDrainHealth is this node's view of an app's drains.
func (p *Pipeline) localDrainHealth(appID string) map[string]DrainHealth {
	ws := (*p.drains.Load())[appID]
	out := make(map[string]DrainHealth, len(ws))
	for _, w := range ws {
		out[w.d.ID] = w.healthNow()
	}
	return out
}

func (p *Pipeline) handleDrains(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app")
	if app == "" {
		http.Error(w, "app is required", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p.localDrainHealth(app))
}

// DrainHealth returns the health of an app's drains across the region's
// nodes that answer within a second or two.
func (p *Pipeline) DrainHealth(ctx context.Context, appID string) map[string]DrainHealth {
	out := map[string]DrainHealth{}
	var mu sync.Mutex
	merge := func(m map[string]DrainHealth) {
		mu.Lock()
		defer mu.Unlock()
		for id, h := range m {
			cur := out[id]
			cur.add(h)
			out[id] = cur
		}
	}
	merge(p.localDrainHealth(appID))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, pr := range p.peers() {
		if pr.self || !pr.up() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.opts.Cluster.RPCRequest(ctx, http.MethodGet, pr.addr, rpcDrains+"?app="+url.QueryEscape(appID), nil)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var m map[string]DrainHealth
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&m) == nil {
				merge(m)
			}
		}()
	}
	wg.Wait()
	return out
}

func (p *Pipeline) mountRPC(c Cluster) {
	c.HandleRPC("GET "+rpcStream, http.HandlerFunc(p.handleStream))
	c.HandleRPC("GET "+rpcDrains, http.HandlerFunc(p.handleDrains))
}

// DrainHealthLocal is this node's view of an app's drains.
func (p *Pipeline) DrainHealthLocal(appID string) map[string]DrainHealth {
	return p.localDrainHealth(appID)
}
