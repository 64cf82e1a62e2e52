package dyno

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Attach errors.
var (
	ErrNotAttachable   = errors.New("the dyno is not an attached one-off dyno (or has ended)")
	ErrAlreadyAttached = errors.New("a client is already attached to the dyno")
	ErrNotHere         = errors.New("the dyno runs on another node")
	ErrUnknownDyno     = errors.New("no such dyno on this node")
)

// Stream is the terminal of an attached one-off dyno, as its client sees
// it: Read gives the dyno's output (io.EOF once it has exited), Write sends
// its input, CloseWrite ends its input (a ^D on the terminal), and Close
// detaches the client, which hangs the dyno up (SIGHUP; R16 and SIGKILL if
// it keeps running).
type Stream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// localStream is a Stream on this node's terminal. It owns the terminal:
// it closes it once the output has been read to its end, or when the
// client detaches (which hangs the terminal up).
type localStream struct {
	tty      *os.File
	once     sync.Once
	ttyOnce  sync.Once
	detached chan struct{}
}

func newLocalStream(tty *os.File) *localStream {
	return &localStream{tty: tty, detached: make(chan struct{})}
}

func (l *localStream) Read(p []byte) (int, error) {
	n, err := l.tty.Read(p)
	if err != nil && (errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF)) {
		// The terminal's last process has gone (or the client left).
		l.closeTTY()
		err = io.EOF
	}
	return n, err
}

func (l *localStream) closeTTY() { l.ttyOnce.Do(func() { l.tty.Close() }) }

func (l *localStream) Write(p []byte) (int, error) {
	select {
	case <-l.detached:
		return 0, os.ErrClosed
	default:
	}
	return l.tty.Write(p)
}

func (l *localStream) CloseWrite() error {
	_, err := l.Write([]byte{4}) // VEOF
	return err
}

func (l *localStream) Close() error {
	l.once.Do(func() { close(l.detached) })
	l.closeTTY()
	return nil
}

// Attach connects a client to an attached one-off dyno running (or about to
// run) on this node: the dyno starts once its client attaches, and is not
// run if none does within the attach timeout (R13). It waits for the dyno
// to be placed here until ctx ends (at most the attach timeout).
func (s *Supervisor) Attach(ctx context.Context, dynoID string) (Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AttachTimeout)
	defer cancel()
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("attaching to %s: %w", dynoID, ErrUnknownDyno)
	}
	for {
		s.mu.Lock()
		r, ch := s.runners[dynoID], s.changed
		s.mu.Unlock()
		if r != nil {
			st, err := r.attach(ctx)
			if err != nil {
				return nil, fmt.Errorf("attaching to %s: %w", r.d.Name, err)
			}
			return st, nil
		}
		if d, ok := s.cfg.Snap().DynoByID(dynoID); ok && d.Node != "" && d.Node != s.cfg.Node {
			return nil, fmt.Errorf("attaching to %s: %w (%s)", d.Name, ErrNotHere, d.Node)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("attaching to %s: %w", dynoID, ErrUnknownDyno)
		case <-ch:
		}
	}
}

// AttachRPCPath is the internal RPC route of Attach, for a client on
// another node: mount AttachHandler on it with
// node.HandleRPC("POST "+dyno.AttachRPCPath, sup.AttachHandler()).
//
// The request has no body. On success the answer is "101 Switching
// Protocols" (Upgrade: slipway-attach) and the connection then carries the
// dyno's terminal: from the node, raw output bytes until the dyno exits
// (then the connection closes); to the node, frames of a kind byte (0 data,
// 1 end of input), a big-endian uint16 length and that many bytes.
// Otherwise it answers 404 (not here), 409 (already attached) or 422 (not an
// attached one-off) with a Heroku-style {"id","message"} body.
const AttachRPCPath = "/internal/v1/dynos/{id}/attach"

const (
	frameData = 0
	frameEOF  = 1
	maxFrame  = 32 * 1024
)

