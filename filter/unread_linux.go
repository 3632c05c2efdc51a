package filter

import (
	"os"

	"golang.org/x/sys/unix"
)

// unreadInput reports whether bytes written to the transform's stdin pipe
// are still waiting to be read (TIOCINQ on a pipe counts them from either
// end). An error counts as unread: reusing a process whose input state is
// unknown risks handing one client's bytes to another.
func unreadInput(stdin *os.File) bool {
	n, err := unix.IoctlGetInt(int(stdin.Fd()), unix.TIOCINQ)
	return err != nil || n > 0
}
