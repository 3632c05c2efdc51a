package bridge

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// TestSlowRequestLog holds the only process of a pool, so that a request
// queues for it: the slow line names the route, the pool and the pid, and
// puts the time in the queue. A fast request on a route whose threshold is
// the global one (an hour) logs nothing.
func TestSlowRequestLog(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	b, c := statusBridgeLog(t, `
[log]
slow = "1h"
`+tt("one", testtransform.Cat, "max = 1\nqueue = 1\nqueue_timeout = \"20s\"")+`
[[route]]
name = "queued"
path = "/queued"
transform = ["one"]
slow = "40ms"

[[route]]
name = "fast"
path = "/fast"
transform = ["one"]
`, logger)
	require.Equal(t, 200, mustGet(t, c, "/fast/x").status)

	var p = b.pools[0]
	held, err := p.Acquire(context.Background())
	require.NoError(t, err)
	done := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a, _ := get(ctx, c, "/queued/x")
		done <- a
	}()
	require.Eventually(t, func() bool { return p.Stats().Queue == 1 }, 10*time.Second, time.Millisecond)
	// Slowness under test: the request waits in the queue this long.
	time.Sleep(60 * time.Millisecond)
	p.Release(held, true)
	require.Equal(t, 200, (<-done).status)

	mu.Lock()
	text := logs.String()
	mu.Unlock()
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, `msg="slow request"`) {
			lines = append(lines, l)
		}
	}
	require.Len(t, lines, 1, "one slow line, for the queued request only:\n%s", text)
	line := lines[0]
	for _, want := range []string{"route=queued", "pool=one", "uri=/queued/x", "status=200", "threshold=40ms", "upstream=", "transform=", "write="} {
		require.Contains(t, line, want)
	}
	require.Regexp(t, regexp.MustCompile(`pid=[1-9]`), line)
	q := regexp.MustCompile(`queue=([0-9.]+)(ms|s)`).FindStringSubmatch(line)
	require.NotNil(t, q, line)
	queue, err := time.ParseDuration(q[1] + q[2])
	require.NoError(t, err)
	require.GreaterOrEqual(t, queue, 60*time.Millisecond, "the queue wait is where the time went: %s", line)
}
