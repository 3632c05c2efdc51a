package pool

import (
	"os"

	"golang.org/x/sys/unix"
)

// PipeUnread reports whether bytes written to the pipe f are still in it,
// unread (TIOCINQ counts them from either end, also after the reader is
// gone). It goes through the raw connection, so as not to switch the pipe
// to blocking mode as Fd would. An error counts as unread: a caller that
// reuses a process on a "no" must not do so when the state is unknown.
func PipeUnread(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return true
	}
	n := 0
	cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return cerr != nil || err != nil || n > 0
}

// inputUnread reports whether the process left bytes written to its stdin
// unread.
func (p *Process) inputUnread() bool { return PipeUnread(p.Stdin()) }
