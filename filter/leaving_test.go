package filter

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The kill grace in these tests is long next to the rest of the test: a
// response that waited for a process to die would show it.
const longGrace = 30 * time.Second

// alive reports whether pid still runs (a zombie counts as dead).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && len(processGroup(pid)) > 0
}

// closeNow closes p without waiting out the kill grace of processes deaf
// to SIGTERM.
func closeNow(p *pool.Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Close(ctx)
}

// A transform that answers with Connection: close and then takes its time
// to exit (deaf to SIGTERM meanwhile) must not hold the finished response:
// Close returns while the process still runs, and the pool retires it.
func TestConnCloseReplyDoesNotWaitForExit(t *testing.T) {
	leaks := startLeakCheck()
	p := newModePool(t, testtransform.ConnCloseLinger, func(c *pool.Config) { c.KillGrace = longGrace })
	tr := NewPooled("linger", p, 0)
	out, err := tr.Apply(context.Background(), textMessage("hello"), nil)
	require.NoError(t, err)
	pid := out.Body.(interface{ Pid() int }).Pid()
	b, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	require.Equal(t, "hello", string(b))
	require.NoError(t, out.Body.Close())
	require.True(t, alive(pid), "the response completed before the process left")
	require.EqualValues(t, 1, p.Stats().RecycledRetire, "Connection: close retires the process without counting a failure")
	require.Zero(t, p.Stats().Discarded)

	// The next request gets another process at once.
	_, got, err := roundTrip(t, tr, textMessage("next"), nil)
	require.NoError(t, err)
	require.Equal(t, "next", got)
	closeNow(p)
	leaks.check(t)
}

// A transform whose stdout ends while it runs on cannot reply any more:
// the exchange fails at once with a 502 that says so, without waiting for
// the timeout or for the process to die.
func TestOutputClosedWhileRunning(t *testing.T) {
	for _, tt := range []struct {
		name    string
		command []string
		env     []string
		deaf    bool // lives on when stopped
	}{
		// Deaf to SIGTERM and to the end of its input.
		{"close-stdout", testtransform.Command(), []string{testtransform.Env(testtransform.CloseStdout)}, true},
		// Reads its input until EOF, its stdout is /dev/null.
		{"cat-to-dev-null", []string{"sh", "-c", "exec cat >/dev/null"}, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaks := startLeakCheck()
			p := newPool(t, pool.Config{Name: tt.name, Command: tt.command, Env: tt.env, Min: 1, KillGrace: longGrace})
			// A timeout that cannot pass during the test: the failure
			// must not wait for it.
			tr := NewPooled(tt.name, p, time.Hour)
			var logs logBuffer
			_, err := Run(context.Background(), tr, textMessage(strings.Repeat("x", 1000)), nil, Policy{Logger: logs.logger()})
			var e *Error
			require.True(t, errors.As(err, &e), "want *Error, got %T %v", err, err)
			require.Equal(t, Crash, e.Kind, "%v", e)
			require.Equal(t, 502, e.Status)
			if tt.deaf {
				require.True(t, alive(e.Pid), "the error came before the process was gone")
			}
			require.Contains(t, e.Error(), "closed its output without replying (the process still runs)")
			require.NotContains(t, e.Error(), "signal")
			closeNow(p)
			leaks.check(t)
		})
	}
}

// A timeout fails the exchange at once with a 504, also when the process
// is deaf to SIGTERM: the caller does not wait out the kill grace, and
// what the kill then causes (end of output, an exit by signal) is not
// taken for a crash.
func TestTimeoutDoesNotWaitForKill(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode string
		body int
	}{
		{"hang", testtransform.IgnoreTerm, 1000},
		// Still reading, slowly, with the writer blocked on the full pipe.
		{"hang-reading", testtransform.SlowReader, 64 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaks := startLeakCheck()
			p := newModePool(t, tt.mode, func(c *pool.Config) { c.Min, c.KillGrace = 1, longGrace })
			tr := NewPooled(tt.name, p, 300*time.Millisecond)
			start := time.Now()
			out, err := Run(context.Background(), tr, textMessage(strings.Repeat("x", tt.body)), nil, Policy{Logger: discardLogger()})
			if err == nil {
				// It echoes as it reads: the reply head came first.
				_, err = io.Copy(io.Discard, out.Body)
				out.Body.Close()
			}
			var e *Error
			require.True(t, errors.As(err, &e), "want *Error, got %T %v", err, err)
			require.Equal(t, Timeout, e.Kind, "%v", e)
			require.Equal(t, 504, e.Status)
			require.Less(t, time.Since(start), longGrace/2)
			closeNow(p)
			leaks.check(t)
		})
	}
}

// The message is written from the caller's goroutine only when it fits
// the stdin pipe as it really is. With a pipe smaller than the message, a
// transform that replies before reading its body would otherwise wait on
// its full stdout while the caller waits on the full stdin.
func TestSmallPipeReplyFirst(t *testing.T) {
	leaks := startLeakCheck()
	p := newModePool(t, testtransform.ReplyFirst, func(c *pool.Config) { c.Min = 1 })
	tr := NewPooled("reply-first", p, 5*time.Second)
	// 3 KiB is written without asking the pipe its size (it fits any
	// pipe), 12 KiB only after asking; a process that answers before
	// reading is not reused, so each size meets a fresh 4 KiB pipe.
	for _, size := range []int{3 << 10, 12 << 10} {
		proc, err := p.Acquire(context.Background())
		require.NoError(t, err)
		rc, err := proc.Stdin().SyscallConn()
		require.NoError(t, err)
		var serr error
		require.NoError(t, rc.Control(func(fd uintptr) { _, serr = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 4096) }))
		require.NoError(t, serr)
		require.Equal(t, 4096, pipeCapacity(proc.Stdin()))
		p.Release(proc, true)

		_, got, err := roundTrip(t, tr, textMessage(strings.Repeat("x", size)), nil)
		require.NoError(t, err, "%d bytes", size)
		require.Len(t, got, 256<<10, "%d bytes", size)
	}
	closePool(t, p)
	leaks.check(t)
}

// Checking a process's stdin for unread bytes must leave the pipe
// non-blocking: a blocking pipe ties up a thread on a full write and
// ignores the deadlines that wake a stuck exchange.
func TestStdinStaysNonBlocking(t *testing.T) {
	p := newModePool(t, testtransform.Cat)
	tr := NewPooled("cat", p, 0)
	_, got, err := roundTrip(t, tr, textMessage("one"), nil)
	require.NoError(t, err)
	require.Equal(t, "one", got)
	proc, err := p.Acquire(context.Background())
	require.NoError(t, err)
	defer p.Release(proc, true)
	rc, err := proc.Stdin().SyscallConn()
	require.NoError(t, err)
	var flags int
	require.NoError(t, rc.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) }))
	require.NoError(t, err)
	require.NotZero(t, flags&unix.O_NONBLOCK, "stdin pipe is in blocking mode")
}
