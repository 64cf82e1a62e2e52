package memnet

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// StreamBufferSize is how many bytes one direction of a stream connection
// buffers before Write blocks until the peer reads.
const StreamBufferSize = 16 << 20

// maxBacklog bounds the connections waiting for Accept on one listener.
const maxBacklog = 4096

// Reader states of a pipe.
const (
	readerOpen   = iota
	readerShut   // CloseRead: incoming data is discarded
	readerClosed // Close: writes fail with EPIPE
)

// pipe is one direction of a stream connection.
type pipe struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	eof    bool          // the writer sends nothing more (Close or CloseWrite)
	reader int           // readerOpen, readerShut or readerClosed
	reset  bool          // the connection was reset; everything fails
	waitCh chan struct{} // closed on the next state change; nil if nobody waits
}

// signalLocked wakes everybody waiting for a state change.
func (p *pipe) signalLocked() {
	if p.waitCh != nil {
		close(p.waitCh)
		p.waitCh = nil
	}
}

// waitLocked returns a channel closed on the next state change.
func (p *pipe) waitLocked() <-chan struct{} {
	if p.waitCh == nil {
		p.waitCh = make(chan struct{})
	}
	return p.waitCh
}

func (p *pipe) closeWriter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eof = true
	p.signalLocked()
}

func (p *pipe) closeReader(state int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if state > p.reader {
		p.reader = state
	}
	p.buf = bytes.Buffer{}
	p.signalLocked()
}

func (p *pipe) breakPipe() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset = true
	p.buf = bytes.Buffer{}
	p.signalLocked()
}

// pair is a stream connection: end a (the dialer, on hostA) and end b (the
// accepted side, on hostB).
type pair struct {
	hostA, hostB string
	a, b         *conn
}

func newPair(n *Network, hostA string, addrA *net.TCPAddr, hostB string, addrB *net.TCPAddr) *pair {
	ab, ba := &pipe{}, &pipe{}
	p := &pair{hostA: hostA, hostB: hostB}
	p.a = &conn{n: n, pair: p, rd: ba, wr: ab, local: addrA, remote: addrB}
	p.b = &conn{n: n, pair: p, rd: ab, wr: ba, local: addrB, remote: addrA}
	return p
}

func (p *pair) reset() {
	p.a.rd.breakPipe()
	p.b.rd.breakPipe()
}

// conn is one end of a stream connection. It implements net.Conn plus
// CloseRead and CloseWrite like *net.TCPConn.
type conn struct {
	n             *Network
	pair          *pair
	rd, wr        *pipe
	local, remote *net.TCPAddr
	closed        atomic.Bool
	rdl, wdl      deadline
}

