package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// The router's own HTTP/1.1 server for plain HTTP. net/http's server
// costs about as much CPU per proxied request as the rest of the router
// (a Request, header map and context per request, a background read per
// connection to detect closes); this one parses request heads in place,
// writes them to the dyno from the client's buffer, relays bodies with
// their framing (chunks verbatim) and answers with one write for small
// responses. HTTPS (and HTTP/2) stays on net/http (std.go).

// Client request parsing errors, answered without routing.
var (
	errBadRequest      = errors.New("malformed request")
	errExpectation     = errors.New("unsupported Expect")
	errNotImplemented  = errors.New("unsupported Transfer-Encoding")
	errVersion         = errors.New("unsupported HTTP version")
	errRequestTooLarge = errors.New("request head too large")
)

// Request header kinds (what the router does with each field).
const (
	fieldForward uint8 = iota
	fieldSkip
	fieldXFF
	fieldVia
)

// rfield is one request header field.
type rfield struct {
	k, v []byte
	kind uint8
}

// h1req is a parsed request head; its slices point into the request's
// copy of the head (reqState.headBuf).
type h1req struct {
	method, target, host []byte
	http10               bool
	nHost                int
	contentLength        int64 // -1: none
	chunked              bool
	expectContinue       bool
	connClose            bool
	connKeepAlive        bool
	connUpgrade          bool
	upgrade              []byte
	rid                  []byte
	nRid                 int
	fields               []rfield
	connTokens           [][]byte
	// bad: a Heroku request limit was exceeded (answered H26).
	bad bool
	// bodyDone: the body was read to its end (the connection can carry
	// another request).
	bodyDone bool
	// sentContinue: 100 Continue was sent.
	sentContinue bool
}

func (q *h1req) hasBody() bool { return q.contentLength > 0 || q.chunked }

