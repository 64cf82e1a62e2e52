package router

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/fsm"
)

// Backend is one routable web dyno. Its identity fields never change; the
// counters and the connection pool are shared by every table the backend
// appears in.
type Backend struct {
	key      string
	DynoID   string
	Name     string // web.1
	Addr     string // host:port
	Zone     string
	Node     string
	inflight atomic.Int64
	// quarantinedUntil is a Unix-nano time before which the backend is
	// skipped while others are available.
	quarantinedUntil atomic.Int64
	// strikes counts quarantines since the last successful connect: each
	// one lasts twice as long as the one before (up to 8 × the base), as
	// outlier ejection does, so a dyno that stays unreachable costs a
	// request now and then rather than every few seconds.
	strikes atomic.Int32
	retired atomic.Bool
	pool    connPool
}

func newBackend(key string, d *fsm.Dyno, po poolOptions) *Backend {
	b := &Backend{key: key, DynoID: d.ID, Name: d.Name, Addr: joinHostPort(d.Addr, d.Port), Zone: d.Zone, Node: d.Node}
	b.pool.opts = po
	return b
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, itoa(port)) }

func (b *Backend) quarantined(now int64) bool { return b.quarantinedUntil.Load() > now }

// quarantine takes the backend out of rotation for base, doubled for each
// earlier strike since its last successful connect (at most 8 × base).
func (b *Backend) quarantine(now int64, base time.Duration) {
	n := b.strikes.Add(1)
	until := now + int64(base)<<min(n-1, 3)
	for {
		cur := b.quarantinedUntil.Load()
		if cur >= until || b.quarantinedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// connected clears the strikes after a successful connect.
func (b *Backend) connected() {
	if b.strikes.Load() != 0 {
		b.strikes.Store(0)
	}
}

// retire marks a backend gone from the table: its idle connections close
// now, busy ones when their request ends.
func (b *Backend) retire() {
	b.retired.Store(true)
	b.pool.closeIdle(0, true)
}

// poolOptions size and time backend keep-alive pools.
type poolOptions struct {
	maxIdle     int
	idleTimeout time.Duration
	// probeAfter: a connection idle longer than this is checked for a
	// close by the app before reuse (one non-blocking read).
	probeAfter time.Duration
	readSize   int
	writeSize  int
}

// conn is a keep-alive connection to a backend.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	be     *Backend
	idleAt int64 // Unix nano, when it went back to the pool
	reused bool
	// deadline is the read deadline last set (Unix nano), to skip
	// resetting it when it barely moves.
	deadline int64
}

// connPool is a LIFO stack of idle connections: the most recently used
// connection is reused first, so surplus ones age out.
type connPool struct {
	opts poolOptions
	mu   sync.Mutex
	idle []*conn
}

// get takes an idle connection, discarding ones the app closed.
func (p *connPool) get(now int64) *conn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now-c.idleAt > int64(p.opts.idleTimeout) {
			c.close()
			continue
		}
		if now-c.idleAt > int64(p.opts.probeAfter) && !c.alive() {
			c.close()
			continue
		}
		c.reused = true
		return c
	}
}

// put returns a connection to the pool; false means it was closed instead.
func (p *connPool) put(c *conn, now int64, retired bool) {
	if retired {
		c.close()
		return
	}
	c.idleAt = now
	p.mu.Lock()
	if len(p.idle) >= p.opts.maxIdle {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// closeIdle closes connections idle since before cutoff (Unix nano), or
// all idle ones.
func (p *connPool) closeIdle(cutoff int64, all bool) int {
	p.mu.Lock()
	var drop []*conn
	keep := p.idle[:0]
	for _, c := range p.idle {
		if all || c.idleAt < cutoff {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, c := range drop {
		c.close()
	}
	return len(drop)
}

func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

func (c *conn) close() { _ = c.nc.Close() }

// alive checks an idle connection with a non-blocking read: an app that
// closed it (keep-alive timeout) shows EOF; anything buffered is a
// protocol error too.
func (c *conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	_ = c.nc.SetReadDeadline(time.Unix(0, 1))
	var one [1]byte
	n, err := c.nc.Read(one[:])
	c.deadline = 0
	if n > 0 {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// setReadDeadline sets the read deadline d from now. To save timer
// updates, the deadline set is up to slack later than asked, and an
// existing one already in [now+d, now+d+slack] is kept: it never fires
// early, and at most slack late.
func (c *conn) setReadDeadline(now int64, d time.Duration, slack time.Duration) {
	want := now + int64(d)
	if c.deadline >= want && c.deadline-want <= int64(slack) && slack > 0 {
		return
	}
	c.deadline = want + int64(slack)/2
	_ = c.nc.SetReadDeadline(time.Unix(0, c.deadline))
}

// deadlineSlack is how late a timeout of d may fire (a tenth, at most a
// second).
func deadlineSlack(d time.Duration) time.Duration { return min(time.Second, d/10) }

// Dialer opens connections to backends.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

func defaultDialer(timeout, unacked time.Duration) Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second, Control: unackedTimeoutControl(unacked)}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// dialError classifies a failed connect.
type dialKind int

const (
	dialRefused     dialKind = iota // H21: the dyno is not listening
	dialTimeout                     // H19: no answer within the connect timeout
	dialUnreachable                 // H19 too, and the node is likely down
)

func classifyDial(err error) dialKind {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return dialUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return dialTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return dialTimeout
	}
	return dialRefused
}

// isClosedBeforeResponse reports errors that mean the app closed the
// connection before writing anything (a stale keep-alive connection, or a
// dyno that crashed).
func isClosedBeforeResponse(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
