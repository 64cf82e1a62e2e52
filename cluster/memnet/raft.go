package memnet

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftStreamLayer is a raft.StreamLayer on a Host, for
// raft.NewNetworkTransport. Its Addr is the host's fake address.
type RaftStreamLayer struct {
	net.Listener
	host *Host
}

var _ raft.StreamLayer = (*RaftStreamLayer)(nil)

// RaftStreamLayer listens on port (0 picks a free port) and returns a stream
// layer for hashicorp/raft's NetworkTransport.
func (h *Host) RaftStreamLayer(port int) (*RaftStreamLayer, error) {
	ln, err := h.Listen(port)
	if err != nil {
		return nil, fmt.Errorf("memnet: raft stream layer on %s: %w", h.name, err)
	}
	return &RaftStreamLayer{Listener: ln, host: h}, nil
}

// Dial connects to a raft server address ("ip:port").
func (s *RaftStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.host.DialTimeout(string(address), timeout)
}
