// Package memnet provides an in-memory network with fault injection for
// in-process multi-node tests.
//
// A Network is a set of named hosts, each with its own fake IPv4 address in
// 10.77.0.0/16. Hosts offer TCP-like stream connections (Listen, Dial), UDP-like
// datagrams (ListenPacket), a hashicorp/memberlist transport and a
// hashicorp/raft stream layer, all of which run entirely in memory and never
// touch a real socket. The test controlling the Network can partition hosts
// into groups, isolate single hosts, heal all faults and "kill" a host
// (Remove). Faults apply to every kind of traffic: stream connections between
// hosts that can no longer reach each other are reset, new dials across a
// fault fail with ENETUNREACH and datagrams across a fault are dropped.
//
// The package is meant for tests only, but it is an ordinary package so that
// the tests of several packages can share it.
package memnet

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	// firstEphemeralPort and lastPort bound the ports handed out for port 0
	// listeners and for the local side of dialled connections.
	firstEphemeralPort = 49152
	lastPort           = 65535

	// baseIP is 10.77.0.0; host number N gets baseIP+N.
	baseIP = 10<<24 | 77<<16
)

// ErrHostRemoved is wrapped by the errors of operations on a Host that has
// been removed from its Network. It wraps syscall.ENETDOWN.
var ErrHostRemoved = fmt.Errorf("memnet: host has been removed from the network: %w", syscall.ENETDOWN)

// Network is a set of hosts that can reach each other unless a fault
// separates them. The zero value is not usable; create one with New. All
// methods are safe for concurrent use.
type Network struct {
	mu sync.RWMutex

	hosts  map[string]*Host  // live hosts by name
	ips    map[string]net.IP // every name ever used, kept across Remove
	names  map[string]string // IPv4 string to host name
	nextIP uint32            // host number for the next new name

	groups   map[string]int // partition group per named host; nil if none
	isolated map[string]bool

	conns map[*pair]struct{} // stream connections that may need a reset
}

// New returns an empty network without faults.
func New() *Network {
	return &Network{
		hosts:    make(map[string]*Host),
		ips:      make(map[string]net.IP),
		names:    make(map[string]string),
		nextIP:   1,
		isolated: make(map[string]bool),
		conns:    make(map[*pair]struct{}),
	}
}

// Host returns (creating on first use) the host with that name. Each name
// gets a distinct fake IPv4 address 10.77.0.N (10.77.1.N after the first 254
// hosts, and so on), which it keeps for the lifetime of the Network, even
// across Remove.
func (n *Network) Host(name string) *Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.hosts[name]; ok {
		return h
	}
	ip, ok := n.ips[name]
	if !ok {
		ip = n.allocIPLocked()
		n.ips[name] = ip
		n.names[ip.String()] = name
	}
	h := &Host{
		n:         n,
		name:      name,
		ip:        ip,
		listeners: make(map[int]*listener),
		packets:   make(map[int]*packetConn),
		nextPort:  firstEphemeralPort,
	}
	n.hosts[name] = h
	return h
}

// allocIPLocked returns the next unused address, skipping .0 and .255.
func (n *Network) allocIPLocked() net.IP {
	for n.nextIP&0xff == 0 || n.nextIP&0xff == 0xff {
		n.nextIP++
	}
	ip := make(net.IP, net.IPv4len)
	binary.BigEndian.PutUint32(ip, baseIP+n.nextIP)
	n.nextIP++
	return ip
}

// Partition splits the network: hosts in different groups cannot exchange
// anything. Hosts not named in any group form one more group together. A host
// named in several groups belongs to the last of them. Partition replaces any
// earlier partition but keeps hosts isolated with Isolate isolated. Stream
// connections between hosts that can no longer reach each other are reset.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = make(map[string]int)
	for i, g := range groups {
		for _, name := range g {
			n.groups[name] = i
		}
	}
	n.applyFaultsLocked()
}

// Isolate cuts each named host off from every other host (traffic within a
// host still works). It adds to the existing faults. Stream connections of the
// isolated hosts to other hosts are reset.
func (n *Network) Isolate(names ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, name := range names {
		n.isolated[name] = true
	}
	n.applyFaultsLocked()
}

// Heal removes all faults: the partition and every isolation. Connections
// reset by earlier faults stay broken, but new connections work again.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = nil
	clear(n.isolated)
}

