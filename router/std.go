package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The net/http front end: HTTPS with HTTP/1.1 and HTTP/2 (and any
// listener handed to ServeStd). Plain HTTP/1.1 goes through h1.go.

func (f *frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := f.rt
	rq := rt.reqs.Get().(*reqState)
	rq.fe, rq.w, rq.r = f, w, r
	abort := rt.handleStd(w, r, rq)
	if t := rq.tun; t != nil {
		rt.runTunnel(t)
	}
	rq.reset()
	rt.reqs.Put(rq)
	if abort {
		// The response is incomplete: make net/http drop the connection
		// instead of ending the response normally.
		panic(http.ErrAbortHandler)
	}
}

// handleStd routes one request. It reports whether the client connection
// must be dropped (a response cut short).
func (rt *Router) handleStd(w http.ResponseWriter, r *http.Request, rq *reqState) (abort bool) {
	rq.start = rt.now()
	defer func() {
		if p := recover(); p != nil {
			rt.log.Error("router: request handler panicked", "panic", p, "stack", string(debug.Stack()))
			if rq.app != nil && !rq.wroteHeader {
				rt.fail(rq, H99)
			} else {
				abort = true
			}
		}
	}()
	uri := r.RequestURI
	if uri == "" || (uri[0] != '/' && uri != "*") {
		uri = r.URL.RequestURI()
	}
	rq.method = append(rq.method[:0], r.Method...)
	rq.uri = append(rq.uri[:0], uri...)
	rq.host = append(rq.host[:0], r.Host...)
	if ids := r.Header["X-Request-Id"]; len(ids) > 0 {
		rq.setRequestID([]byte(ids[0]), len(ids))
	} else {
		rq.setRequestID(nil, 0)
	}
	for _, v := range r.Header["X-Forwarded-For"] {
		rq.addForwardedFor([]byte(v))
	}
	rq.fwd = append(rq.fwd, clientIP(r.RemoteAddr)...)
	rq.upgrade = isUpgrade(r)
	t := rt.table.Load()
	app, code := rt.admit(t, rq, rq.host, r.Method == http.MethodConnect || !withinLimits(r))
	switch {
	case app == nil:
		status, page := rt.unknownHost()
		rt.stats.request(status, 0)
		writePage(w, status, page)
		return false
	case code != "":
		rt.fail(rq, code)
		return false
	}
	if len(app.Backends) > 0 {
		defer app.state.inflight.Add(-1)
	}
	abort = rt.proxy(rq, t)
	rt.finish(rq)
	return abort
}

// stdExchange sends the request on c and relays the response through
// net/http's ResponseWriter.
func (rt *Router) stdExchange(rq *reqState, c *conn) exResult {
	w, r := rq.w, rq.r
	rt.writeStdHead(c.bw, r, rq)
	hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
	sendStart := rt.now()
	var sendErr error
	if !hasBody {
		if err := c.bw.Flush(); err != nil {
			c.close()
			if c.reused {
				return exStale
			}
			return exRetry
		}
	} else {
		cerr, berr := rt.sendStdBody(w, r, rq, c)
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
	head, res := rt.readHead(rq, c, sendStart, !hasBody, sendErr)
	if head == nil {
		return res
	}
	rh := &rq.rh
	if rh.status == http.StatusSwitchingProtocols {
		return rt.startStdTunnel(rq, c, head, sendStart)
	}
	h := w.Header()
	fieldsToHeader(rh.fields, h)
	if rh.contentLength >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(rh.contentLength, 10)}
	}
	_, _ = c.br.Discard(len(head))
	if old := h["Via"]; old != nil {
		h["Via"] = []string{strings.Join(old, ", ") + ", " + rt.via}
	} else {
		h["Via"] = rt.viaHeader
	}
	rq.status = rh.status
	rq.wroteHeader = true
	w.WriteHeader(rh.status)
	if rh.bodyless(r.Method) {
		rq.service = rt.now().Sub(sendStart)
		rt.release(c, rh.reusable())
		return exDone
	}
	cerr, berr := rt.copyStdBody(w, rq, c, rh)
	return rt.bodyCopied(rq, c, rh, sendStart, cerr, berr)
}

