package pool

import "time"

// Stats is a snapshot of a pool's gauges and counters, for metrics.
type Stats struct {
	// Processes by state.
	Idle, Busy, Starting, Retiring int
	// Queue is the number of Acquire calls waiting now.
	Queue int

	Spawned uint64 // processes started successfully
	// Recycled by reason.
	RecycledRequests, RecycledLifetime, RecycledRSS, RecycledIdle uint64
	RecycledRetire                                                uint64 // Process.Retire was called
	Discarded                                                     uint64 // released with reusable=false
	Crashed                                                       uint64 // exited on their own after a good start
	StartFailures                                                 uint64 // failed execs, failed readiness, exits right after start

	Acquires  uint64        // Acquire calls
	Waits     uint64        // Acquire calls that had to queue
	WaitTime  time.Duration // total time spent queueing
	Saturated uint64        // ErrSaturated returned (queue full or wait timed out)

	// BackoffUntil is when the next start may be attempted after
	// consecutive start failures; zero when starts are not failing.
	BackoffUntil time.Time
}
