package testenv

import (
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// OnEndingThread runs f on a goroutine locked to an OS thread other than
// the main one, lets that goroutine return still locked, which makes the
// runtime end the thread, and returns once the thread is gone. A thread's
// parent-death signals are sent before it leaves /proc/self/task, so a
// child forked from it has been signalled by then. It reports false when
// the thread did not end within timeout.
func OnEndingThread(timeout time.Duration, f func()) bool {
	var tid int
	for {
		res := make(chan int, 1)
		go func() {
			runtime.LockOSThread()
			tid := unix.Gettid()
			if tid == unix.Getpid() {
				// The main thread is parked rather than ended: try
				// again from another one.
				runtime.UnlockOSThread()
				res <- 0
				return
			}
			f()
			res <- tid
			// Returning while locked ends this thread.
		}()
		if tid = <-res; tid != 0 {
			break
		}
	}
	return Poll(timeout, func() bool {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
		return err != nil
	})
}