// parseRequest parses a request head.
func parseRequest(head []byte, q *h1req) error {
	*q = h1req{contentLength: -1, fields: q.fields[:0], connTokens: q.connTokens[:0]}
	line, rest := nextLine(head)
	if len(line) > maxRequestLine {
		q.bad = true
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequest
	}
	q.method = line[:sp1]
	if !validToken(q.method) {
		return errBadRequest
	}
	r := line[sp1+1:]
	sp2 := bytes.LastIndexByte(r, ' ')
	if sp2 <= 0 {
		return errBadRequest
	}
	q.target, r = r[:sp2], r[sp2+1:]
	switch string(r) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		q.http10 = true
	default:
		if bytes.HasPrefix(r, []byte("HTTP/")) && len(r) == 8 {
			return errVersion
		}
		return errBadRequest
	}
	for _, c := range q.target {
		if c <= ' ' || c == 0x7f {
			return errBadRequest
		}
	}
	if t := q.target; t[0] != '/' && string(t) != "*" && !bytes.Contains(t, []byte("://")) && string(q.method) != http.MethodConnect {
		return errBadRequest
	}
	// Absolute form (a proxy-style request line): its authority wins.
	var absHost []byte
	if t := q.target; len(t) > 8 && (asciiEqualFold(t[:7], "http://") || asciiEqualFold(t[:8], "https://")) {
		t = t[bytes.IndexByte(t, '/')+2:]
		end := bytes.IndexAny(t, "/?")
		if end < 0 {
			absHost, q.target = t, []byte("/")
		} else {
			absHost, q.target = t[:end], t[end:]
		}
		if q.target[0] == '?' {
			return errBadRequest
		}
	}
	n := 0
	for len(rest) > 0 {
		var l []byte
		l, rest = nextLine(rest)
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			return errBadRequest // obsolete line folding
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !validToken(l[:colon]) {
			return errBadRequest
		}
		k, v := l[:colon], trimOWS(l[colon+1:])
		if !validValue(v) {
			return errBadRequest
		}
		n++
		if len(k) > maxHeaderName || len(l) > maxHeaderLine || n > maxHeaders {
			q.bad = true
		}
		kind := fieldForward
		switch len(k) {
		case 2:
			if headerIs(k, "TE") {
				kind = fieldSkip
			}
		case 3:
			if headerIs(k, "Via") {
				kind = fieldVia
			}
		case 4:
			if headerIs(k, "Host") {
				q.host = v
				q.nHost++
				kind = fieldSkip
			}
		case 6:
			if headerIs(k, "Expect") {
				if !asciiEqualFold(v, "100-continue") {
					return errExpectation
				}
				q.expectContinue = true
				kind = fieldSkip
			}
		case 7:
			if headerIs(k, "Upgrade") {
				q.upgrade = v
				kind = fieldSkip
			} else if headerIs(k, "Trailer") {
				kind = fieldSkip
			}
		case 10:
			if headerIs(k, "Connection") {
				q.connectionTokens(v)
				kind = fieldSkip
			} else if headerIs(k, "Keep-Alive") {
				kind = fieldSkip
			}
		case 12:
			if headerIs(k, "X-Request-Id") {
				q.rid = v
				q.nRid++
				kind = fieldSkip
			} else if headerIs(k, "Connect-Time") {
				kind = fieldSkip
			}
		case 14:
			if headerIs(k, "Content-Length") {
				cl, ok := parseLength(v)
				if !ok || (q.contentLength >= 0 && q.contentLength != cl) {
					return errBadRequest
				}
				q.contentLength = cl
				kind = fieldSkip
			}
		case 15:
			if headerIs(k, "X-Forwarded-For") {
				kind = fieldXFF
			} else if headerIs(k, "X-Request-Start") {
				kind = fieldSkip
			}
		case 16:
			if headerIs(k, "Proxy-Connection") || headerIs(k, "X-Forwarded-Port") || headerIs(k, "Total-Route-Time") {
				kind = fieldSkip
			}
		case 17:
			if headerIs(k, "Transfer-Encoding") {
				if !asciiEqualFold(v, "chunked") || q.chunked {
					return errNotImplemented
				}
				q.chunked = true
				kind = fieldSkip
			} else if headerIs(k, "X-Forwarded-Proto") {
				kind = fieldSkip
			}
		case 19:
			if headerIs(k, "Proxy-Authorization") {
				kind = fieldSkip
			}
		}
		q.fields = append(q.fields, rfield{k: k, v: v, kind: kind})
	}
	if q.chunked && q.contentLength >= 0 {
		return errBadRequest // both framings: a smuggling attempt
	}
	if q.nHost > 1 || (q.nHost == 0 && !q.http10 && absHost == nil) {
		return errBadRequest
	}
	if absHost != nil {
		q.host = absHost
	}
	if len(q.connTokens) > 0 {
		for i := range q.fields {
			for _, t := range q.connTokens {
				if bytes.EqualFold(q.fields[i].k, t) {
					q.fields[i].kind = fieldSkip
				}
			}
		}
	}
	if q.contentLength < 0 && !q.chunked {
		q.contentLength = 0
	}
	return nil
}

func (q *h1req) connectionTokens(v []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		switch {
		case asciiEqualFold(tok, "close"):
			q.connClose = true
		case asciiEqualFold(tok, "keep-alive"):
			q.connKeepAlive = true
		case asciiEqualFold(tok, "upgrade"):
			q.connUpgrade = true
		case len(tok) > 0:
			q.connTokens = append(q.connTokens, tok)
		}
	}
}

// h1conn is one client connection of the HTTP/1.1 front end.
type h1conn struct {
	rt     *Router
	fe     *frontend
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string // client IP
	// state: idle (between requests), active, or closed.
	state atomic.Int32
	// closeAfter: the connection closes after the current response.
	closeAfter bool
	rdl, wdl   int64 // read and write deadlines set (Unix nano)
}

const (
	h1Idle int32 = iota
	h1Active
	h1Closed
)

