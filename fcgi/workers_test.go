package fcgi

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// goroutineID reads the running goroutine's id from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

func TestWorkersReuseGoroutine(t *testing.T) {
	w := newWorkers()
	defer w.stop()
	ids := make(chan string, 1)
	run := func() string {
		w.run(func() { ids <- goroutineID() })
		id := <-ids
		// The worker sends before it waits again: wait until it does.
		if !testenv.Poll(5*time.Second, func() bool { return w.waiting() == 1 }) {
			t.Fatalf("%d goroutines waiting after one task, want 1", w.waiting())
		}
		return id
	}
	first := run()
	for range 5 {
		if id := run(); id != first {
			t.Fatalf("task ran on goroutine %s, want the kept goroutine %s", id, first)
		}
	}
}

func TestWorkersBoundedAndStopped(t *testing.T) {
	g0 := runtime.NumGoroutine()
	w := newWorkers()
	n := 3 * w.max
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for range n {
		w.run(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	started.Wait() // n goroutines at once: none waited, each task got a new one
	close(release)
	done.Wait()
	if !testenv.Poll(5*time.Second, func() bool { return runtime.NumGoroutine() <= g0+w.max }) {
		t.Fatalf("%d goroutines after the tasks, want at most %d kept", runtime.NumGoroutine()-g0, w.max)
	}
	if got := w.waiting(); got != w.max {
		t.Fatalf("%d waiting, want %d", got, w.max)
	}
	w.stop()
	if !testenv.Poll(5*time.Second, func() bool { return runtime.NumGoroutine() <= g0 }) {
		t.Fatalf("%d goroutines left after stop", runtime.NumGoroutine()-g0)
	}
	// After stop a task still runs, and its goroutine ends with it.
	ran := make(chan struct{})
	w.run(func() { close(ran) })
	<-ran
	if !testenv.Poll(5*time.Second, func() bool { return runtime.NumGoroutine() <= g0 }) {
		t.Fatalf("%d goroutines left after a task run once stopped", runtime.NumGoroutine()-g0)
	}
}
