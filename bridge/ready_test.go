package bridge

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// TestNewWaitsForMinProcesses: when New returns, each pool's min processes
// are up and idle, so the command's "started" line (logged after New) means
// the first request pays no start-up; a transform that cannot start does not
// hold New up beyond its start attempt, it is logged and backs off.
func TestNewWaitsForMinProcesses(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-renderer")
	cfg, err := conf.Parse("ready.toml", []byte(tt("warm", testtransform.Cat, "max = 4")+`
[transform.broken]
command = [`+strconv.Quote(missing)+`]
min = 2
start_timeout = "1s"

[[route]]
name = "warm"
path = "/warm"
transform = ["warm"]

[[route]]
name = "broken"
transform = ["broken"]
`))
	require.NoError(t, err)
	cfg.Transform["warm"].Min = 3 // tt sets min = 0 for the other tests
	var logs bytes.Buffer
	start := time.Now()
	b, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: new(sync.Mutex)}, nil))))
	took := time.Since(start)
	require.NoError(t, err, "a transform that fails to start does not fail start-up")
	t.Cleanup(func() { b.Close(t.Context()) })

	st := b.Stats()
	assert.Equal(t, 3, st["warm"].Idle, "min processes are idle when New returns")
	assert.Zero(t, st["warm"].Starting)
	assert.Equal(t, uint64(3), st["warm"].Spawned)
	assert.Zero(t, st["broken"].Idle)
	assert.NotZero(t, st["broken"].StartFailures)
	assert.False(t, st["broken"].BackoffUntil.IsZero(), "the failing pool backs off")
	assert.Less(t, took, 5*time.Second)
	assert.Contains(t, logs.String(), "no-such-renderer")
}