// CanReach reports whether the current faults allow traffic between the two
// named hosts. A host can always reach itself. It does not check that the
// hosts exist or listen on anything.
func (n *Network) CanReach(from, to string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.canReachLocked(from, to)
}

func (n *Network) canReachLocked(from, to string) bool {
	if from == to {
		return true
	}
	if n.isolated[from] || n.isolated[to] {
		return false
	}
	if n.groups == nil {
		return true
	}
	gf, ok := n.groups[from]
	if !ok {
		gf = -1
	}
	gt, ok := n.groups[to]
	if !ok {
		gt = -1
	}
	return gf == gt
}

// applyFaultsLocked resets every stream connection whose hosts can no longer
// reach each other.
func (n *Network) applyFaultsLocked() {
	for p := range n.conns {
		if !n.canReachLocked(p.hostA, p.hostB) {
			n.resetLocked(p)
		}
	}
}

// resetLocked breaks both directions of p with ECONNRESET and forgets it.
func (n *Network) resetLocked(p *pair) {
	p.reset()
	delete(n.conns, p)
}

// release forgets p once both of its ends are closed.
func (n *Network) release(p *pair) {
	if !p.a.closed.Load() || !p.b.closed.Load() {
		return
	}
	n.mu.Lock()
	delete(n.conns, p)
	n.mu.Unlock()
}

// Remove simulates kill -9 of the host's processes: it closes all listeners
// and packet conns of the host and resets every stream connection the host
// takes part in. Every later operation on the old *Host fails. Host(name) may
// be called again to restart the host; it gets the same IP address. Faults
// refer to host names, so a partition or isolation also applies to the
// restarted host. Remove of an unknown or already removed host does nothing.
func (n *Network) Remove(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.hosts[name]
	if !ok {
		return
	}
	delete(n.hosts, name)
	h.removed = true
	for _, l := range h.listeners {
		_ = l.closeLocked()
	}
	for _, pc := range h.packets {
		_ = pc.closeLocked()
	}
	for p := range n.conns {
		if p.hostA == name || p.hostB == name {
			n.resetLocked(p)
		}
	}
}

// Close removes every host (see Remove). The network can still be used
// afterwards.
func (n *Network) Close() {
	n.mu.RLock()
	names := make([]string, 0, len(n.hosts))
	for name := range n.hosts {
		names = append(names, name)
	}
	n.mu.RUnlock()
	slices.Sort(names)
	for _, name := range names {
		n.Remove(name)
	}
}

// resolveLocked maps the host part of an address, seen from host from, to a
// host name and its IP. It accepts fake IPs, host names, loopback addresses
// and "localhost" (the latter two mean from itself).
func (n *Network) resolveLocked(from *Host, host string) (string, net.IP, error) {
	if host == "" || host == "localhost" {
		return from.name, from.ip, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() || ip.IsUnspecified() {
			return from.name, from.ip, nil
		}
		name, ok := n.names[ip.String()]
		if !ok {
			return "", ip, os.NewSyscallError("connect", syscall.EHOSTUNREACH)
		}
		return name, n.ips[name], nil
	}
	if ip, ok := n.ips[host]; ok {
		return host, ip, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// splitAddr splits "host:port" and validates the port.
func splitAddr(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > lastPort {
		return "", 0, &net.AddrError{Err: "invalid port", Addr: addr}
	}
	return host, port, nil
}

func checkPort(port int) error {
	if port < 0 || port > lastPort {
		return &net.AddrError{Err: "invalid port", Addr: strconv.Itoa(port)}
	}
	return nil
}

// Host is one machine of a Network. All methods are safe for concurrent use.
type Host struct {
	n    *Network
	name string
	ip   net.IP

	// Guarded by n.mu.
	removed   bool
	listeners map[int]*listener
	packets   map[int]*packetConn
	nextPort  int
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// IP returns the host's fake IPv4 address.
func (h *Host) IP() net.IP { return slices.Clone(h.ip) }

// Addr returns "ip:port" for this host and port, suitable for Dial.
func (h *Host) Addr(port int) string {
	return net.JoinHostPort(h.ip.String(), strconv.Itoa(port))
}

// Network returns the network the host belongs to.
func (h *Host) Network() *Network { return h.n }

// allocPortLocked returns an ephemeral port for which inUse is false.
func (h *Host) allocPortLocked(inUse func(int) bool) (int, bool) {
	for range lastPort - firstEphemeralPort + 1 {
		p := h.nextPort
		h.nextPort++
		if h.nextPort > lastPort {
			h.nextPort = firstEphemeralPort
		}
		if inUse == nil || !inUse(p) {
			return p, true
		}
	}
	return 0, false
}

// Listen returns a stream listener at h.IP():port. Port 0 picks a free
// ephemeral port; Addr of the listener reports it.
func (h *Host) Listen(port int) (net.Listener, error) {
	return h.listen(port)
}

func (h *Host) listen(port int) (*listener, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: h.IP(), Port: port}, Err: err}
	}
	if err := checkPort(port); err != nil {
		return nil, opErr(err)
	}
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if h.removed {
		return nil, opErr(ErrHostRemoved)
	}
	if port == 0 {
		p, ok := h.allocPortLocked(func(p int) bool { return h.listeners[p] != nil })
		if !ok {
			return nil, opErr(os.NewSyscallError("bind", syscall.EADDRINUSE))
		}
		port = p
	}
	if h.listeners[port] != nil {
		return nil, opErr(os.NewSyscallError("bind", syscall.EADDRINUSE))
	}
	l := &listener{
		n:    h.n,
		host: h,
		port: port,
		addr: &net.TCPAddr{IP: h.IP(), Port: port},
	}
	h.listeners[port] = l
	return l, nil
}

