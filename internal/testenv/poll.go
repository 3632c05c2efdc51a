package testenv

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Poll checks cond every 20 ms until it holds or d has passed, and reports
// whether it held. It is for states no event announces (a process gone, a
// port answering, a count in a log, goroutine and fd counts); where a
// channel or a log line says when something happened, wait for that
// instead. cond runs on the calling goroutine and Poll starts none, so it
// can wait for the goroutine count itself.
func Poll(d time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return true
			}
		case <-deadline.C:
			return cond()
		}
	}
}

// ErrExited is WaitListening's answer when the process exited first.
var ErrExited = errors.New("the process exited before it listened")

// WaitListening dials network/addr until something answers, for up to d.
// done, when not nil, is closed when the process that should listen has
// exited: then the wait ends at once with ErrExited.
func WaitListening(network, addr string, done <-chan struct{}, d time.Duration) error {
	var last error
	exited := false
	if Poll(d, func() bool {
		select {
		case <-done:
			exited = true
			return true
		default:
		}
		c, err := net.DialTimeout(network, addr, time.Second)
		if last = err; err != nil {
			return false
		}
		c.Close()
		return true
	}) {
		if exited {
			return ErrExited
		}
		return nil
	}
	return fmt.Errorf("nothing answers on %s %s after %v: %w", network, addr, d, last)
}
