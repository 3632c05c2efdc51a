package fcgi

import (
	"runtime"
	"sync"
)

// workers runs handlers on goroutines kept from earlier requests.
//
// A goroutine started per request begins on a small stack and grows it, a
// copy each time it doubles, down the handler's call path (routing, the
// upstream exchange, the HTTP head parser, the poller): on a pass-through
// request that copying was the largest cost of the bridge after the system
// calls. A goroutine that has served a request keeps the stack it grew, so
// the next handler it runs starts with room.
//
// At most max goroutines wait for work, the most recently used first (their
// stacks are the warmest); beyond that a finishing goroutine ends. The
// garbage collector shrinks the stacks of goroutines that wait long, so a
// server that goes quiet does not hold the grown stacks.
type workers struct {
	mu      sync.Mutex
	idle    []chan func()
	max     int
	stopped bool
}

func newWorkers() *workers {
	return &workers{max: max(8, 4*runtime.GOMAXPROCS(0))}
}

// run starts f on a waiting goroutine, or on a new one when none waits.
func (w *workers) run(f func()) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		ch := w.idle[n-1]
		w.idle[n-1] = nil
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		ch <- f
		return
	}
	w.mu.Unlock()
	go w.work(f)
}

func (w *workers) work(f func()) {
	var ch chan func()
	for f != nil {
		f()
		w.mu.Lock()
		if w.stopped || len(w.idle) >= w.max {
			w.mu.Unlock()
			return
		}
		if ch == nil {
			ch = make(chan func(), 1)
		}
		w.idle = append(w.idle, ch)
		w.mu.Unlock()
		f = <-ch
	}
}

// stop ends the waiting goroutines; those still running a handler end
// when it returns.
func (w *workers) stop() {
	w.mu.Lock()
	w.stopped = true
	idle := w.idle
	w.idle = nil
	w.mu.Unlock()
	for _, ch := range idle {
		ch <- nil
	}
}

// waiting is the number of goroutines waiting for work.
func (w *workers) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.idle)
}