// Dial connects to addr ("ip:port" or "hostname:port" of a host in the
// network; loopback addresses and "localhost" mean h itself). Dialling never
// blocks: it fails at once with an error wrapping syscall.ECONNREFUSED if
// nothing listens there, syscall.ENETUNREACH if a fault separates the hosts
// and syscall.EHOSTUNREACH if no host has that IP.
func (h *Host) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	opErr := func(remote net.Addr, err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: remote, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(nil, err)
	}
	host, port, err := splitAddr(addr)
	if err != nil {
		return nil, opErr(nil, err)
	}

	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if h.removed {
		return nil, opErr(nil, ErrHostRemoved)
	}
	name, ip, err := n.resolveLocked(h, host)
	remote := &net.TCPAddr{IP: slices.Clone(ip), Port: port}
	if err != nil {
		return nil, opErr(remote, err)
	}
	if !n.canReachLocked(h.name, name) {
		return nil, opErr(remote, os.NewSyscallError("connect", syscall.ENETUNREACH))
	}
	target := n.hosts[name]
	if target == nil || target.listeners[port] == nil {
		return nil, opErr(remote, os.NewSyscallError("connect", syscall.ECONNREFUSED))
	}
	l := target.listeners[port]
	localPort, _ := h.allocPortLocked(nil)
	local := &net.TCPAddr{IP: h.IP(), Port: localPort}
	p := newPair(n, h.name, local, name, remote)
	if !l.enqueue(p.b) {
		return nil, opErr(remote, os.NewSyscallError("connect", syscall.ECONNREFUSED))
	}
	n.conns[p] = struct{}{}
	return p.a, nil
}

// DialContext is Dial with the signature of net.Dialer.DialContext, for use in
// http.Transport and similar. network must be "tcp", "tcp4" or "tcp6".
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return h.Dial(ctx, addr)
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
}

// DialTimeout is Dial with a timeout instead of a context. A timeout <= 0
// means no timeout.
func (h *Host) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return h.Dial(ctx, addr)
}

// ListenPacket returns a datagram endpoint at h.IP():port. Port 0 picks a
// free ephemeral port.
func (h *Host) ListenPacket(port int) (net.PacketConn, error) {
	return h.listenPacket(port)
}

func (h *Host) listenPacket(port int) (*packetConn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: "udp", Addr: &net.UDPAddr{IP: h.IP(), Port: port}, Err: err}
	}
	if err := checkPort(port); err != nil {
		return nil, opErr(err)
	}
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if h.removed {
		return nil, opErr(ErrHostRemoved)
	}
	if port == 0 {
		p, ok := h.allocPortLocked(func(p int) bool { return h.packets[p] != nil })
		if !ok {
			return nil, opErr(os.NewSyscallError("bind", syscall.EADDRINUSE))
		}
		port = p
	}
	if h.packets[port] != nil {
		return nil, opErr(os.NewSyscallError("bind", syscall.EADDRINUSE))
	}
	pc := &packetConn{
		n:    h.n,
		host: h,
		port: port,
		addr: &net.UDPAddr{IP: h.IP(), Port: port},
	}
	h.packets[port] = pc
	return pc, nil
}
