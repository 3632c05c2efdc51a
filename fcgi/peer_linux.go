package fcgi

import (
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether the peer has closed or reset c, looking at the
// socket without consuming anything. It is for the read loop while it holds
// back input (flow control) and so is not reading: a close that is queued
// behind unread data cannot be seen this way, and the answer is false then,
// as it is for connections that are not sockets.
func peerGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil:
			gone = n == 0
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EINTR):
		default:
			gone = true
		}
		return true
	})
	return gone || err != nil
}
