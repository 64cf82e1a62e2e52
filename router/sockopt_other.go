//go:build !linux

package router

import (
	"syscall"
	"time"
)

// unackedTimeoutControl: TCP_USER_TIMEOUT is Linux's; elsewhere dead
// nodes are found by the first-byte timeout and TCP keep-alives.
func unackedTimeoutControl(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
