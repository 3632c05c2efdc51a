package filter

import (
	"os"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// unreadInput reports whether bytes written to the transform's stdin pipe
// are still waiting to be read. An error counts as unread: reusing a
// process whose input state is unknown risks handing one client's bytes to
// another.
func unreadInput(stdin *os.File) bool { return pool.PipeUnread(stdin) }