// Serve answers plain HTTP/1.x on ln (with the router's own server)
// until Shutdown or Close.
func (rt *Router) Serve(ln net.Listener) error {
	if rt.opts.NetHTTP {
		return rt.serveStd(ln, "http")
	}
	fe := &frontend{rt: rt, proto: "http", port: listenerPort(ln)}
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	rt.listeners = append(rt.listeners, ln)
	rt.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			rt.mu.Lock()
			closed := rt.closed
			rt.mu.Unlock()
			if closed {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				rt.log.Warn("router: accept failed, retrying", "err", err)
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		hc := &h1conn{rt: rt, fe: fe, nc: nc, remote: clientIP(nc.RemoteAddr().String()),
			br: bufio.NewReaderSize(nc, rt.opts.ClientReadBuffer), bw: bufio.NewWriterSize(nc, rt.opts.ClientWriteBuffer)}
		if !rt.trackH1(hc, true) {
			nc.Close()
			return http.ErrServerClosed
		}
		go hc.serve()
	}
}

func (rt *Router) isClosed() bool { return rt.closing.Load() }

func (rt *Router) trackH1(hc *h1conn, add bool) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if !add {
		delete(rt.h1conns, hc)
		return true
	}
	if rt.closed {
		return false
	}
	rt.h1conns[hc] = struct{}{}
	rt.stats.active.Add(1)
	return true
}

func (hc *h1conn) close() {
	if hc.state.Swap(h1Closed) != h1Closed {
		_ = hc.nc.Close()
		hc.rt.stats.active.Add(-1)
	}
}

// setReadDeadline sets the client read deadline d from now, keeping the
// current one when it is already a little later (see conn.setReadDeadline).
func (hc *h1conn) setReadDeadline(d time.Duration) {
	want := nowNano(hc.rt.now) + int64(d)
	slack := int64(deadlineSlack(d))
	if hc.rdl >= want && hc.rdl-want <= slack {
		return
	}
	hc.rdl = want + slack/2
	_ = hc.nc.SetReadDeadline(time.Unix(0, hc.rdl))
}

func (hc *h1conn) setWriteDeadline(d time.Duration) {
	want := nowNano(hc.rt.now) + int64(d)
	slack := int64(deadlineSlack(d))
	if hc.wdl >= want && hc.wdl-want <= slack {
		return
	}
	hc.wdl = want + slack/2
	_ = hc.nc.SetWriteDeadline(time.Unix(0, hc.wdl))
}

func (hc *h1conn) flush() error {
	if hc.bw.Buffered() == 0 {
		return nil
	}
	hc.setWriteDeadline(hc.rt.opts.IdleTimeout)
	return hc.bw.Flush()
}

func (hc *h1conn) serve() {
	rt := hc.rt
	defer func() {
		if p := recover(); p != nil {
			rt.log.Error("router: connection handler panicked", "panic", p, "stack", string(debug.Stack()))
		}
		hc.close()
		rt.trackH1(hc, false)
	}()
	for {
		if hc.br.Buffered() == 0 {
			hc.setReadDeadline(rt.opts.ClientIdleTimeout)
			if _, err := hc.br.Peek(1); err != nil {
				return
			}
		}
		if !hc.state.CompareAndSwap(h1Idle, h1Active) {
			return // shutting down
		}
		if buf, _ := hc.br.Peek(hc.br.Buffered()); headEnd(buf, 0) == 0 {
			// The head is still coming: it has ReadHeaderTimeout to.
			hc.setReadDeadline(rt.opts.ReadHeaderTimeout)
		}
		head, err := hc.readHead()
		if err != nil {
			hc.reject(err)
			return
		}
		rq := rt.reqs.Get().(*reqState)
		rq.hc, rq.fe = hc, hc.fe
		// The request is parsed from a copy of its head, so the client's
		// buffer is free for the body and the fields stay valid through
		// retries.
		rq.headBuf = append(rq.headBuf[:0], head...)
		_, _ = hc.br.Discard(len(head))
		keep := hc.handle(rq)
		tun := rq.tun
		rq.reset()
		rt.reqs.Put(rq)
		if tun != nil {
			rt.runTunnel(tun)
			return
		}
		if !keep || !hc.state.CompareAndSwap(h1Active, h1Idle) || rt.isClosed() {
			return
		}
	}
}

