package pool

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

// logCapture records what the pool logs, for assertions and to learn every
// pid the pool started.
type logCapture struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

type captureHandler struct {
	c     *logCapture
	attrs []slog.Attr
}

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.c.mu.Lock()
	h.c.recs = append(h.c.recs, rec)
	h.c.mu.Unlock()
	return nil
}

func (h captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return captureHandler{c: h.c, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h captureHandler) WithGroup(string) slog.Handler { return h }

func (c *logCapture) logger() *slog.Logger { return slog.New(captureHandler{c: c}) }

func (c *logCapture) find(msg string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.recs {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

func (c *logCapture) startedPids() []int {
	var pids []int
	for _, r := range c.find("transform started") {
		if pid, ok := r.attrs["pid"].(int64); ok {
			pids = append(pids, int(pid))
		}
	}
	return pids
}

// watch records the goroutine and fd counts now and, when the test ends
// (after the pools it creates are closed), checks that they came back and
// that no process the test started is left: neither a child of ours nor a
// member of a process group the pool created.
func watch(t *testing.T) *logCapture {
	t.Helper()
	logs := &logCapture{}
	goroutines, fds := runtime.NumGoroutine(), countFDs()
	t.Cleanup(func() {
		leaks := func() []string {
			var problems []string
			if g := runtime.NumGoroutine(); g > goroutines {
				problems = append(problems, fmt.Sprintf("%d goroutines, %d before", g, goroutines))
			}
			if n := countFDs(); n > fds {
				problems = append(problems, fmt.Sprintf("%d open fds, %d before", n, fds))
			}
			groups := logs.startedPids()
			for _, p := range allProcs() {
				if p.PPid == os.Getpid() || (p.State != 'Z' && slices.Contains(groups, p.Pgrp)) {
					problems = append(problems, fmt.Sprintf("process %d (%s, ppid %d, pgrp %d, state %c) left", p.pid, p.Comm, p.PPid, p.Pgrp, p.State))
				}
			}
			return problems
		}
		// Goroutines and fds give no signal when they end: poll.
		var problems []string
		if !testenv.Poll(5*time.Second, func() bool { return len(leaks()) == 0 }) {
			problems = leaks()
		}
		if len(problems) > 0 {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("leak after test: %v\n%s", problems, buf)
		}
	})
	return logs
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// newPool starts a pool logging into logs and closes it when the test ends.
func newPool(t *testing.T, logs *logCapture, cfg Config) *Pool {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = t.Name()
	}
	cfg.Logger = logs.logger()
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 500 * time.Millisecond
	}
	p, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}
