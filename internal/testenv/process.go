package testenv

import (
	"time"

	"golang.org/x/sys/unix"
)

// WaitGone waits until none of pids runs, for at most timeout, and returns
// those still running. A zombie counts as gone (it holds no resources, and
// its parent may be an init that reaps lazily): a pidfd becomes readable
// when its process exits, reaped or not.
func WaitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	var alive []int
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // already reaped
		}
		if !waitReadable(fd, deadline) {
			alive = append(alive, pid)
		}
		unix.Close(fd)
	}
	return alive
}

// waitReadable waits until fd is readable or deadline passes.
func waitReadable(fd int, deadline time.Time) bool {
	for {
		ms := max(0, int(time.Until(deadline).Milliseconds()))
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return false
		case n > 0:
			return true
		case ms == 0:
			return false
		}
	}
}