// AttachHandler serves AttachRPCPath.
func (s *Supervisor) AttachHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		st, err := s.Attach(req.Context(), req.PathValue("id"))
		if err != nil {
			status, id := http.StatusNotFound, "not_found"
			switch {
			case errors.Is(err, ErrAlreadyAttached):
				status, id = http.StatusConflict, "conflict"
			case errors.Is(err, ErrNotAttachable):
				status, id = http.StatusUnprocessableEntity, "invalid_params"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "message": err.Error()})
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			st.Close()
			http.Error(w, "connection cannot be taken over", http.StatusInternalServerError)
			return
		}
		conn, brw, err := hj.Hijack()
		if err != nil {
			st.Close()
			return
		}
		_ = conn.SetDeadline(time.Time{})
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: slipway-attach\r\nConnection: Upgrade\r\n\r\n")
		if err := brw.Flush(); err != nil {
			conn.Close()
			st.Close()
			return
		}
		Pipe(&frameReader{r: brw.Reader}, conn, func() { conn.Close() }, st)
	})
}

// Pipe connects a client to a Stream until the dyno's output ends: in is
// the client's input (io.EOF: its input ended, anything else: it left), out
// its output; closeClient ends the client's connection.
func Pipe(in io.Reader, out io.Writer, closeClient func(), st Stream) {
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		if _, err := io.Copy(st, in); err == nil {
			_ = st.CloseWrite()
			return
		}
		st.Close() // the client has gone: hang up
	}()
	if _, err := io.Copy(out, st); err != nil {
		st.Close()
	}
	closeClient()
	<-inDone
	st.Close()
}

// frameReader decodes a client's framed input.
type frameReader struct {
	r    *bufio.Reader
	left int
	eof  bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.eof {
			return 0, io.EOF
		}
		var h [3]byte
		if _, err := io.ReadFull(f.r, h[:]); err != nil {
			return 0, io.ErrUnexpectedEOF // the client left without ending its input
		}
		switch h[0] {
		case frameData:
			f.left = int(binary.BigEndian.Uint16(h[1:]))
		case frameEOF:
			f.eof = true
		default:
			return 0, fmt.Errorf("attach: unknown frame kind %d", h[0])
		}
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	if err != nil {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// RPCRequester sends internal RPC requests (cluster.Node implements it).
type RPCRequester interface {
	RPCRequest(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error)
}

// DialAttach attaches to an attached one-off dyno on another node, whose
// internal RPC address is addr. ctx bounds the wait for the dyno.
func DialAttach(ctx context.Context, c RPCRequester, addr, dynoID string) (Stream, error) {
	path := strings.Replace(AttachRPCPath, "{id}", url.PathEscape(dynoID), 1)
	resp, err := c.RPCRequest(ctx, http.MethodPost, addr, path, nil)
	if err != nil {
		return nil, fmt.Errorf("attaching to %s on %s: %w", dynoID, addr, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		var e struct{ ID, Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		var sentinel error = ErrUnknownDyno
		switch resp.StatusCode {
		case http.StatusConflict:
			sentinel = ErrAlreadyAttached
		case http.StatusUnprocessableEntity:
			sentinel = ErrNotAttachable
		case http.StatusNotFound:
		default:
			sentinel = errors.New(resp.Status)
		}
		return nil, fmt.Errorf("attaching to %s on %s: %w: %s", dynoID, addr, sentinel, e.Message)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, fmt.Errorf("attaching to %s on %s: connection not upgraded", dynoID, addr)
	}
	return &remoteStream{rwc: rwc}, nil
}

// remoteStream is a Stream on another node's terminal.
type remoteStream struct {
	rwc io.ReadWriteCloser
	mu  sync.Mutex
}

func (r *remoteStream) Read(p []byte) (int, error) { return r.rwc.Read(p) }

func (r *remoteStream) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for len(p) > 0 {
		c := p
		if len(c) > maxFrame {
			c = c[:maxFrame]
		}
		buf := make([]byte, 3+len(c))
		buf[0] = frameData
		binary.BigEndian.PutUint16(buf[1:], uint16(len(c)))
		copy(buf[3:], c)
		if _, err := r.rwc.Write(buf); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

func (r *remoteStream) CloseWrite() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.rwc.Write([]byte{frameEOF, 0, 0})
	return err
}

func (r *remoteStream) Close() error { return r.rwc.Close() }
