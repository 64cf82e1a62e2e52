package memnet

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberlistTransport is a memberlist.NodeAwareTransport on a Host: gossip
// packets travel as datagrams and push/pull or fallback probes as stream
// connections, so faults of the Network apply to memberlist traffic too. It
// listens for both on the same port.
//
// Use it as memberlist.Config.Transport; memberlist calls Shutdown when it
// shuts down.
type MemberlistTransport struct {
	host *Host
	ln   *listener
	pc   *packetConn

	packetCh   chan *memberlist.Packet
	streamCh   chan net.Conn
	shutdownCh chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*MemberlistTransport)(nil)

// MemberlistTransport listens for streams and datagrams on port (0 picks a
// free port usable for both) and returns a transport serving them.
func (h *Host) MemberlistTransport(port int) (*MemberlistTransport, error) {
	var (
		ln  *listener
		pc  *packetConn
		err error
	)
	// With port 0 the stream port might be taken for datagrams; retry a few times.
	for range 16 {
		ln, err = h.listen(port)
		if err != nil {
			return nil, fmt.Errorf("memnet: memberlist transport on %s: %w", h.name, err)
		}
		pc, err = h.listenPacket(ln.port)
		if err == nil {
			break
		}
		_ = ln.Close()
		if port != 0 {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("memnet: memberlist transport on %s: %w", h.name, err)
	}
	t := &MemberlistTransport{
		host:       h,
		ln:         ln,
		pc:         pc,
		packetCh:   make(chan *memberlist.Packet),
		streamCh:   make(chan net.Conn),
		shutdownCh: make(chan struct{}),
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.packetLoop()
	return t, nil
}

// Port returns the port the transport listens on.
func (t *MemberlistTransport) Port() int { return t.ln.port }

// Addr returns "ip:port" of the transport, suitable for memberlist.Join.
func (t *MemberlistTransport) Addr() string { return t.host.Addr(t.ln.port) }

// FinalAdvertiseAddr returns ip and port if ip is set (port 0 meaning the
// bound port), else the host's IP and the bound port.
func (t *MemberlistTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		return t.host.IP(), t.ln.port, nil
	}
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, 0, fmt.Errorf("memnet: failed to parse advertise address %q", ip)
	}
	if ip4 := addr.To4(); ip4 != nil {
		addr = ip4
	}
	if port == 0 {
		port = t.ln.port
	}
	return addr, port, nil
}

// WriteTo sends a datagram to addr ("ip:port").
func (t *MemberlistTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if _, err := t.pc.send(b, addr); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// WriteToAddress sends a datagram to a.Addr; a.Name is not needed.
func (t *MemberlistTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// PacketCh returns the channel of incoming datagrams.
func (t *MemberlistTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream connection to addr ("ip:port").
func (t *MemberlistTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.host.DialTimeout(addr, timeout)
}

// DialAddressTimeout opens a stream connection to a.Addr.
func (t *MemberlistTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// StreamCh returns the channel of incoming stream connections.
func (t *MemberlistTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the listeners and waits for the transport's goroutines to
// finish. It is safe to call more than once.
func (t *MemberlistTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.shutdownCh)
		// Errors only mean that Remove closed them already.
		_ = t.ln.Close()
		_ = t.pc.Close()
	})
	t.wg.Wait()
	return nil
}

// acceptLoop hands accepted connections to memberlist. It ends when the
// listener is closed (by Shutdown or Network.Remove).
func (t *MemberlistTransport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return // the only error is "closed"
		}
		select {
		case t.streamCh <- c:
		case <-t.shutdownCh:
			_ = c.Close()
			return
		}
	}
}

// packetLoop hands received datagrams to memberlist. It ends when the packet
// conn is closed.
func (t *MemberlistTransport) packetLoop() {
	defer t.wg.Done()
	for {
		pkt, err := t.pc.next(nil)
		if err != nil {
			return // the only error is "closed"
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: pkt.buf, From: pkt.from, Timestamp: pkt.ts}:
		case <-t.shutdownCh:
			return
		}
	}
}
