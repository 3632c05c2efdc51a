//go:build !linux

package fcgi

import "net"

// peerGone cannot look at the socket on this system; see peer_linux.go.
func peerGone(net.Conn) bool { return false }
