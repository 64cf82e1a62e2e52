//go:build !linux

package logplex

import "net"

// peerClosed is only implemented on Linux; elsewhere a closed receiver is
// noticed by the reader goroutine (or the next write).
func peerClosed(net.Conn) bool { return false }
