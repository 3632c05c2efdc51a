package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// TestCloseCancelledContextIdle: with nothing in flight, Close succeeds
// even when its context has already ended (a second TERM, a reload whose
// grace is used up): there is nothing it failed to wait for. Select picks at
// random between ready cases, so one try would pass half the time.
func TestCloseCancelledContextIdle(t *testing.T) {
	for i := 0; i < 50; i++ {
		cfg, err := conf.Parse("c.toml", []byte("[[route]]\n"))
		require.NoError(t, err)
		b, err := New(cfg)
		require.NoError(t, err)
		f := &fixture{b: b}
		assert.Equal(t, 200, f.do(t, req{method: "POST", uri: "/", body: "done before Close"}).status)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, b.Close(ctx), "try %d", i)
	}
}

// TestCloseCancelledContextBusy: a request still running when the context
// ends is reported.
func TestCloseCancelledContextBusy(t *testing.T) {
	cfg, err := conf.Parse("c.toml", []byte(tt("hang", testtransform.Hang, "timeout = \"5s\"\nkill_grace = \"100ms\"")+`
[[route]]
transform = ["hang"]
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	f := &fixture{b: b}
	done := make(chan *recorder)
	go func() { done <- f.do(t, req{method: "POST", uri: "/", body: "x"}) }()
	require.Eventually(t, func() bool { return b.Stats()["hang"].Busy == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = b.Close(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 requests were still in flight")
	<-done
}
