package filter

import (
	"os"

	"golang.org/x/sys/unix"
)

// unreadInput reports whether bytes written to the transform's stdin pipe
// are still waiting to be read (TIOCINQ on a pipe counts them from either
// end). An error counts as unread: reusing a process whose input state is
// unknown risks handing one client's bytes to another.
//
// It goes through SyscallConn, not Fd: Fd puts the pipe into blocking
// mode, after which a write to a full pipe ties up a thread and ignores
// deadlines, so a stuck exchange could no longer be woken.
func unreadInput(stdin *os.File) bool {
	n, err := pipeIoctl(stdin, unix.TIOCINQ)
	return err != nil || n > 0
}

// pipeCapacity returns how many bytes the pipe holds (F_GETPIPE_SZ), or 0
// when that cannot be read. Pipes are 64 KiB by default, but smaller once
// the user holds more pipe memory than fs.pipe-user-pages-soft allows, and
// a transform may resize its own.
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

func pipeIoctl(f *os.File, req uint) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	cerr := rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), req)
	})
	if cerr != nil {
		return 0, cerr
	}
	return n, err
}
