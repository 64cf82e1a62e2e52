package router

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

// frontend serves one listener: it knows the scheme and port clients
// used, for X-Forwarded-Proto/Port and the log line.
type frontend struct {
	rt    *Router
	proto string // http or https
	port  string
}

// reqState is one request's state and scratch space, pooled. Exactly one
// of w (net/http front end) and hc (the router's own HTTP/1.1 front end)
// is set.
type reqState struct {
	fe *frontend
	w  http.ResponseWriter
	r  *http.Request
	hc *h1conn

	start       time.Time
	app         *App
	be          *Backend
	code        Code
	status      int
	bytes       int64
	connect     time.Duration
	service     time.Duration
	wroteHeader bool
	logged      bool
	bodyRead    int64
	upgrade     bool
	// held: the request holds a slot of its app's backlog (H11).
	held bool
	// closeRetried: the request was already retried after a dyno closed
	// a new connection without answering.
	closeRetried bool
	// lastCode is the error of the last attempt, when a dyno took the
	// request and closed (H13).
	lastCode Code
	// Copies of the request line's fields and the Host, for the log line.
	method, uri, host []byte
	rid               []byte
	fwd               []byte
	connTokens        []string
	logBuf            []byte
	rh                respHead
	req               h1req
	headBuf           []byte
	tun               *tunnel
}

func (rq *reqState) reset() {
	*rq = reqState{method: rq.method[:0], uri: rq.uri[:0], host: rq.host[:0], rid: rq.rid[:0], fwd: rq.fwd[:0],
		connTokens: rq.connTokens[:0], logBuf: rq.logBuf[:0], rh: respHead{fields: rq.rh.fields[:0], connTokens: rq.rh.connTokens[:0]},
		req: h1req{fields: rq.req.fields[:0], connTokens: rq.req.connTokens[:0]}, headBuf: rq.headBuf[:0]}
}

// admit decides what a request gets before any dyno is involved: nil
// means no app has this host (404). Otherwise the request is answered with
// code, or proxied when code is empty; a proxied request holds a slot of
// its app's backlog, which the caller releases.
func (rt *Router) admit(t *Table, rq *reqState, host []byte, bad bool) (*App, Code) {
	app := t.lookup(host)
	if app == nil {
		return nil, ""
	}
	rq.app = app
	switch {
	case bad:
		return app, H26
	case app.Maintenance:
		return app, H80
	case len(app.Backends) == 0:
		if app.Region != "" && app.Region != rt.opts.Region && rt.opts.Forwarder != nil {
			return app, "" // forwarded to the app's home region
		}
		if app.Crashed {
			return app, H10
		}
		return app, H14
	}
	if n := app.state.inflight.Add(1); n > app.Backlog {
		app.state.inflight.Add(-1)
		return app, H11
	}
	return app, ""
}

// backends are the dynos a request may go to: the app's, or the router
// of its home region.
func (rt *Router) backends(app *App) ([]*Backend, bool) {
	if len(app.Backends) > 0 {
		return app.Backends, true
	}
	addr, ok := rt.opts.Forwarder.Route(app)
	if !ok {
		return nil, false
	}
	if b, ok := rt.remotes.Load(addr); ok {
		return []*Backend{b.(*Backend)}, true
	}
	b := &Backend{key: "region:" + addr, Name: "router." + app.Region, Addr: addr, Zone: "region:" + app.Region}
	b.pool.opts = rt.reg.pool
	actual, _ := rt.remotes.LoadOrStore(addr, b)
	return []*Backend{actual.(*Backend)}, true
}

// exchange outcomes.
type exResult int

const (
	exDone  exResult = iota
	exStale          // a reused connection was found closed before anything passed: retry it fresh
	exRetry          // a new connection closed before anything passed: try another dyno
	exAbort          // the response was cut short: drop the client connection
)

const maxAttemptsCap = 16