// bodyCopied ends an exchange once the response body has been copied (or
// not): a dyno that failed mid-body is H15 (idle) or H18, a client that
// went away H27; otherwise the connection goes back to the pool.
func (rt *Router) bodyCopied(rq *reqState, c *conn, rh *respHead, sendStart time.Time, cerr, berr error) exResult {
	rq.service = rt.now().Sub(sendStart)
	switch {
	case berr != nil:
		c.close()
		if isTimeout(berr) {
			rt.failLate(rq, H15)
		} else {
			rt.failLate(rq, H18)
		}
		return exAbort
	case cerr != nil:
		c.close()
		rt.failLate(rq, H27)
		return exAbort
	}
	rt.release(c, rh.reusable())
	return exDone
}

// readHead waits for the dyno's response head (skipping informational
// responses) and parses it into rq.rh. On failure it answers the error
// (or asks for a retry) and returns a nil head.
func (rt *Router) readHead(rq *reqState, c *conn, sendStart time.Time, retryable bool, sendErr error) ([]byte, exResult) {
	// The dyno has the request: it has FirstByteTimeout to start answering.
	c.setReadDeadline(nowNano(rt.now), rt.opts.FirstByteTimeout, deadlineSlack(rt.opts.FirstByteTimeout))
	rh := &rq.rh
	for {
		head, err := peekHead(c.br)
		if err != nil {
			c.close()
			rq.service = rt.now().Sub(sendStart)
			switch {
			case errors.Is(err, syscall.ETIMEDOUT):
				// The dyno's node stopped acknowledging what was sent
				// (Options.UnackedTimeout): it is gone. Quarantine its
				// dynos; an idempotent request with nothing received
				// goes to another dyno.
				if t := rt.Table(); t != nil && c.be.Node != "" {
					t.quarantineNode(c.be.Node, nowNano(rt.now), rt.opts.Quarantine)
				} else {
					c.be.quarantine(nowNano(rt.now), rt.opts.Quarantine)
				}
				if retryable && idempotent(rq.method) && !rq.closeRetried {
					rq.closeRetried, rq.lastCode = true, H13
					return nil, exRetry
				}
				rt.fail(rq, H13)
			case isTimeout(err):
				rq.service = rt.opts.FirstByteTimeout
				rt.fail(rq, H12)
			case err == errMalformed || err == errHeadTooLarge:
				rt.fail(rq, H17)
			case c.reused && retryable && idempotent(rq.method) && isClosedBeforeResponse(err):
				return nil, exStale
			case retryable && idempotent(rq.method) && isClosedBeforeResponse(err) && !rq.closeRetried:
				// A new connection closed with nothing sent back: the
				// dyno died (kill -9, crash) with the request. Nothing
				// passed either way, so one other dyno gets it; this one
				// is quarantined like a refused connect. (Only once: a
				// request that crashes dynos must not take them all.)
				rq.closeRetried, rq.lastCode = true, H13
				c.be.quarantine(nowNano(rt.now), rt.opts.Quarantine)
				return nil, exRetry
			default:
				if sendErr != nil {
					rt.log.Debug("router: dyno stopped reading the request", "app", rq.app.Name, "dyno", c.be.Name, "err", sendErr)
				}
				rt.fail(rq, H13)
			}
			return nil, exDone
		}
		if err := parseHead(head, rh); err != nil {
			c.close()
			rq.service = rt.now().Sub(sendStart)
			rt.fail(rq, H17)
			return nil, exDone
		}
		if rh.status >= 100 && rh.status < 200 && rh.status != http.StatusSwitchingProtocols {
			// Informational responses (100 Continue: the router answers
			// the client's Expect itself) are not relayed.
			_, _ = c.br.Discard(len(head))
			continue
		}
		if rh.status == http.StatusSwitchingProtocols && !rq.upgrade {
			c.close()
			rt.fail(rq, H17)
			return nil, exDone
		}
		return head, exDone
	}
}

