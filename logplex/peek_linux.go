package logplex

import (
	"net"
	"syscall"
)

// peerClosed reports whether the peer of a TCP connection has closed it
// (a FIN or a reset is queued), without consuming data: a non-blocking
// MSG_PEEK read that returns 0 bytes means end of stream. It works beside
// a goroutine blocked reading the same connection.
func peerClosed(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil && n == 0:
			closed = true
		case err == syscall.ECONNRESET || err == syscall.EPIPE || err == syscall.ENOTCONN:
			closed = true
		}
	})
	return closed
}
