package fcgi

import (
	"errors"
	"net"
	"os"
	"syscall"
	"unsafe"
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

// idleWaiter returns a function that waits until c has something to read
// (bytes, EOF or an error) without a buffer, under c's read deadline, or nil
// when c is not a socket.
func idleWaiter(c net.Conn) func() error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var b [1]byte
	first := false
	var peekErr syscall.Errno
	readable := func(fd uintptr) bool {
		if !first {
			// Called again once the poller saw the socket readable. A
			// spurious wake-up costs nothing worse than the read that
			// follows blocking with its buffer.
			return true
		}
		first = false
		// Bytes may be queued already, which the poller would not report
		// again. A raw recvfrom: syscall.Recvfrom would allocate the
		// sender's address, and this runs once per request.
		_, _, peekErr = syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return peekErr != syscall.EAGAIN
	}
	return func() error {
		first, peekErr = true, 0
		if err := rc.Read(readable); err != nil {
			return err
		}
		if peekErr != 0 && peekErr != syscall.EAGAIN && peekErr != syscall.EINTR {
			// The peek took the socket's pending error (a reset, say): the
			// read that follows would only see EOF.
			return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("recvfrom", peekErr)}
		}
		return nil
	}
}

// peerSent reports whether bytes from the peer wait in c's receive queue,
// without consuming them; false for EOF, errors and connections that are not
// sockets.
func peerSent(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	sent := false
	var b [1]byte
	// Control, not Read: it runs whatever the read deadline says.
	_ = rc.Control(func(fd uintptr) {
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		sent = errno == 0 && n > 0
	})
	return sent
}
