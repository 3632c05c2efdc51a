package pool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWaitTrace: a caller that queues behind a held process gets its own
// queueing time in its trace; one served at once adds nothing.
func TestWaitTrace(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Max: 1, QueueSize: 1, QueueTimeout: 10 * time.Second})
	held := acquire(t, p)

	var queued WaitTrace
	got := make(chan *Process, 1)
	go func() {
		proc, err := p.Acquire(WithWaitTrace(context.Background(), &queued))
		if err != nil {
			proc = nil
		}
		got <- proc
	}()
	require.Eventually(t, func() bool { return p.Stats().Queue == 1 }, 5*time.Second, time.Millisecond)
	t0 := time.Now()
	// Slowness under test: the trace must cover the time spent queued.
	time.Sleep(20 * time.Millisecond)
	p.Release(held, true)
	proc := <-got
	require.NotNil(t, proc)
	require.GreaterOrEqual(t, queued.Total(), 20*time.Millisecond)
	require.Less(t, queued.Total(), time.Since(t0)+time.Second)

	var direct WaitTrace
	p.Release(proc, true)
	proc, err := p.Acquire(WithWaitTrace(context.Background(), &direct))
	require.NoError(t, err)
	require.Zero(t, direct.Total(), "an idle process was taken at once")
	p.Release(proc, true)
}
