package router

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDefaultDialerSetsTCPUserTimeout(t *testing.T) {
	s := echoBackend(t, "web.1")
	c, err := defaultDialer(5*time.Second, 1500*time.Millisecond)(context.Background(), hostPort(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	if v != 1500 {
		t.Fatalf("TCP_USER_TIMEOUT = %d ms, want 1500", v)
	}
}