// fieldsToHeader adds parsed response fields to a header map (one string
// allocation for all values).
func fieldsToHeader(fields []hfield, h http.Header) {
	n := 0
	for _, f := range fields {
		n += len(f.v)
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, f := range fields {
		sb.Write(f.v)
	}
	all := sb.String()
	vals := make([]string, len(fields))
	off := 0
	for i, f := range fields {
		vals[i] = all[off : off+len(f.v)]
		off += len(f.v)
		k := textproto.CanonicalMIMEHeaderKey(string(f.k))
		if old := h[k]; old != nil {
			h[k] = append(old, vals[i])
		} else {
			h[k] = vals[i : i+1 : i+1]
		}
	}
}

// writeStdHead writes the request line and headers for the dyno.
func (rt *Router) writeStdHead(bw *bufio.Writer, r *http.Request, rq *reqState) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.Write(rq.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	if cv := r.Header["Connection"]; len(cv) > 0 {
		rq.connTokens = connectionTokens(rq.connTokens[:0], cv)
	}
	for k, vv := range r.Header {
		if skipRequestHeader(k) || rq.connListed(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	rt.writeForwarding(bw, rq, r.Header["Via"])
	if rq.upgrade {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(strings.Join(r.Header["Upgrade"], ", "))
		bw.WriteString("\r\n")
	}
	switch {
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		writeUint(bw, uint64(r.ContentLength))
		bw.WriteString("\r\n")
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Header["Content-Length"] != nil:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
}

// writeForwarding writes the headers the router adds: X-Forwarded-*,
// X-Request-Start, X-Request-Id, Via (after the client's), and Vegur's
// Connect-Time and Total-Route-Time.
func (rt *Router) writeForwarding(bw *bufio.Writer, rq *reqState, via []string) {
	bw.WriteString("X-Forwarded-For: ")
	bw.Write(rq.fwd)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(rq.fe.proto)
	bw.WriteString("\r\nX-Forwarded-Port: ")
	bw.WriteString(rq.fe.port)
	bw.WriteString("\r\nX-Request-Start: ")
	writeUint(bw, uint64(rq.start.UnixMilli()))
	bw.WriteString("\r\nX-Request-Id: ")
	bw.Write(rq.rid)
	bw.WriteString("\r\nVia: ")
	for _, v := range via {
		bw.WriteString(v)
		bw.WriteString(", ")
	}
	bw.WriteString(rt.via)
	bw.WriteString("\r\nConnect-Time: ")
	writeUint(bw, uint64(rq.connect.Milliseconds()))
	bw.WriteString("\r\nTotal-Route-Time: ")
	writeUint(bw, uint64(rt.now().Sub(rq.start).Milliseconds()))
	bw.WriteString("\r\n")
}

// sendStdBody streams the request body to the dyno (chunked when its
// length is unknown), with a rolling idle deadline on the client's side.
func (rt *Router) sendStdBody(w http.ResponseWriter, r *http.Request, rq *reqState, c *conn) (clientErr, backendErr error) {
	bufp := rt.bufs.Get().(*[]byte)
	defer rt.bufs.Put(bufp)
	buf := *bufp
	chunked := r.ContentLength < 0
	rc := http.NewResponseController(w)
	var deadline int64
	for {
		now := nowNano(rt.now)
		if want := now + int64(rt.opts.IdleTimeout); want-deadline > int64(time.Second) {
			deadline = want
			_ = rc.SetReadDeadline(time.Unix(0, want))
		}
		n, err := r.Body.Read(buf)
		if n > 0 {
			rq.bodyRead += int64(n)
			if chunked {
				writeHex(c.bw, uint64(n))
				c.bw.WriteString("\r\n")
				c.bw.Write(buf[:n])
				_, backendErr = c.bw.WriteString("\r\n")
			} else {
				_, backendErr = c.bw.Write(buf[:n])
			}
			if backendErr != nil {
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err, nil
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	if backendErr == nil {
		if chunked {
			c.bw.WriteString("0\r\n\r\n")
		}
		backendErr = c.bw.Flush()
	}
	return nil, backendErr
}

// copyStdBody relays the response body with a rolling idle deadline
// (H15), flushing streamed responses whenever the dyno pauses.
func (rt *Router) copyStdBody(w http.ResponseWriter, rq *reqState, c *conn, rh *respHead) (clientErr, backendErr error) {
	remaining := rh.contentLength
	var flusher http.Flusher
	if remaining < 0 {
		flusher, _ = w.(http.Flusher)
	}
	var body io.Reader = c.br
	if rh.chunked {
		body = httputil.NewChunkedReader(c.br)
	}
	var bufp *[]byte
	defer func() {
		if bufp != nil {
			rt.bufs.Put(bufp)
		}
	}()
	for remaining != 0 {
		var p []byte
		peeked := false
		if !rh.chunked && c.br.Buffered() > 0 {
			n := c.br.Buffered()
			if remaining >= 0 && int64(n) > remaining {
				n = int(remaining)
			}
			p, _ = c.br.Peek(n)
			peeked = true
		} else {
			c.setReadDeadline(nowNano(rt.now), rt.opts.IdleTimeout, deadlineSlack(rt.opts.IdleTimeout))
			if bufp == nil {
				bufp = rt.bufs.Get().(*[]byte)
			}
			buf := *bufp
			if remaining >= 0 && remaining < int64(len(buf)) {
				buf = buf[:remaining]
			}
			n, err := body.Read(buf)
			p = buf[:n]
			if err != nil && n == 0 {
				if err == io.EOF {
					if remaining > 0 {
						return nil, io.ErrUnexpectedEOF
					}
					if rh.chunked {
						if err := skipTrailer(c.br); err != nil {
							return nil, err
						}
					} else {
						rh.connClose = true // body ended by close
					}
					break
				}
				return nil, err
			}
		}
		if len(p) > 0 {
			wn, werr := w.Write(p)
			rq.bytes += int64(wn)
			if peeked {
				_, _ = c.br.Discard(len(p))
			}
			if remaining > 0 {
				remaining -= int64(len(p))
			}
			if werr != nil {
				return werr, nil
			}
		}
		if flusher != nil && c.br.Buffered() == 0 {
			flusher.Flush()
		}
	}
	return nil, nil
}

// skipTrailer consumes a chunked body's trailer section.
func skipTrailer(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// startStdTunnel completes an upgrade: it hands the client the dyno's 101
// response and queues the splice (run once the request's counters are
// released, since a tunnel is not a request in flight).
func (rt *Router) startStdTunnel(rq *reqState, c *conn, head []byte, sendStart time.Time) exResult {
	cc, brw, err := http.NewResponseController(rq.w).Hijack()
	if err != nil {
		c.close()
		rt.fail(rq, H99)
		return exDone
	}
	rq.wroteHeader = true
	rq.status = http.StatusSwitchingProtocols
	_ = cc.SetDeadline(time.Time{})
	_, werr := cc.Write(head)
	_, _ = c.br.Discard(len(head))
	if n := c.br.Buffered(); werr == nil && n > 0 {
		p, _ := c.br.Peek(n)
		_, werr = cc.Write(p)
		_, _ = c.br.Discard(n)
	}
	if n := brw.Reader.Buffered(); werr == nil && n > 0 {
		p, _ := brw.Reader.Peek(n)
		_, werr = c.nc.Write(p)
		_, _ = brw.Reader.Discard(n)
	}
	rq.service = rt.now().Sub(sendStart)
	if werr != nil {
		cc.Close()
		c.close()
		rt.failLate(rq, H27)
		return exDone
	}
	rt.finish(rq)
	rq.tun = &tunnel{client: cc, dyno: c.nc}
	return exDone
}

func isUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 || len(r.Header["Upgrade"]) == 0 {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

func connectionTokens(dst []string, vals []string) []string {
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || strings.EqualFold(tok, "close") || strings.EqualFold(tok, "keep-alive") || strings.EqualFold(tok, "upgrade") {
				continue
			}
			dst = append(dst, tok)
		}
	}
	return dst
}

func (rq *reqState) connListed(k string) bool {
	for _, t := range rq.connTokens {
		if strings.EqualFold(t, k) {
			return true
		}
	}
	return false
}

func withinLimits(r *http.Request) bool {
	if len(r.Method)+len(r.RequestURI)+10 > maxRequestLine {
		return false
	}
	n := 0
	for k, vv := range r.Header {
		if len(k) > maxHeaderName {
			return false
		}
		for _, v := range vv {
			n++
			if len(k)+2+len(v) > maxHeaderLine {
				return false
			}
		}
	}
	return n <= maxHeaders
}
