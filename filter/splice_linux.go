package filter

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceChunk bounds one splice(2) call: a pipe holds 64 KiB by default, so
// larger requests only return short.
const spliceChunk = 1 << 20

// spliceSource is implemented by bodies that can move their next n bytes to
// a pipe themselves (a transform's reply body, whose framing must be kept).
type spliceSource interface {
	spliceOut(dst *os.File, n int64) (written int64, handled bool, err error)
}

// spliceTo moves n bytes from src to the pipe dst with splice(2), without
// copying them through user space. handled is false when src cannot be
// spliced (no file descriptor); nothing was read then. Errors reading src
// are *inputError.
func spliceTo(dst *os.File, src io.Reader, n int64) (written int64, handled bool, err error) {
	if s, ok := src.(spliceSource); ok {
		return s.spliceOut(dst, n)
	}
	if lr, ok := src.(*io.LimitedReader); ok {
		// The limit only ever shortens n.
		if lr.N < n {
			n = lr.N
		}
		written, handled, err = spliceTo(dst, lr.R, n)
		lr.N -= written
		return written, handled, err
	}
	sc, ok := src.(syscall.Conn)
	if !ok {
		return 0, false, nil
	}
	srcRC, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	written, err = spliceRaw(dst, srcRC, n)
	return written, true, err
}

// spliceRaw splices n bytes from srcRC into the pipe dst (or from the pipe
// srcRC into dst; splice needs one side to be a pipe). It waits for
// readiness through the runtime poller on whichever side is not ready, so it
// never blocks a thread on a pipe or socket.
func spliceRaw(dst *os.File, srcRC syscall.RawConn, n int64) (int64, error) {
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	var serr error
	var srcEOF bool
	regular := -1 // whether the source is a regular file; learnt on first use
	werr := dstRC.Write(func(dfd uintptr) bool {
		for written < n && serr == nil && !srcEOF {
			dstFull := false
			rerr := srcRC.Read(func(sfd uintptr) bool {
				if regular < 0 {
					var st unix.Stat_t
					regular = 0
					if unix.Fstat(int(sfd), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
						regular = 1
					}
				}
				// A regular file cannot be waited for, and with
				// SPLICE_F_NONBLOCK it fails with EAGAIN whenever its pages
				// are not cached. Without the flag only the destination
				// pipe (O_NONBLOCK) can say EAGAIN.
				flags := unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
				if regular == 1 {
					flags = unix.SPLICE_F_MOVE
				}
				for {
					k, err := unix.Splice(int(sfd), nil, int(dfd), nil, int(min(n-written, spliceChunk)), flags)
					switch {
					case err == unix.EINTR:
						continue
					case err == unix.EAGAIN:
						// Either side may be the one not ready, and it may
						// have changed since. Look at both now: waiting on
						// a side that is ready would wait for an edge that
						// already came (the poller is edge-triggered), for
						// ever if the other process is blocked on it.
						srcReady, dstReady := pollReady(int(sfd), int(dfd), regular == 1)
						switch {
						case srcReady && dstReady:
							continue
						case !dstReady:
							dstFull = true
							return true
						default:
							return false // wait until src is readable
						}
					case err != nil:
						serr = err
					case k == 0:
						srcEOF = true
					default:
						written += k
					}
					return true
				}
			})
			if rerr != nil {
				serr = &inputError{rerr}
			}
			if dstFull {
				return false // wait until dst is writable
			}
		}
		return true
	})
	switch {
	case serr != nil:
		return written, serr
	case werr != nil:
		return written, werr
	case srcEOF && written < n:
		return written, &inputError{errShortInput}
	}
	return written, nil
}

// pollReady reports whether src has data (or is a regular file, which
// always has) and whether dst has room, right now. An error or hang-up
// counts as ready: the next splice reports it.
func pollReady(src, dst int, srcRegular bool) (srcReady, dstReady bool) {
	fds := []unix.PollFd{{Fd: int32(src), Events: unix.POLLIN}, {Fd: int32(dst), Events: unix.POLLOUT}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return true, true
		}
		return srcRegular || fds[0].Revents != 0, fds[1].Revents != 0
	}
}
