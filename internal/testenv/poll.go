package testenv

import "time"

// WaitUntil calls cond on the calling goroutine every interval until it
// returns true or timeout has passed, and returns its last result. It is
// for conditions that give no signal when they change (goroutine and fd
// counts, /proc), where there is no event to wait for; it starts no
// goroutine, so it can wait for the goroutine count itself.
func WaitUntil(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}
