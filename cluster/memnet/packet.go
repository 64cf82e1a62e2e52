package memnet

import (
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

const (
	// MaxPacketSize is the largest datagram WriteTo accepts, as for UDP over
	// IPv4.
	MaxPacketSize = 65507

	// PacketQueueLen is how many datagrams a packet conn queues for ReadFrom;
	// further datagrams are dropped, like a full UDP receive buffer.
	PacketQueueLen = 1024
)

// packet is a datagram waiting to be read.
type packet struct {
	buf  []byte
	from *net.UDPAddr
	ts   time.Time // when it was delivered
}

// packetConn is a datagram endpoint of a Host. It implements net.PacketConn.
type packetConn struct {
	n    *Network
	host *Host
	port int
	addr *net.UDPAddr

	mu     sync.Mutex
	queue  []packet
	closed bool // written with both n.mu and mu held
	waitCh chan struct{}

	rdl, wdl deadline
}

var _ net.PacketConn = (*packetConn)(nil)

func (pc *packetConn) opErr(op string, remote net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: pc.LocalAddr(), Addr: remote, Err: err}
}

// ReadFrom reads the next datagram. A datagram longer than b is truncated.
func (pc *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	pkt, err := pc.next(&pc.rdl)
	if err != nil {
		return 0, nil, err
	}
	return copy(b, pkt.buf), pkt.from, nil
}

// next waits for the next datagram, honouring dl if it is not nil.
func (pc *packetConn) next(dl *deadline) (packet, error) {
	for {
		pc.mu.Lock()
		if pc.closed {
			pc.mu.Unlock()
			return packet{}, pc.opErr("read", nil, net.ErrClosed)
		}
		if dl != nil && dl.expired() {
			pc.mu.Unlock()
			return packet{}, pc.opErr("read", nil, os.ErrDeadlineExceeded)
		}
		if len(pc.queue) > 0 {
			pkt := pc.queue[0]
			pc.queue[0] = packet{}
			pc.queue = pc.queue[1:]
			pc.mu.Unlock()
			return pkt, nil
		}
		if pc.waitCh == nil {
			pc.waitCh = make(chan struct{})
		}
		ch := pc.waitCh
		pc.mu.Unlock()
		var dch <-chan struct{}
		if dl != nil {
			dch = dl.wait()
		}
		select {
		case <-ch:
		case <-dch:
		}
	}
}

// deliver queues pkt unless the queue is full or pc is closed.
func (pc *packetConn) deliver(pkt packet) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed || len(pc.queue) >= PacketQueueLen {
		return
	}
	pc.queue = append(pc.queue, pkt)
	pc.signalLocked()
}

func (pc *packetConn) signalLocked() {
	if pc.waitCh != nil {
		close(pc.waitCh)
		pc.waitCh = nil
	}
}

// WriteTo sends a datagram to addr ("ip:port" or "hostname:port"). Like UDP
// it reports success even if the datagram is dropped because of a fault, a
// full queue or a missing receiver.
func (pc *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if addr == nil {
		return 0, pc.opErr("write", nil, &net.AddrError{Err: "missing address"})
	}
	if pc.wdl.expired() {
		return 0, pc.opErr("write", addr, os.ErrDeadlineExceeded)
	}
	return pc.send(b, addr.String())
}

// send implements WriteTo for a string address.
func (pc *packetConn) send(b []byte, addr string) (int, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return 0, pc.opErr("write", nil, err)
	}
	n := pc.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	if pc.closed {
		return 0, pc.opErr("write", nil, net.ErrClosed)
	}
	name, ip, err := n.resolveLocked(pc.host, host)
	remote := &net.UDPAddr{IP: slices.Clone(ip), Port: port}
	if len(b) > MaxPacketSize {
		return 0, pc.opErr("write", remote, os.NewSyscallError("sendto", syscall.EMSGSIZE))
	}
	if err != nil {
		if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) {
			return 0, pc.opErr("write", remote, err)
		}
		return len(b), nil // unknown IP: lost on the wire
	}
	if !n.canReachLocked(pc.host.name, name) {
		return len(b), nil
	}
	dst := n.hosts[name]
	if dst == nil {
		return len(b), nil
	}
	if dpc := dst.packets[port]; dpc != nil {
		dpc.deliver(packet{
			buf:  slices.Clone(b),
			from: &net.UDPAddr{IP: pc.host.IP(), Port: pc.port},
			ts:   time.Now(),
		})
	}
	return len(b), nil
}

// Close closes the endpoint and frees its port.
func (pc *packetConn) Close() error {
	pc.n.mu.Lock()
	defer pc.n.mu.Unlock()
	return pc.closeLocked()
}

func (pc *packetConn) closeLocked() error {
	if pc.host.packets[pc.port] == pc {
		delete(pc.host.packets, pc.port)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return pc.opErr("close", nil, net.ErrClosed)
	}
	pc.closed = true
	pc.queue = nil
	pc.signalLocked()
	pc.rdl.set(time.Time{})
	pc.wdl.set(time.Time{})
	return nil
}

func (pc *packetConn) isClosed() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.closed
}

// LocalAddr returns the fake local address.
func (pc *packetConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: slices.Clone(pc.addr.IP), Port: pc.addr.Port}
}

// SetDeadline sets both the read and the write deadline.
func (pc *packetConn) SetDeadline(t time.Time) error {
	if pc.isClosed() {
		return pc.opErr("set", nil, net.ErrClosed)
	}
	pc.rdl.set(t)
	pc.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline.
func (pc *packetConn) SetReadDeadline(t time.Time) error {
	if pc.isClosed() {
		return pc.opErr("set", nil, net.ErrClosed)
	}
	pc.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline.
func (pc *packetConn) SetWriteDeadline(t time.Time) error {
	if pc.isClosed() {
		return pc.opErr("set", nil, net.ErrClosed)
	}
	pc.wdl.set(t)
	return nil
}
