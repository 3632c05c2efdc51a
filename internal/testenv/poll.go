package testenv

import "time"

// Poll checks cond every 20 ms until it holds or d has passed, and reports
// whether it held. It is for states no event announces (a process gone, a
// port answering, a count in a log); where a channel or a log line says
// when something happened, wait for that instead.
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
