package router

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strconv"
)

// Errors parsing a backend's response (H17).
var (
	errMalformed    = errors.New("malformed HTTP response")
	errHeadTooLarge = errors.New("response head too large")
)

// hfield is one header field, as slices of a head still in a buffer.
type hfield struct{ k, v []byte }

// respHead is a parsed response head. Fields holds the end-to-end
// headers (not the hop-by-hop ones, nor Content-Length and
// Transfer-Encoding, which the router writes itself), as slices of the
// head: valid until the head is discarded from the reader.
type respHead struct {
	status        int
	http10        bool
	contentLength int64 // -1: not given
	chunked       bool
	// otherTE: a Transfer-Encoding other than chunked (body until close).
	otherTE   bool
	connClose bool
	keepAlive bool // HTTP/1.0 with Connection: keep-alive
	// statusLine is the whole status line (for the reason phrase).
	statusLine []byte
	fields     []hfield
	// connTokens lists other headers named in Connection (hop-by-hop).
	connTokens [][]byte
}

// peekHead waits until the reader holds a whole response head (up to the
// blank line) and returns it without consuming it. The head must fit in
// the reader's buffer.
func peekHead(br *bufio.Reader) ([]byte, error) {
	from := 0
	for {
		n := br.Buffered()
		if n == 0 {
			if _, err := br.Peek(1); err != nil {
				return nil, err
			}
			continue
		}
		buf, _ := br.Peek(n)
		if end := headEnd(buf, from); end > 0 {
			return buf[:end], nil
		}
		if n >= br.Size() {
			return nil, errHeadTooLarge
		}
		from = max(0, n-3)
		if _, err := br.Peek(n + 1); err != nil {
			if n > 0 && isClosedBeforeResponse(err) {
				return nil, errMalformed
			}
			return nil, err
		}
	}
}

// headEnd finds the end of a head (after "\n\r\n" or "\n\n") at or after
// from; 0 when not there yet.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
	return 0
}

// parseHead parses a response head into rh.
func parseHead(head []byte, rh *respHead) error {
	*rh = respHead{contentLength: -1, fields: rh.fields[:0], connTokens: rh.connTokens[:0]}
	line, rest := nextLine(head)
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return errMalformed
	}
	switch line[7] {
	case '1':
	case '0':
		rh.http10 = true
	default:
		return errMalformed
	}
	if len(line) > 12 && line[12] != ' ' {
		return errMalformed
	}
	st := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errMalformed
		}
		st = st*10 + int(c-'0')
	}
	if st < 100 {
		return errMalformed
	}
	for _, c := range line[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errMalformed
		}
	}
	rh.status, rh.statusLine = st, line
	for len(rest) > 0 {
		var l []byte
		l, rest = nextLine(rest)
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			return errMalformed // obsolete line folding
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !validToken(l[:colon]) {
			return errMalformed
		}
		k, v := l[:colon], trimOWS(l[colon+1:])
		if !validValue(v) {
			return errMalformed
		}
		switch {
		case headerIs(k, "Content-Length"):
			cl, ok := parseLength(v)
			if !ok || (rh.contentLength >= 0 && rh.contentLength != cl) {
				return errMalformed
			}
			rh.contentLength = cl
			continue
		case headerIs(k, "Transfer-Encoding"):
			last := v
			if i := bytes.LastIndexByte(v, ','); i >= 0 {
				last = trimOWS(v[i+1:])
			}
			if asciiEqualFold(last, "chunked") {
				rh.chunked = true
			} else {
				rh.otherTE = true
			}
			continue
		case headerIs(k, "Connection"):
			for len(v) > 0 {
				var tok []byte
				if i := bytes.IndexByte(v, ','); i >= 0 {
					tok, v = trimOWS(v[:i]), v[i+1:]
				} else {
					tok, v = trimOWS(v), nil
				}
				switch {
				case asciiEqualFold(tok, "close"):
					rh.connClose = true
				case asciiEqualFold(tok, "keep-alive"):
					rh.keepAlive = true
				case asciiEqualFold(tok, "upgrade"), len(tok) == 0:
				default:
					rh.connTokens = append(rh.connTokens, tok)
				}
			}
			continue
		case headerIs(k, "Keep-Alive"), headerIs(k, "Proxy-Connection"), headerIs(k, "TE"), headerIs(k, "Trailer"),
			headerIs(k, "Proxy-Authenticate"):
			continue
		case headerIs(k, "Upgrade"):
			if st != http.StatusSwitchingProtocols {
				continue
			}
		}
		rh.fields = append(rh.fields, hfield{k: k, v: v})
	}
	if len(rh.connTokens) > 0 {
		kept := rh.fields[:0]
		for _, f := range rh.fields {
			drop := false
			for _, t := range rh.connTokens {
				if bytes.EqualFold(f.k, t) {
					drop = true
					break
				}
			}
			if !drop {
				kept = append(kept, f)
			}
		}
		rh.fields = kept
	}
	if rh.chunked || rh.otherTE {
		rh.contentLength = -1
	}
	return nil
}

// parseLength parses a Content-Length value.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validValue rejects control characters (other than tab) in a value.
func validValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// headerIs compares a header name with a canonical one, ignoring case.
func headerIs(k []byte, name string) bool { return len(k) == len(name) && asciiEqualFold(k, name) }

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	return bytes.TrimSuffix(line, []byte{'\r'}), rest
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken[S string | []byte](s S) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

// tokenChars marks the bytes allowed in a token. It is only read.
var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// bodyless reports whether a response to method with this status has no
// body whatever its headers say.
func (rh *respHead) bodyless(method string) bool {
	return method == http.MethodHead || rh.status == http.StatusNoContent || rh.status == http.StatusNotModified ||
		(rh.status >= 100 && rh.status < 200)
}

// reusable reports whether the connection can carry another request once
// this response's body has been read.
func (rh *respHead) reusable() bool {
	if rh.connClose || rh.otherTE {
		return false
	}
	if rh.http10 && !rh.keepAlive {
		return false
	}
	return true
}

// hopHeaders are never forwarded to a dyno (RFC 9110 7.6.1, plus the
// ones the router sets itself).
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Proxy-Authorization", "Expect", "Content-Length", "Host",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Request-Start", "X-Request-Id", "Via",
		"Connect-Time", "Total-Route-Time":
		return true
	}
	return false
}

// writeUint writes n in decimal without allocating.
func writeUint(bw *bufio.Writer, n uint64) {
	_, _ = bw.Write(strconv.AppendUint(bw.AvailableBuffer(), n, 10))
}

// writeHex writes n in hexadecimal (chunk sizes) without allocating.
func writeHex(bw *bufio.Writer, n uint64) {
	_, _ = bw.Write(strconv.AppendUint(bw.AvailableBuffer(), n, 16))
}