// readHead reads a request head, growing the read buffer up to
// MaxHeaderBytes for big ones.
func (hc *h1conn) readHead() ([]byte, error) {
	head, err := peekHead(hc.br)
	if err == errHeadTooLarge && hc.br.Size() < hc.rt.opts.MaxHeaderBytes {
		n := hc.br.Buffered()
		buf, _ := hc.br.Peek(n)
		old := append([]byte(nil), buf...)
		hc.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(old), hc.nc), hc.rt.opts.MaxHeaderBytes)
		head, err = peekHead(hc.br)
	}
	if err == errHeadTooLarge {
		return nil, errRequestTooLarge
	}
	return head, err
}

// reject answers a request that cannot be parsed and closes.
func (hc *h1conn) reject(err error) {
	status := 0
	switch err {
	case errRequestTooLarge:
		status = http.StatusRequestHeaderFieldsTooLarge
	case errBadRequest, errMalformed:
		status = http.StatusBadRequest
	case errExpectation:
		status = http.StatusExpectationFailed
	case errNotImplemented:
		status = http.StatusNotImplemented
	case errVersion:
		status = http.StatusHTTPVersionNotSupported
	default:
		return // the client went away or timed out (slowloris)
	}
	hc.closeAfter = true
	hc.writeRaw(status, pageBadRequest, false)
}

// handle routes one request; false means the connection must close.
func (hc *h1conn) handle(rq *reqState) (keep bool) {
	rt := hc.rt
	q := &rq.req
	rq.start = rt.now()
	err := parseRequest(rq.headBuf, q)
	if err != nil {
		hc.reject(err)
		return false
	}
	hc.closeAfter = q.connClose || (q.http10 && !q.connKeepAlive)
	rq.method = append(rq.method[:0], q.method...)
	rq.uri = append(rq.uri[:0], q.target...)
	rq.host = append(rq.host[:0], q.host...)
	rq.setRequestID(q.rid, q.nRid)
	for i := range q.fields {
		if q.fields[i].kind == fieldXFF {
			rq.addForwardedFor(q.fields[i].v)
		}
	}
	rq.fwd = append(rq.fwd, hc.remote...)
	rq.upgrade = q.connUpgrade && len(q.upgrade) > 0
	if !q.hasBody() {
		q.bodyDone = true
	}
	abort := false
	defer func() {
		if p := recover(); p != nil {
			rt.log.Error("router: request handler panicked", "panic", p, "stack", string(debug.Stack()))
			if rq.held {
				rq.held = false
				rq.app.state.inflight.Add(-1)
			}
			if rq.app != nil && !rq.wroteHeader {
				hc.closeAfter = true
				rt.fail(rq, H99)
			}
			keep = false
		}
	}()
	t := rt.table.Load()
	app, code := rt.admit(t, rq, rq.host, q.bad || string(q.method) == http.MethodConnect)
	switch {
	case app == nil:
		if !q.bodyDone {
			hc.closeAfter = true
		}
		status, page := rt.unknownHost()
		rt.stats.request(status, 0)
		hc.writeRaw(status, page, string(rq.method) == http.MethodHead)
	case code != "":
		rt.fail(rq, code)
	default:
		rq.held = len(app.Backends) > 0
		abort = rt.proxy(rq, t)
		if rq.held {
			rq.held = false
			app.state.inflight.Add(-1)
		}
		rt.finish(rq)
	}
	if rq.tun != nil {
		return false
	}
	if err := hc.flush(); err != nil {
		return false
	}
	return !abort && !hc.closeAfter && q.bodyDone
}

