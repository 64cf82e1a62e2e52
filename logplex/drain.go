package logplex

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// Drain delivery on one node. Every node delivers the lines born on it
// (each line exactly once, by one node) to each of the app's drains through
// a bounded buffer: when it is full the oldest line is dropped and counted,
// and the next batch starts with an L10 notice giving the count. A batch
// that fails is retried with backoff until it is delivered, so a receiver
// that restarts loses nothing while the buffer holds; only a 4xx answer
// (except 429) from an HTTPS drain rejects a batch. Emit never waits for a
// drain.

// Batch limits.
const (
	syslogBatch    = 100
	httpBatch      = 500
	httpBatchBytes = 100 << 10
	syslogTimeout  = 10 * time.Second
	idleClose      = 144 * time.Second
)

// sender delivers batches to one drain. send is called by one goroutine.
type sender interface {
	send(ctx context.Context, b *batch) error
	close()
}

// batch is a group of lines sent together; its frame id is kept across
// retries (Logplex-Frame-Id) so receivers can de-duplicate.
type batch struct {
	entries []entry
	frameID string
	l10     int // entries[0] is an L10 notice for this many lines
	since   time.Time
}

// notSentError is a failure before any byte of a batch left (connection
// refused, DNS, a peer that had already closed): the batch can still be
// changed, e.g. to count more dropped lines in its L10 notice.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