// proxy picks dynos until one answers (retrying connect errors) and runs
// the exchange on it. It reports whether the client connection must be
// dropped.
func (rt *Router) proxy(rq *reqState, t *Table) bool {
	app := rq.app
	bs, ok := rt.backends(app)
	if !ok {
		rt.fail(rq, H14)
		return false
	}
	var tried [maxAttemptsCap]*Backend
	nt := 0
	lastKind := dialRefused
	connStart := rt.now()
	var be *Backend
	fresh := false
	for {
		if !fresh {
			if nt >= rt.opts.MaxAttempts {
				break
			}
			be = pick(bs, tried[:nt], rt.opts.Zone, nowNano(rt.now), rand.Uint64())
			if be == nil {
				break
			}
			tried[nt] = be
			nt++
		}
		// While another dyno is left to try, a connect gets the short
		// timeout (Options.RetryConnectTimeout).
		c, err := rt.getConn(be, !fresh, nt < rt.opts.MaxAttempts && nt < len(bs))
		fresh = false
		if err != nil {
			rq.lastCode = ""
			lastKind = classifyDial(err)
			now := nowNano(rt.now)
			// A refused connect means the dyno is gone; a timeout or an
			// unreachable host means its node probably is (gossip may
			// only suspect it yet): quarantine all of the node's dynos.
			if lastKind != dialRefused && be.Node != "" {
				t.quarantineNode(be.Node, now, rt.opts.Quarantine)
			} else {
				be.quarantine(now, rt.opts.Quarantine)
			}
			rt.stats.connectError()
			rt.log.Debug("router: dyno connect failed", "app", app.Name, "dyno", be.Name, "addr", be.Addr, "err", err)
			continue
		}
		rq.be = be
		rq.connect = rt.now().Sub(connStart)
		be.inflight.Add(1)
		var res exResult
		if rq.hc != nil {
			res = rq.hc.exchange(rq, c)
		} else {
			res = rt.stdExchange(rq, c)
		}
		be.inflight.Add(-1)
		switch res {
		case exStale:
			fresh = true
			continue
		case exRetry:
			continue
		}
		return res == exAbort
	}
	switch {
	case rq.lastCode != "":
		// The last dyno tried took the request and closed.
		rt.fail(rq, rq.lastCode)
	case lastKind == dialRefused:
		rq.be = nil
		rt.fail(rq, H21)
	default:
		rq.be = nil
		rt.fail(rq, H19)
	}
	return false
}

// getConn takes a pooled connection to the backend or dials one; short
// dials with RetryConnectTimeout (another dyno is left to try).
func (rt *Router) getConn(be *Backend, pooled, short bool) (*conn, error) {
	if pooled {
		if c := be.pool.get(nowNano(rt.now)); c != nil {
			return c, nil
		}
	}
	ctx := rt.ctx
	if short && rt.opts.RetryConnectTimeout < rt.opts.ConnectTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.opts.RetryConnectTimeout)
		defer cancel()
	}
	nc, err := rt.dial(ctx, be.Addr)
	if err != nil {
		return nil, err
	}
	be.connected()
	rt.stats.dial()
	return &conn{nc: nc, be: be, br: bufio.NewReaderSize(nc, rt.opts.BackendReadBuffer),
		bw: bufio.NewWriterSize(nc, rt.opts.BackendWriteBuffer)}, nil
}

// release returns a connection to its backend's pool, or closes it.
func (rt *Router) release(c *conn, reuse bool) {
	if !reuse {
		c.close()
		return
	}
	c.be.pool.put(c, nowNano(rt.now), c.be.retired.Load())
}