// writeRaw writes a complete HTML response.
func (hc *h1conn) writeRaw(status int, body string, head bool) int {
	bw := hc.bw
	bw.WriteString("HTTP/1.1 ")
	writeUint(bw, uint64(status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache, no-store\r\nContent-Length: ")
	writeUint(bw, uint64(len(body)))
	if hc.closeAfter {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if !head {
		bw.WriteString(body)
	}
	_ = hc.flush()
	if head {
		return 0
	}
	return len(body)
}

// exchange sends the request on c and relays the response.
func (hc *h1conn) exchange(rq *reqState, c *conn) exResult {
	rt := hc.rt
	q := &rq.req
	hc.writeDynoHead(c.bw, rq)
	sendStart := rt.now()
	var sendErr error
	if !q.hasBody() {
		if err := c.bw.Flush(); err != nil {
			c.close()
			if c.reused {
				return exStale
			}
			return exRetry
		}
	} else {
		if q.expectContinue && !q.http10 && !q.sentContinue && hc.br.Buffered() == 0 {
			q.sentContinue = true
			hc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := hc.flush(); err != nil {
				c.close()
				rt.fail(rq, H27)
				return exAbort
			}
		}
		cerr, berr := hc.sendBody(rq, c)
		if cerr != nil {
			c.close()
			code := H27
			if isTimeout(cerr) {
				code = H28
			}
			rq.service = rt.now().Sub(sendStart)
			rt.fail(rq, code)
			return exAbort
		}
		if berr != nil && rq.bodyRead == 0 && c.reused {
			c.close()
			return exStale
		}
		sendErr = berr
	}
	head, res := rt.readHead(rq, c, sendStart, !q.hasBody(), sendErr)
	if head == nil {
		if res == exDone && !q.bodyDone {
			hc.closeAfter = true
		}
		return res
	}
	rh := &rq.rh
	if rh.status == http.StatusSwitchingProtocols {
		return hc.startTunnel(rq, c, head, sendStart)
	}
	method := rq.method
	bodyless := rh.bodyless(string(method))
	// How the body goes to the client: as the dyno framed it, or (no
	// length and no chunks: the body ends when the dyno closes) chunked
	// to an HTTP/1.1 client, or until close to an HTTP/1.0 one.
	reframe := !bodyless && rh.contentLength < 0 && !rh.chunked && !q.http10
	if !bodyless && rh.contentLength < 0 && q.http10 {
		hc.closeAfter = true
	}
	if !q.bodyDone {
		hc.closeAfter = true
	}
	hc.writeResponseHead(rq, rh, bodyless, reframe)
	_, _ = c.br.Discard(len(head))
	rq.status = rh.status
	rq.wroteHeader = true
	if bodyless {
		rq.service = rt.now().Sub(sendStart)
		rt.release(c, rh.reusable())
		return exDone
	}
	cerr, berr := hc.copyBody(rq, c, rh, reframe)
	return rt.bodyCopied(rq, c, rh, sendStart, cerr, berr)
}

// writeDynoHead writes the request head for the dyno from the parsed
// client head.
func (hc *h1conn) writeDynoHead(bw *bufio.Writer, rq *reqState) {
	q := &rq.req
	rt := hc.rt
	bw.Write(q.method)
	bw.WriteByte(' ')
	bw.Write(q.target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(q.host)
	bw.WriteString("\r\n")
	var via []string
	for i := range q.fields {
		f := &q.fields[i]
		switch f.kind {
		case fieldForward:
			bw.Write(f.k)
			bw.WriteString(": ")
			bw.Write(f.v)
			bw.WriteString("\r\n")
		case fieldVia:
			via = append(via, string(f.v))
		}
	}
	rt.writeForwarding(bw, rq, via)
	if rq.upgrade {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(q.upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case q.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case q.contentLength > 0 || string(q.method) == http.MethodPost || string(q.method) == http.MethodPut || string(q.method) == http.MethodPatch:
		bw.WriteString("Content-Length: ")
		writeUint(bw, uint64(q.contentLength))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// writeResponseHead writes the dyno's response head for the client.
func (hc *h1conn) writeResponseHead(rq *reqState, rh *respHead, bodyless, reframe bool) {
	bw := hc.bw
	bw.WriteString("HTTP/1.1 ")
	if len(rh.statusLine) > 13 {
		bw.Write(rh.statusLine[9:])
	} else {
		writeUint(bw, uint64(rh.status))
		bw.WriteByte(' ')
		bw.WriteString(http.StatusText(rh.status))
	}
	bw.WriteString("\r\n")
	for _, f := range rh.fields {
		bw.Write(f.k)
		bw.WriteString(": ")
		bw.Write(f.v)
		bw.WriteString("\r\n")
	}
	bw.WriteString("Via: ")
	bw.WriteString(hc.rt.via)
	bw.WriteString("\r\n")
	switch {
	case rh.contentLength >= 0:
		bw.WriteString("Content-Length: ")
		writeUint(bw, uint64(rh.contentLength))
		bw.WriteString("\r\n")
	case bodyless:
	case rh.chunked && !rq.req.http10, reframe:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case hc.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case rq.req.http10:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

// sendBody relays the request body to the dyno: Content-Length bytes, or
// chunks as they are. Client reads have a rolling idle deadline (H28).
func (hc *h1conn) sendBody(rq *reqState, c *conn) (clientErr, backendErr error) {
	q := &rq.req
	rt := hc.rt
	beforeBlock := func() error {
		// Before waiting for the client, hand the dyno what we have.
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				return err
			}
		}
		hc.setReadDeadline(rt.opts.IdleTimeout)
		return nil
	}
	var err error
	if q.chunked {
		var n int64
		n, clientErr, backendErr = relayChunks(c.bw, hc.br, true, beforeBlock)
		rq.bodyRead += n
	} else {
		clientErr, backendErr = relayN(c.bw, hc.br, q.contentLength, &rq.bodyRead, beforeBlock)
	}
	if clientErr != nil || backendErr != nil {
		return clientErr, backendErr
	}
	q.bodyDone = true
	if err = c.bw.Flush(); err != nil {
		return nil, err
	}
	return nil, nil
}

// copyBody relays the response body to the client. Dyno reads have a
// rolling idle deadline (H15); the client's buffer is flushed whenever the
// dyno has nothing more ready.
func (hc *h1conn) copyBody(rq *reqState, c *conn, rh *respHead, reframe bool) (clientErr, backendErr error) {
	rt := hc.rt
	beforeBlock := func() error {
		if err := hc.flush(); err != nil {
			return err
		}
		c.setReadDeadline(nowNano(rt.now), rt.opts.IdleTimeout, deadlineSlack(rt.opts.IdleTimeout))
		return nil
	}
	switch {
	case rh.contentLength >= 0:
		// beforeBlock's errors are the client's; relayN reports them as
		// write errors.
		dynoErr, clientErr := relayN(hc.bw, c.br, rh.contentLength, &rq.bytes, beforeBlock)
		return clientErr, dynoErr
	case rh.chunked:
		n, rerr, werr := relayChunks(hc.bw, c.br, !rq.req.http10, beforeBlock)
		rq.bytes += n
		return werr, rerr
	}
	// No framing: the body ends when the dyno closes.
	rh.connClose = true
	bufp := rt.bufs.Get().(*[]byte)
	defer rt.bufs.Put(bufp)
	buf := *bufp
	for {
		if c.br.Buffered() == 0 {
			if err := beforeBlock(); err != nil {
				return err, nil
			}
		}
		n, err := c.br.Read(buf)
		if n > 0 {
			rq.bytes += int64(n)
			var werr error
			if reframe {
				writeHex(hc.bw, uint64(n))
				hc.bw.WriteString("\r\n")
				hc.bw.Write(buf[:n])
				_, werr = hc.bw.WriteString("\r\n")
			} else {
				_, werr = hc.bw.Write(buf[:n])
			}
			if werr != nil {
				return werr, nil
			}
		}
		if err == io.EOF {
			if reframe {
				hc.bw.WriteString("0\r\n\r\n")
			}
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// relayN copies n bytes from src to dst through src's buffer, counting
// them in *count. It calls beforeBlock before each read that may wait;
// beforeBlock's errors count as write errors.
func relayN(dst *bufio.Writer, src *bufio.Reader, n int64, count *int64, beforeBlock func() error) (readErr, writeErr error) {
	for n > 0 {
		if src.Buffered() == 0 {
			if err := beforeBlock(); err != nil {
				return nil, err
			}
			if _, err := src.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err, nil
			}
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		p, _ := src.Peek(k)
		w, err := dst.Write(p)
		_, _ = src.Discard(w)
		n -= int64(w)
		*count += int64(w)
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// errBadChunk is a malformed chunked body.
var errBadChunk = errors.New("malformed chunked encoding")

// relayChunks copies a chunked body from src to dst: verbatim (raw) or
// decoded. It returns the payload bytes copied.
func relayChunks(dst *bufio.Writer, src *bufio.Reader, raw bool, beforeBlock func() error) (n int64, readErr, writeErr error) {
	readLine := func() ([]byte, error) {
		if src.Buffered() == 0 {
			if err := beforeBlock(); err != nil {
				return nil, err
			}
		}
		line, err := src.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, errBadChunk
		}
		return line, err
	}
	for {
		line, err := readLine()
		if err != nil {
			return n, err, nil
		}
		size, ok := chunkSize(line)
		if !ok {
			return n, errBadChunk, nil
		}
		if raw {
			if _, err := dst.Write(line); err != nil {
				return n, nil, err
			}
		}
		if size == 0 {
			// Trailer section, up to a blank line.
			for {
				line, err := readLine()
				if err != nil {
					return n, err, nil
				}
				if raw {
					if _, err := dst.Write(line); err != nil {
						return n, nil, err
					}
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return n, nil, nil
				}
			}
		}
		var got int64
		rerr, werr := relayN(dst, src, size, &got, beforeBlock)
		n += got
		if rerr != nil || werr != nil {
			return n, rerr, werr
		}
		line, err = readLine()
		if err != nil {
			return n, err, nil
		}
		if len(bytes.TrimRight(line, "\r\n")) != 0 {
			return n, errBadChunk, nil
		}
		if raw {
			if _, err := dst.Write(line); err != nil {
				return n, nil, err
			}
		}
	}
}

// chunkSize parses a chunk-size line (hex size, optional extensions).
func chunkSize(line []byte) (int64, bool) {
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = trimOWS(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// startTunnel completes an upgrade on the router's own connection: the
// dyno's 101 goes to the client, and the serve loop splices the two.
func (hc *h1conn) startTunnel(rq *reqState, c *conn, head []byte, sendStart time.Time) exResult {
	rt := hc.rt
	rh := &rq.rh
	bw := hc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(rh.statusLine[9:])
	bw.WriteString("\r\n")
	for _, f := range rh.fields {
		bw.Write(f.k)
		bw.WriteString(": ")
		bw.Write(f.v)
		bw.WriteString("\r\n")
	}
	bw.WriteString("Connection: Upgrade\r\nVia: ")
	bw.WriteString(rt.via)
	bw.WriteString("\r\n\r\n")
	_, _ = c.br.Discard(len(head))
	if n := c.br.Buffered(); n > 0 {
		p, _ := c.br.Peek(n)
		bw.Write(p)
		_, _ = c.br.Discard(n)
	}
	rq.wroteHeader = true
	rq.status = http.StatusSwitchingProtocols
	rq.service = rt.now().Sub(sendStart)
	werr := hc.flush()
	if n := hc.br.Buffered(); werr == nil && n > 0 {
		p, _ := hc.br.Peek(n)
		_, werr = c.nc.Write(p)
		_, _ = hc.br.Discard(n)
	}
	if werr != nil {
		c.close()
		rt.failLate(rq, H27)
		return exAbort
	}
	_ = hc.nc.SetDeadline(time.Time{})
	rt.finish(rq)
	rq.tun = &tunnel{client: hc.nc, dyno: c.nc}
	return exDone
}

func listenerPort(ln net.Listener) string {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return strconv.Itoa(a.Port)
	}
	if _, p, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		return p
	}
	return ""
}
