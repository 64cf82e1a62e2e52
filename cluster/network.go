package cluster

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Network is the seam through which a node talks to others: stream
// connections for Raft and internal RPC, and a memberlist transport for
// gossip. HostNetwork uses the operating system; cluster/memnet provides an
// in-memory network with fault injection for tests.
type Network interface {
	// Listen opens a stream listener on addr (host:port).
	Listen(addr string) (net.Listener, error)
	// Dial connects to addr.
	Dial(ctx context.Context, addr string) (net.Conn, error)
	// MemberlistTransport returns the gossip transport bound to addr.
	MemberlistTransport(addr string, logger *log.Logger) (memberlist.NodeAwareTransport, error)
}

// HostNetwork is the real network.
type HostNetwork struct{}

// Listen implements Network.
func (HostNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// Dial implements Network.
func (HostNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// MemberlistTransport implements Network.
func (HostNetwork) MemberlistTransport(addr string, logger *log.Logger) (memberlist.NodeAwareTransport, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip port %q: %w", portStr, err)
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
}

// streamLayer adapts a Network listener to raft.StreamLayer. With a token
// (derived from the cluster's encrypt key), every connection starts with it:
// the dialer sends it, and the listener hands raft only connections that
// sent it — a process that merely reaches the Raft port (a dyno on the host
// network) cannot speak Raft.
type streamLayer struct {
	net.Listener
	network   Network
	advertise net.Addr
	token     []byte // nil: no handshake (no encrypt key configured)
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.network.Dial(ctx, string(address))
	if err != nil || s.token == nil {
		return c, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(s.token); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", address, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// authListener verifies each connection's token in its own goroutine (a
// slow or silent client must not hold up others) before Accept returns it.
type authListener struct {
	net.Listener
	token  []byte
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	reject func(remote string)
}

func newAuthListener(ln net.Listener, token []byte, reject func(string)) *authListener {
	a := &authListener{Listener: ln, token: token, conns: make(chan net.Conn), done: make(chan struct{}), reject: reject}
	go a.loop()
	return a
}

func (a *authListener) loop() {
	for {
		c, err := a.Listener.Accept()
		if err != nil {
			a.Close()
			return
		}
		go a.verify(c)
	}
}

func (a *authListener) verify(c net.Conn) {
	buf := make([]byte, len(a.token))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || subtle.ConstantTimeCompare(buf, a.token) != 1 {
		a.reject(c.RemoteAddr().String())
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	select {
	case a.conns <- c:
	case <-a.done:
		c.Close()
	}
}

func (a *authListener) Accept() (net.Conn, error) {
	select {
	case c := <-a.conns:
		return c, nil
	case <-a.done:
		return nil, net.ErrClosed
	}
}

func (a *authListener) Close() error {
	var err error
	a.once.Do(func() {
		close(a.done)
		err = a.Listener.Close()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
