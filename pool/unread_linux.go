package pool

import "golang.org/x/sys/unix"

// inputUnread reports whether bytes written to the process's stdin are
// still in the pipe, unread (TIOCINQ counts them from either end, also
// after the reader is gone). It goes through the raw connection so as not
// to switch the pipe to blocking mode as Fd would. An error counts as
// unread.
func (p *Process) inputUnread() bool {
	rc, err := p.stdin.SyscallConn()
	if err != nil {
		return true
	}
	n := 0
	cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return cerr != nil || err != nil || n > 0
}
