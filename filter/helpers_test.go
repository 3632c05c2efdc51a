package filter

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	testtransform.Run()
	os.Exit(m.Run())
}

// logBuffer collects log lines for assertions; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newModePool starts a pool of the test transform in mode.
func newModePool(t testing.TB, mode string, edit ...func(*pool.Config)) *pool.Pool {
	t.Helper()
	return newPool(t, pool.Config{Name: mode, Command: testtransform.Command(), Env: []string{testtransform.Env(mode)}}, edit...)
}

func newPool(t testing.TB, cfg pool.Config, edit ...func(*pool.Config)) *pool.Pool {
	t.Helper()
	if cfg.Max == 0 {
		cfg.Max = 1
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = 5 * time.Second
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, e := range edit {
		e(&cfg)
	}
	p, err := pool.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func closePool(t testing.TB, p *pool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
}

func textMessage(body string) *Message {
	return &Message{Status: 200, Header: Header{{Name: "Content-Type", Value: "text/plain"}}, Length: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
}

// roundTrip applies t and reads the whole reply.
func roundTrip(t testing.TB, tr Transform, in *Message, req *RequestInfo) (*Message, string, error) {
	t.Helper()
	out, err := tr.Apply(context.Background(), in, req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(out.Body)
	out.Body.Close()
	return out, string(b), err
}

// leakCheck records goroutines, open fds and child processes, and checks
// at the end of the test that all are back where they were.
type leakCheck struct {
	goroutines int
	fds        int
}

func startLeakCheck() leakCheck {
	return leakCheck{goroutines: runtime.NumGoroutine(), fds: countFDs()}
}

func (l leakCheck) check(t testing.TB) {
	t.Helper()
	clean := func() bool {
		return runtime.NumGoroutine() <= l.goroutines && countFDs() <= l.fds && len(childProcesses()) == 0
	}
	// Goroutines and fds give no signal when they end: poll.
	if testenv.Poll(5*time.Second, clean) {
		return
	}
	g, f, kids := runtime.NumGoroutine(), countFDs(), childProcesses()
	if g > l.goroutines {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d before, %d after\n%s", l.goroutines, g, buf)
	}
	if f > l.fds {
		t.Errorf("open fds: %d before, %d after", l.fds, f)
	}
	if len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// childProcesses lists live (not zombie) processes whose parent is this
// process.
func childProcesses() []int {
	me := os.Getpid()
	return liveProcesses(func(st child.Stat) bool { return st.PPid == me })
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// processGroup lists the live processes whose process group is pgid.
func processGroup(pgid int) []int {
	return liveProcesses(func(st child.Stat) bool { return st.Pgrp == pgid })
}

// liveProcesses lists the processes, zombies aside, that match.
func liveProcesses(match func(child.Stat) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := child.ReadStat(pid); ok && st.State != 'Z' && match(st) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// writeMessage writes m, framed, to w. It reads m.Body but does not close
// it. Errors reading m.Body are *inputError; errors writing are returned as
// they are.
func writeMessage(w io.Writer, m *Message, req *RequestInfo) error {
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	head, err := appendHead((*bp)[:0], m, req)
	if err != nil {
		return err
	}
	return writeFramed(w, head, m, *bp)
}
