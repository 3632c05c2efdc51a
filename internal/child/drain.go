package child

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StderrReader reads a child's stderr pipe through the runtime poller until
// EOF or, once the child has exited (Exited was called), until the pipe is
// empty. After the exit and the sweep of its process group nothing the
// child wrote can still be on its way, but a helper that left the group may
// hold the pipe open for ever; waiting for EOF would then never end, and
// waiting for a fixed time would cut off a slow drain.
type StderrReader struct {
	f    *os.File
	rc   syscall.RawConn
	done atomic.Bool
}

// NewStderrReader reads f, the parent's end of a child's stderr pipe.
func NewStderrReader(f *os.File) (*StderrReader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &StderrReader{f: f, rc: rc}, nil
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a goroutine
// parked on the file at once.
var aLongTimeAgo = time.Unix(1, 0)

// Exited tells the reader that the child and its group are gone: it
// returns EOF as soon as the pipe is empty, also from a read parked waiting
// for data.
func (r *StderrReader) Exited() {
	r.done.Store(true)
	_ = r.f.SetReadDeadline(aLongTimeAgo)
}

func (r *StderrReader) Read(b []byte) (int, error) {
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
			// Woken by Exited: read what is left, without parking.
			_ = r.f.SetReadDeadline(time.Time{})
		default:
			return 0, rerr
		}
	}
}