func isNotSent(err error) bool {
	var ns *notSentError
	if errors.As(err, &ns) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// permanentError is a rejection that retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

type drainWorker struct {
	p      *Pipeline
	d      fsm.LogDrain
	s      sender
	max    int
	maxB   int
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	buf     []entry // ring of capacity max, allocated with the first line
	head, n int
	dropped int // dropped since the last L10
	since   time.Time
	health  nodeHealth
}

// nodeHealth is one node's view of a drain.
type nodeHealth struct {
	delivered, dropped, rejected uint64
	lastErr                      string
	lastErrAt, lastOK            time.Time
}

func (p *Pipeline) newDrainWorker(d fsm.LogDrain) *drainWorker {
	ctx, cancel := context.WithCancel(p.ctx)
	w := &drainWorker{p: p, d: d, max: p.opts.DrainBuffer, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	u, err := ParseDrainURL(d.URL)
	switch {
	case err != nil:
		w.s = brokenSender{err: &permanentError{fmt.Errorf("invalid drain URL: %w", err)}}
	case u.Scheme == SchemeSyslog || u.Scheme == SchemeSyslogTLS:
		w.s = newSyslogSender(u, d.Token, p.opts.DrainTLS)
		w.maxB = syslogBatch
	default:
		w.s = newHTTPSender(u, d.Token, p.httpClient, p.opts.Version)
		w.maxB = httpBatch
	}
	if w.maxB == 0 {
		w.maxB = syslogBatch
	}
	go w.run()
	return w
}

// reconcileDrains starts a worker for every drain in the state and stops
// the workers of deleted drains.
func (p *Pipeline) reconcileDrains(snap *fsm.Snap) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	want := map[string]*fsm.LogDrain{}
	for _, d := range snap.AllDrains() {
		want[d.ID] = d
	}
	changed := false
	for id, w := range p.workers {
		if d, ok := want[id]; !ok || d.URL != w.d.URL || d.Token != w.d.Token {
			w.stop()
			delete(p.workers, id)
			changed = true
		}
	}
	for id, d := range want {
		if _, ok := p.workers[id]; !ok {
			p.workers[id] = p.newDrainWorker(*d)
			changed = true
		}
	}
	if !changed {
		return
	}
	byApp := map[string][]*drainWorker{}
	for _, w := range p.workers {
		byApp[w.d.AppID] = append(byApp[w.d.AppID], w)
	}
	p.drains.Store(&byApp)
}

func (w *drainWorker) stop() {
	w.cancel()
	<-w.done
}

// enqueue buffers a line for delivery, dropping the oldest when full.
func (w *drainWorker) enqueue(e entry) {
	w.mu.Lock()
	if w.buf == nil {
		w.buf = make([]entry, w.max)
	}
	if w.n == w.max {
		if w.dropped == 0 {
			w.since = w.p.now()
		}
		w.head = (w.head + 1) % w.max
		w.n--
		w.dropped++
		w.health.dropped++
	}
	w.buf[(w.head+w.n)%w.max] = e
	w.n++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// addL10Locked puts the lines dropped so far into the batch's leading L10
// notice (adding one if needed); w.mu held.
func (w *drainWorker) addL10Locked(b *batch) {
	if w.dropped == 0 {
		return
	}
	if b.l10 == 0 {
		b.since = w.since
		b.entries = append(b.entries, entry{})
		copy(b.entries[1:], b.entries)
	}
	b.l10 += w.dropped
	w.dropped = 0
	b.entries[0] = notice(w.d.AppID, "", w.p.now(), "Error L10 (output buffer overflow): %d messages dropped since %s", b.l10, FormatTime(b.since))
}

// take removes the next batch from the buffer, led by an L10 notice when
// lines were dropped since the last one.
func (w *drainWorker) take() *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 && w.dropped == 0 {
		return nil
	}
	b := &batch{entries: make([]entry, 0, min(w.n, w.maxB)+1)}
	w.addL10Locked(b)
	size := 0
	for w.n > 0 && len(b.entries) < w.maxB && (size < httpBatchBytes || len(b.entries) == 0) {
		e := w.buf[w.head]
		w.buf[w.head] = entry{}
		w.head = (w.head + 1) % w.max
		w.n--
		size += len(e.Text) + 64
		b.entries = append(b.entries, e)
	}
	return b
}

func (w *drainWorker) run() {
	defer close(w.done)
	defer w.s.close()
	idle := time.NewTimer(idleClose)
	defer idle.Stop()
	for {
		b := w.take()
		if b == nil {
			select {
			case <-w.ctx.Done():
				return
			case <-w.wake:
				continue
			case <-idle.C:
				w.s.close() // reopened on the next batch
				idle.Reset(idleClose)
				continue
			}
		}
		if !w.deliver(b) {
			return
		}
		idle.Reset(idleClose)
	}
}

// deliver sends a batch until it is delivered or rejected; false when the
// worker is stopping.
func (w *drainWorker) deliver(b *batch) bool {
	for attempt := 0; ; attempt++ {
		err := w.s.send(w.ctx, b)
		now := w.p.now()
		w.mu.Lock()
		var perm *permanentError
		switch {
		case err == nil:
			w.health.delivered += uint64(len(b.entries))
			w.health.lastOK = now
		case errors.As(err, &perm):
			w.health.rejected += uint64(len(b.entries))
			w.health.lastErr, w.health.lastErrAt = err.Error(), now
		default:
			w.health.lastErr, w.health.lastErrAt = err.Error(), now
		}
		w.mu.Unlock()
		if err == nil {
			w.p.log.Debug("log drain delivered", "drain", w.d.ID, "lines", len(b.entries))
		}
		if err == nil || perm != nil {
			if perm != nil {
				w.p.log.Warn("log drain rejected a batch", "drain", w.d.ID, "lines", len(b.entries), "err", err)
			}
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		if isNotSent(err) {
			// Nothing reached the receiver: let the retry report every
			// line dropped meanwhile, so an outage yields one L10.
			w.mu.Lock()
			if w.dropped > 0 {
				w.addL10Locked(b)
				b.frameID = ""
			}
			w.mu.Unlock()
		}
		w.p.log.Debug("log drain delivery failed, retrying", "drain", w.d.ID, "attempt", attempt+1, "err", err)
		t := time.NewTimer(w.p.backoff(attempt))
		select {
		case <-w.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// backoff is the delay before retry number attempt+1: exponential from
// Min to Max, with jitter in [d/2, d].
func (p *Pipeline) backoff(attempt int) time.Duration {
	b := p.opts.DrainBackoff
	d := b.Min << min(attempt, 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	return d/2 + rand.N(d/2+1)
}

func (w *drainWorker) healthNow() DrainHealth {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health
	out := DrainHealth{Delivered: h.delivered, Dropped: h.dropped, Rejected: h.rejected, Buffered: w.n, Nodes: 1}
	switch {
	case !h.lastErrAt.IsZero() && h.lastErrAt.After(h.lastOK):
		out.Status = DrainFailing
	case !h.lastOK.IsZero():
		out.Status = DrainOK
	default:
		out.Status = DrainIdle
	}
	if h.lastErr != "" {
		out.LastError = h.lastErr
		t := h.lastErrAt
		out.LastErrorAt = &t
	}
	if !h.lastOK.IsZero() {
		t := h.lastOK
		out.LastDeliveredAt = &t
	}
	return out
}

type brokenSender struct{ err error }

func (b brokenSender) send(context.Context, *batch) error { return b.err }
func (brokenSender) close()                               {}

// syslogSender writes octet-counted RFC 5424 frames over TCP or TLS, with
// the drain token as HOSTNAME. A reader goroutine notices when the
// receiver closes the connection, so lines are not written into a
// connection the peer has already closed (they would be lost).
type syslogSender struct {
	addr, host string
	tlsConf    *tls.Config
	token      string

	conn   net.Conn
	tcp    net.Conn // the TCP connection under conn
	closed chan struct{}
	buf    []byte
	msg    []byte
}

func newSyslogSender(u *url.URL, token string, tlsConf *tls.Config) *syslogSender {
	s := &syslogSender{addr: u.Host, host: u.Hostname(), token: token}
	if u.Scheme == SchemeSyslogTLS {
		c := &tls.Config{}
		if tlsConf != nil {
			c = tlsConf.Clone()
		}
		if c.ServerName == "" {
			c.ServerName = s.host
		}
		s.tlsConf = c
	}
	return s
}

func (s *syslogSender) connect(ctx context.Context) error {
	d := net.Dialer{Timeout: syslogTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return &notSentError{fmt.Errorf("connecting to %s: %w", s.addr, err)}
	}
	s.tcp = conn
	if s.tlsConf != nil {
		tc := tls.Client(conn, s.tlsConf)
		hctx, cancel := context.WithTimeout(ctx, syslogTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return &notSentError{fmt.Errorf("TLS handshake with %s: %w", s.addr, err)}
		}
		conn = tc
	}
	closed := make(chan struct{})
	go func() {
		// Receivers never write; a read returns when the peer closes.
		_, _ = io.Copy(io.Discard, conn)
		close(closed)
	}()
	s.conn, s.closed = conn, closed
	return nil
}

func (s *syslogSender) send(ctx context.Context, b *batch) error {
	// A receiver that restarts closes its connections: writing into one
	// would lose the lines (TCP accepts them, the peer resets). Check for
	// the close before writing; only a close in the instant between this
	// check and the write can still lose lines (syslog over TCP has no
	// acknowledgements).
	if s.conn != nil {
		select {
		case <-s.closed:
			s.close()
		default:
			if peerClosed(s.tcp) {
				s.close()
			}
		}
	}
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	s.buf = s.buf[:0]
	for i := range b.entries {
		s.msg = AppendRFC5424(s.msg[:0], &b.entries[i].Line, s.token, true)
		s.buf = AppendOctetFrame(s.buf, s.msg)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(syslogTimeout))
	if _, err := s.conn.Write(s.buf); err != nil {
		s.close()
		return fmt.Errorf("writing to %s: %w", s.addr, err)
	}
	return nil
}

func (s *syslogSender) close() {
	if s.conn != nil {
		s.conn.Close()
		<-s.closed
		s.conn, s.tcp, s.closed = nil, nil, nil
	}
}

// httpSender POSTs batches as application/logplex-1.
type httpSender struct {
	url        string
	user, pass string
	auth       bool
	token, ua  string
	client     *http.Client
	buf, msg   []byte
}

func newHTTPSender(u *url.URL, token string, client *http.Client, version string) *httpSender {
	s := &httpSender{token: token, client: client, ua: "Logplex/slipway-" + version}
	if version == "" {
		s.ua = "Logplex/slipway"
	}
	c := *u
	if u.User != nil {
		s.auth = true
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
		c.User = nil
	}
	s.url = c.String()
	return s
}

func newFrameID() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

func (s *httpSender) send(ctx context.Context, b *batch) error {
	if b.frameID == "" {
		b.frameID = newFrameID()
	}
	s.buf = s.buf[:0]
	for i := range b.entries {
		s.msg = AppendRFC5424(s.msg[:0], &b.entries[i].Line, "host", false)
		s.msg = append(s.msg, '\n')
		s.buf = AppendOctetFrame(s.buf, s.msg)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(s.buf))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", "application/logplex-1")
	req.Header.Set("Logplex-Msg-Count", strconv.Itoa(len(b.entries)))
	req.Header.Set("Logplex-Frame-Id", b.frameID)
	req.Header.Set("Logplex-Drain-Token", s.token)
	req.Header.Set("User-Agent", s.ua)
	if s.auth {
		req.SetBasicAuth(s.user, s.pass)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST to drain: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		return &permanentError{fmt.Errorf("drain answered %s; batch of %d lines rejected", resp.Status, len(b.entries))}
	default:
		return fmt.Errorf("drain answered %s", resp.Status)
	}
}

func (s *httpSender) close() {}