var _ net.Conn = (*conn)(nil)

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Read reads data like (*net.TCPConn).Read.
func (c *conn) Read(b []byte) (int, error) {
	for {
		if c.closed.Load() {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if c.rdl.expired() {
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		p := c.rd
		p.mu.Lock()
		switch {
		case p.reset:
			p.mu.Unlock()
			return 0, c.opErr("read", os.NewSyscallError("read", syscall.ECONNRESET))
		case len(b) == 0:
			p.mu.Unlock()
			return 0, nil
		case p.buf.Len() > 0:
			n, _ := p.buf.Read(b)
			if p.buf.Len() == 0 && p.buf.Cap() > 64<<10 {
				p.buf = bytes.Buffer{} // release memory after bulk transfers
			}
			p.signalLocked()
			p.mu.Unlock()
			return n, nil
		case p.eof || p.reader != readerOpen:
			p.mu.Unlock()
			return 0, io.EOF
		}
		ch := p.waitLocked()
		p.mu.Unlock()
		select {
		case <-ch:
		case <-c.rdl.wait():
		}
	}
}

// Write writes data like (*net.TCPConn).Write. It blocks only while
// StreamBufferSize bytes are waiting for the peer to read them.
func (c *conn) Write(b []byte) (int, error) {
	n := 0
	for {
		if c.closed.Load() {
			return n, c.opErr("write", net.ErrClosed)
		}
		if c.wdl.expired() {
			return n, c.opErr("write", os.ErrDeadlineExceeded)
		}
		p := c.wr
		p.mu.Lock()
		switch {
		case p.reset:
			p.mu.Unlock()
			return n, c.opErr("write", os.NewSyscallError("write", syscall.ECONNRESET))
		case p.eof || p.reader == readerClosed:
			p.mu.Unlock()
			return n, c.opErr("write", os.NewSyscallError("write", syscall.EPIPE))
		case p.reader == readerShut:
			p.mu.Unlock()
			return len(b), nil
		case len(b) == 0:
			p.mu.Unlock()
			return 0, nil
		}
		if space := StreamBufferSize - p.buf.Len(); space > 0 {
			k := min(space, len(b)-n)
			p.buf.Write(b[n : n+k])
			n += k
			p.signalLocked()
			p.mu.Unlock()
			if n == len(b) {
				return n, nil
			}
			continue
		}
		ch := p.waitLocked()
		p.mu.Unlock()
		select {
		case <-ch:
		case <-c.wdl.wait():
		}
	}
}

// Close closes the connection. The peer reads the buffered data and then
// io.EOF; its writes fail with EPIPE.
func (c *conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.opErr("close", net.ErrClosed)
	}
	c.rd.closeReader(readerClosed)
	c.wr.closeWriter()
	c.rdl.set(time.Time{})
	c.wdl.set(time.Time{})
	c.n.release(c.pair)
	return nil
}

// CloseWrite shuts down the writing side: the peer reads io.EOF after the
// buffered data.
func (c *conn) CloseWrite() error {
	if c.closed.Load() {
		return c.opErr("close", net.ErrClosed)
	}
	c.wr.closeWriter()
	return nil
}

// CloseRead shuts down the reading side: Read returns io.EOF and data the
// peer sends is discarded.
func (c *conn) CloseRead() error {
	if c.closed.Load() {
		return c.opErr("close", net.ErrClosed)
	}
	c.rd.closeReader(readerShut)
	return nil
}

// LocalAddr returns the fake local address (the host's IP).
func (c *conn) LocalAddr() net.Addr { return cloneTCPAddr(c.local) }

// RemoteAddr returns the fake remote address (the peer host's IP).
func (c *conn) RemoteAddr() net.Addr { return cloneTCPAddr(c.remote) }

// SetDeadline sets both the read and the write deadline.
func (c *conn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opErr("set", net.ErrClosed)
	}
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; a blocked Read notices at once.
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opErr("set", net.ErrClosed)
	}
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline; a blocked Write notices at once.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opErr("set", net.ErrClosed)
	}
	c.wdl.set(t)
	return nil
}

func cloneTCPAddr(a *net.TCPAddr) *net.TCPAddr {
	ip := make(net.IP, len(a.IP))
	copy(ip, a.IP)
	return &net.TCPAddr{IP: ip, Port: a.Port}
}

// listener is a stream listener of a Host.
type listener struct {
	n    *Network
	host *Host
	port int
	addr *net.TCPAddr

	mu     sync.Mutex
	queue  []*conn
	closed bool
	waitCh chan struct{}
}

var _ net.Listener = (*listener)(nil)

// enqueue adds an incoming connection; it reports false if the listener is
// closed or its backlog is full. The caller holds n.mu.
func (l *listener) enqueue(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.queue) >= maxBacklog {
		return false
	}
	l.queue = append(l.queue, c)
	if l.waitCh != nil {
		close(l.waitCh)
		l.waitCh = nil
	}
	return true
}

// Accept waits for and returns the next connection. After Close it returns
// an error wrapping net.ErrClosed.
func (l *listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	for {
		if l.closed {
			l.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return c, nil
		}
		if l.waitCh == nil {
			l.waitCh = make(chan struct{})
		}
		ch := l.waitCh
		l.mu.Unlock()
		<-ch
		l.mu.Lock()
	}
}

// Close stops listening: later dials are refused, connections not yet
// accepted are reset, and the port is free for a new Listen.
func (l *listener) Close() error {
	l.n.mu.Lock()
	defer l.n.mu.Unlock()
	return l.closeLocked()
}

func (l *listener) closeLocked() error {
	if l.host.listeners[l.port] == l {
		delete(l.host.listeners, l.port)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return &net.OpError{Op: "close", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	l.closed = true
	queue := l.queue
	l.queue = nil
	if l.waitCh != nil {
		close(l.waitCh)
		l.waitCh = nil
	}
	l.mu.Unlock()
	for _, c := range queue {
		l.n.resetLocked(c.pair)
	}
	return nil
}

// Addr returns the listener's fake address.
func (l *listener) Addr() net.Addr { return cloneTCPAddr(l.addr) }
