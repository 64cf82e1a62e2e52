package router

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// unackedTimeoutControl sets TCP_USER_TIMEOUT on a dyno connection: once
// data it sent stays unacknowledged this long, the kernel fails the
// connection with ETIMEDOUT. A request written to a dyno whose node has
// gone (a kept-alive connection, or one opened just before) then fails in
// seconds instead of waiting out the first-byte timeout; a slow app is not
// affected (its kernel acknowledges the request at once).
func unackedTimeoutControl(d time.Duration) func(network, address string, c syscall.RawConn) error {
	if d <= 0 {
		return nil
	}
	ms := int(d / time.Millisecond)
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
