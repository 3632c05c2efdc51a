//go:build !linux

package fcgi

import "net"

// peerGone cannot look at the socket on this system; see peer_linux.go.
func peerGone(net.Conn) bool { return false }

// idleWaiter cannot wait on the socket on this system: idle connections keep
// their read buffer.
func idleWaiter(net.Conn) func() error { return nil }

// peerSent cannot look at the socket on this system: nothing is known to
// wait.
func peerSent(net.Conn) bool { return false }
