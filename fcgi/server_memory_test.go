package fcgi

import (
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// idleConnBudget is what a kept-alive connection with no request in flight
// may cost the server: heap plus goroutine stack.
const idleConnBudget = 6 << 10

// stalledConnBudget is what a connection that stalled in its params may
// cost: the small read buffer on top of an idle connection's cost.
const stalledConnBudget = idleConnBudget + smallReadBufSize

// TestIdleKeptConnectionCost opens connections that each carried one
// KEEP_CONN request and now wait for the next, and measures the heap and
// stack they hold: buffers are only held while a request is in flight.
func TestIdleKeptConnectionCost(t *testing.T) {
	perConnCost(t, "idle kept", idleConnBudget, func(ts *testServer, c net.Conn) {
		p := &peer{t: t, c: c, rr: newRecordReader(c), results: map[uint16]*peerResult{}}
		p.send(request(1, true, "hello"))
		p.result(1)
		p.rr.release() // the peer's reader is let go; its socket is counted
	}, func(ts *testServer, n int) bool { return ts.srv.activeReqs.Load() == 0 })
}

// TestStalledConnectionCost: connections that sent a BEGIN_REQUEST and part
// of a PARAMS record, then nothing, hold a small read buffer, not a big one.
func TestStalledConnectionCost(t *testing.T) {
	stall := join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, appendPair(nil, "A", "b"), 0)[:10])
	perConnCost(t, "stalled", stalledConnBudget, func(ts *testServer, c net.Conn) {
		_, err := c.Write(stall)
		require.NoError(t, err)
	}, func(ts *testServer, n int) bool { return ts.srv.activeReqs.Load() == int64(n) })
}

// perConnCost opens n connections, prepares each with use, waits for settled,
// and fails when the heap and stack they hold per connection exceed budget.
func perConnCost(t *testing.T, what string, budget int64, use func(*testServer, net.Conn), settled func(*testServer, int) bool) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	const n = 400
	ts := startServer(t, echoHandler, Limits{MaxConns: 2 * n})
	// One request first, so lazily built package state is not counted.
	warm := ts.dial(t)
	warm.send(request(1, true, "warm"))
	warm.result(1)

	heap0, stack0 := memInUse()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.Dial("unix", ts.path)
		require.NoError(t, err)
		conns = append(conns, c)
		use(ts, c)
	}
	waitFor(t, what+" connections to settle", func() bool { return settled(ts, n) })
	heap1, stack1 := memInUse()
	heapPer := (int64(heap1) - int64(heap0)) / n
	stackPer := (int64(stack1) - int64(stack0)) / n
	t.Logf("per %s connection: heap %d B, stack %d B, total %d B (budget %d B)", what, heapPer, stackPer, heapPer+stackPer, budget)
	require.LessOrEqual(t, heapPer+stackPer, budget)
}

// memInUse returns the heap and goroutine stack bytes in use after a full
// collection (twice, so pooled buffers are dropped too).
func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}
