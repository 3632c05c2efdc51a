package pool

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stderrReader reads a transform's stderr pipe through the runtime poller
// until EOF or, once the process has exited (exited was called), until the
// pipe is empty. After the exit and the sweep of its process group nothing
// the transform wrote can still be on its way, but a helper that left the
// group may hold the pipe open for ever; waiting for EOF would then never
// end, and waiting for a fixed time would cut off a slow drain.
type stderrReader struct {
	f    *os.File
	rc   syscall.RawConn
	done atomic.Bool
}

func newStderrReader(f *os.File) (*stderrReader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &stderrReader{f: f, rc: rc}, nil
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a goroutine
// parked on the file at once.
var aLongTimeAgo = time.Unix(1, 0)

// exited tells the reader that the writers are gone: it returns EOF as soon
// as the pipe is empty, also from a read parked waiting for data.
func (r *stderrReader) exited() {
	r.done.Store(true)
	_ = r.f.SetReadDeadline(aLongTimeAgo)
}

func (r *stderrReader) Read(b []byte) (int, error) {
	for {
		var n int
		var err error
		rerr := r.rc.Read(func(fd uintptr) bool {
			for {
				n, err = unix.Read(int(fd), b)
				if err != unix.EINTR {
					break
				}
			}
			if err == unix.EAGAIN {
				if r.done.Load() {
					n, err = 0, io.EOF
					return true
				}
				return false // park until readable, or until exited
			}
			return true
		})
		switch {
		case rerr == nil && err == nil && n == 0:
			return 0, io.EOF
		case rerr == nil:
			return max(n, 0), err
		case errors.Is(rerr, os.ErrDeadlineExceeded) && r.done.Load():
			// Woken by exited: read what is left, without parking.
			_ = r.f.SetReadDeadline(time.Time{})
		default:
			return 0, rerr
		}
	}
}