func idempotent(m []byte) bool {
	switch string(m) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// fail answers an error (when nothing was sent yet) and logs it.
func (rt *Router) fail(rq *reqState, code Code) {
	info := code.info()
	rq.code, rq.status = code, info.status
	if code != H27 && code != H28 && !rq.wroteHeader {
		rq.wroteHeader = true
		body := rq.app.page(code)
		if hc := rq.hc; hc != nil {
			if !rq.req.bodyDone {
				hc.closeAfter = true // the rest of the body is not read
			}
			rq.bytes = int64(hc.writeRaw(info.status, body, string(rq.method) == http.MethodHead))
		} else {
			rq.bytes = int64(writePage(rq.w, info.status, body))
		}
	}
	rt.finish(rq)
}

// failLate logs an error that happened after the response started; the
// status logged stays the one sent.
func (rt *Router) failLate(rq *reqState, code Code) {
	rq.code = code
	rt.finish(rq)
}

// finish logs the request (once) and records its metrics.
func (rt *Router) finish(rq *reqState) {
	if rq.logged || rq.app == nil {
		return
	}
	rq.logged = true
	rt.stats.request(rq.status, rt.now().Sub(rq.start))
	rq.logBuf = rt.appendLogLine(rq.logBuf[:0], rq)
	rt.sink.Emit(lineFor(rq, string(rq.logBuf)))
}

// Heroku's request limits (beyond them: 400).
const (
	maxRequestLine = 8192
	maxHeaderLine  = 8192
	maxHeaderName  = 1000
	maxHeaders     = 1000
)

// setRequestID keeps the client's X-Request-Id when it is 20 to 200
// characters of [A-Za-z0-9+/=-] (Heroku's rule), else makes a UUID.
func (rq *reqState) setRequestID(v []byte, n int) {
	if n == 1 && validRequestID(v) {
		rq.rid = append(rq.rid[:0], v...)
		return
	}
	rq.rid = appendUUID(rq.rid[:0], rand.Uint64(), rand.Uint64())
}

func validRequestID[S string | []byte](s S) bool {
	if len(s) < 20 || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-') {
			return false
		}
	}
	return true
}

// appendUUID appends a version 4 UUID made of two random words.
func appendUUID(b []byte, hi, lo uint64) []byte {
	const hexd = "0123456789abcdef"
	var u [16]byte
	for i := 0; i < 8; i++ {
		u[i] = byte(hi >> (56 - 8*i))
		u[8+i] = byte(lo >> (56 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexd[x>>4], hexd[x&0xf])
	}
	return b
}

// addForwardedFor appends one X-Forwarded-For value from the client.
func (rq *reqState) addForwardedFor(v []byte) {
	v = trimOWS(v)
	if len(v) == 0 {
		return
	}
	rq.fwd = append(rq.fwd, v...)
	rq.fwd = append(rq.fwd, ", "...)
}

// clientIP strips the port from a RemoteAddr.
func clientIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		addr = addr[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// tunnel is an upgraded connection (WebSocket or any Upgrade) spliced
// between the client and the dyno.
type tunnel struct {
	client, dyno net.Conn
}

// runTunnel copies both ways until either side closes or the tunnel has
// been idle (no data either way) for the idle timeout.
func (rt *Router) runTunnel(t *tunnel) {
	if !rt.trackTunnel(t, true) {
		t.client.Close()
		t.dyno.Close()
		return
	}
	defer rt.trackTunnel(t, false)
	var last atomicTime
	last.store(rt.now())
	done := make(chan struct{})
	go func() {
		rt.pipe(t.dyno, t.client, &last)
		close(done)
	}()
	rt.pipe(t.client, t.dyno, &last)
	<-done
	t.client.Close()
	t.dyno.Close()
}

// pipe copies src to dst; on the end of src it half-closes dst (or closes
// both), so the other direction can finish.
func (rt *Router) pipe(dst, src net.Conn, last *atomicTime) {
	bufp := rt.bufs.Get().(*[]byte)
	defer rt.bufs.Put(bufp)
	buf := *bufp
	for {
		_ = src.SetReadDeadline(last.load().Add(rt.opts.IdleTimeout))
		n, err := src.Read(buf)
		if n > 0 {
			last.store(rt.now())
			_ = dst.SetWriteDeadline(rt.now().Add(rt.opts.IdleTimeout))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if isTimeout(err) && rt.now().Sub(last.load()) < rt.opts.IdleTimeout {
				continue // the other direction was busy
			}
			if err == io.EOF {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return
				}
			}
			break
		}
	}
	dst.Close()
	src.Close()
}
