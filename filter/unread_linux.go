package filter

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// unreadInput reports whether bytes written to the transform's stdin pipe
// are still waiting to be read. An error counts as unread: reusing a
// process whose input state is unknown risks handing one client's bytes to
// another.
func unreadInput(stdin *os.File) bool { return pool.PipeUnread(stdin) }

// pipeCapacity returns how many bytes the pipe holds (F_GETPIPE_SZ), or 0
// when that cannot be read. Pipes are 64 KiB by default, but smaller once
// the user holds more pipe memory than fs.pipe-user-pages-soft allows, and
// a transform may resize its own. Like pool.PipeUnread it goes through
// SyscallConn, not Fd, which would put the pipe into blocking mode and make
// deadlines useless.
func pipeCapacity(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	cerr := rc.Control(func(fd uintptr) {
		n, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
	})
	if cerr != nil || err != nil {
		return 0
	}
	return n
}
