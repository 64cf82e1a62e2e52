package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
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

// streamLayer adapts a Network listener to raft.StreamLayer.
type streamLayer struct {
	net.Listener
	network   Network
	advertise net.Addr
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.network.Dial(ctx, string(address))
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
