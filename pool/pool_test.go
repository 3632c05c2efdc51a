package pool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

// exchange writes line to proc and reads the echoed line back.
func exchange(proc *Process, line string) (string, error) {
	if _, err := io.WriteString(proc.Stdin(), line+"\n"); err != nil {
		return "", err
	}
	_ = proc.Stdout().SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(line)+1)
	if _, err := io.ReadFull(proc.Stdout(), buf); err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(buf), "\n"), nil
}

func acquire(t *testing.T, p *Pool) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	proc, err := p.Acquire(ctx)
	require.NoError(t, err)
	return proc
}

func TestPreSpawn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max int
	}{
		{"none", 0, 2},
		{"one", 1, 1},
		{"three of four", 3, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := watch(t)
			p := newPool(t, logs, Config{Command: []string{"cat"}, Min: tc.min, Max: tc.max})
			s := p.Stats()
			require.Equal(t, tc.min, s.Idle, "idle right after New")
			require.EqualValues(t, tc.min, s.Spawned)
			proc := acquire(t, p)
			got, err := exchange(proc, "hello")
			require.NoError(t, err)
			require.Equal(t, "hello", got)
			p.Release(proc, true)
			require.EqualValues(t, max(tc.min, 1), p.Stats().Spawned)
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("POOL_TEST_PASSED", "from-bridge")
	t.Setenv("POOL_TEST_SECRET", "must-not-leak")
	t.Setenv("POOL_TEST_OVERRIDDEN", "bridge")
	for _, tc := range []struct {
		name    string
		env     []string
		passEnv []string
		want    []string
	}{
		{"cleared", nil, nil, nil},
		{"explicit", []string{"A=1", "B=x=y"}, nil, []string{"A=1", "B=x=y"}},
		{"passed when set", nil, []string{"POOL_TEST_PASSED", "POOL_TEST_UNSET"}, []string{"POOL_TEST_PASSED=from-bridge"}},
		{"env wins over pass", []string{"POOL_TEST_OVERRIDDEN=config"}, []string{"POOL_TEST_OVERRIDDEN"}, []string{"POOL_TEST_OVERRIDDEN=config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := watch(t)
			argv, env := helperCommand(t, "env", tc.env...)
			p := newPool(t, logs, Config{Command: argv, Env: env, PassEnv: tc.passEnv, Max: 1})
			proc := acquire(t, p)
			defer p.Release(proc, true)
			sc := bufio.NewScanner(proc.Stdout())
			var got []string
			for sc.Scan() && sc.Text() != "END" {
				if !strings.HasPrefix(sc.Text(), helperEnv+"=") && !strings.HasPrefix(sc.Text(), "GORACE=") {
					got = append(got, sc.Text())
				}
			}
			require.NoError(t, sc.Err())
			require.ElementsMatch(t, tc.want, got)
		})
	}
}

func TestWorkingDirAndRelativeCommand(t *testing.T) {
	logs := watch(t)
	dir := t.TempDir()
	script := "#!/bin/sh\npwd\nexec cat\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "transform.sh"), []byte(script), 0o755))
	p := newPool(t, logs, Config{Command: []string{"./transform.sh"}, Dir: dir, Max: 1})
	proc := acquire(t, p)
	defer p.Release(proc, true)
	line, err := bufio.NewReader(proc.Stdout()).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, dir+"\n", line)
}

func TestUserGroup(t *testing.T) {
	logs := watch(t)
	argv, env := helperCommand(t, "id")
	cfg := Config{Command: argv, Env: env, User: "nobody", Max: 1, Logger: logs.logger()}
	if os.Geteuid() != 0 {
		_, err := New(cfg)
		require.ErrorContains(t, err, "need the bridge to run as root")
		return
	}
	// The test binary must be readable and executable by nobody.
	if err := syscall.Access(argv[0], 0o5); err != nil {
		t.Skipf("test binary not usable by other users: %v", err)
	}
	exe, err := os.ReadFile(argv[0])
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "pooluser")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	copyExe := filepath.Join(dir, "helper")
	require.NoError(t, os.WriteFile(copyExe, exe, 0o755))
	cfg.Command = []string{copyExe}
	p := newPool(t, logs, cfg)
	proc := acquire(t, p)
	defer p.Release(proc, true)
	line, err := bufio.NewReader(proc.Stdout()).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "65534 65534 []\n", line, "uid gid supplementary groups")
}

func TestRecycle(t *testing.T) {
	type check func(t *testing.T, p *Pool)
	for _, tc := range []struct {
		name string
		cfg  Config
		mode string
		run  check
	}{
		{
			name: "requests",
			cfg:  Config{MaxRequests: 10, Max: 1},
			mode: "echo",
			run: func(t *testing.T, p *Pool) {
				pids := map[int]int{}
				for range 30 {
					proc := acquire(t, p)
					_, err := exchange(proc, "x")
					require.NoError(t, err)
					pids[proc.Pid()]++
					p.Release(proc, true)
				}
				for pid, n := range pids {
					require.LessOrEqual(t, n, 11, "pid %d served more than MaxRequests+10%%", pid)
				}
				require.GreaterOrEqual(t, p.Stats().RecycledRequests, uint64(2))
			},
		},
		{
			name: "lifetime",
			cfg:  Config{MaxLifetime: 200 * time.Millisecond, Min: 1, Max: 1},
			mode: "echo",
			run: func(t *testing.T, p *Pool) {
				first := acquire(t, p)
				p.Release(first, true)
				require.Eventually(t, func() bool { return p.Stats().RecycledLifetime >= 1 }, 5*time.Second, 10*time.Millisecond)
				proc := acquire(t, p)
				require.NotEqual(t, first.Pid(), proc.Pid())
				p.Release(proc, true)
			},
		},
		{
			name: "rss",
			cfg:  Config{MaxRSS: 64 << 20, Max: 1},
			mode: "alloc",
			run: func(t *testing.T, p *Pool) {
				proc := acquire(t, p)
				_, err := exchange(proc, "alloc 1")
				require.NoError(t, err)
				p.Release(proc, true)
				require.Zero(t, p.Stats().RecycledRSS, "small process recycled")
				proc = acquire(t, p)
				_, err = exchange(proc, "alloc 128")
				require.NoError(t, err)
				p.Release(proc, true)
				require.EqualValues(t, 1, p.Stats().RecycledRSS)
				next := acquire(t, p)
				require.NotEqual(t, proc.Pid(), next.Pid())
				p.Release(next, true)
			},
		},
		{
			name: "idle",
			cfg:  Config{IdleTimeout: 300 * time.Millisecond, Min: 1, Max: 3},
			mode: "echo",
			run: func(t *testing.T, p *Pool) {
				var procs []*Process
				for range 3 {
					procs = append(procs, acquire(t, p))
				}
				for _, proc := range procs {
					p.Release(proc, true)
				}
				require.Equal(t, 3, p.Stats().Idle)
				require.Eventually(t, func() bool {
					s := p.Stats()
					return s.Idle == 1 && s.RecycledIdle == 2 && s.Retiring == 0
				}, 5*time.Second, 10*time.Millisecond)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := watch(t)
			cfg := tc.cfg
			cfg.Command, cfg.Env = helperCommand(t, tc.mode)
			tc.run(t, newPool(t, logs, cfg))
		})
	}
}

func TestSaturation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		queueSize int
		waiters   int // Acquire calls made while the only process is held
		wantSat   int
		minWait   time.Duration
	}{
		{"wait times out", 1, 1, 1, 150 * time.Millisecond},
		{"queue full", 1, 2, 2, 0},
		{"no queue", -1, 1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := watch(t)
			p := newPool(t, logs, Config{Command: []string{"cat"}, Min: 1, Max: 1, QueueSize: tc.queueSize, QueueTimeout: 150 * time.Millisecond})
			held := acquire(t, p)
			start := time.Now()
			errs := make(chan error, tc.waiters)
			for range tc.waiters {
				go func() {
					proc, err := p.Acquire(context.Background())
					if err == nil {
						p.Release(proc, true)
					}
					errs <- err
				}()
			}
			for range tc.waiters {
				err := <-errs
				require.ErrorIs(t, err, ErrSaturated)
			}
			require.GreaterOrEqual(t, time.Since(start), tc.minWait)
			require.EqualValues(t, tc.wantSat, p.Stats().Saturated)
			p.Release(held, true)
		})
	}
}

func TestQueueFIFO(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Max: 1, QueueSize: 10, QueueTimeout: 10 * time.Second})
	held := acquire(t, p)
	order := make(chan int, 5)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proc, err := p.Acquire(context.Background())
			if err != nil {
				order <- -1
				return
			}
			order <- i
			p.Release(proc, true)
		}()
		// Queue them one after the other.
		require.Eventually(t, func() bool { return p.Stats().Queue == i+1 }, 5*time.Second, time.Millisecond)
	}
	p.Release(held, true)
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	require.Equal(t, []int{0, 1, 2, 3, 4}, got)
	s := p.Stats()
	require.EqualValues(t, 6, s.Waits, "the first caller waited for the start, then five for the release")
	require.Positive(t, s.WaitTime)
}

func TestAcquireContextCancelled(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Max: 1, QueueTimeout: 10 * time.Second})
	held := acquire(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, p.Stats().Queue)
	p.Release(held, true)
}

// 100 goroutines share 2 processes; each exchange must come back intact,
// which fails if two callers ever hold the same process.
func TestConcurrentLeases(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Max: 2, QueueSize: 100, QueueTimeout: 30 * time.Second})
	const workers, rounds = 100, 10
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				proc, err := p.Acquire(context.Background())
				if err != nil {
					errs <- err
					return
				}
				msg := fmt.Sprintf("worker %d round %d", w, r)
				got, err := exchange(proc, msg)
				p.Release(proc, err == nil)
				if err == nil && got != msg {
					err = fmt.Errorf("sent %q, got %q", msg, got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	s := p.Stats()
	require.EqualValues(t, workers*rounds, s.Acquires)
	require.LessOrEqual(t, s.Spawned, uint64(2))
	require.Equal(t, 0, s.Busy)
}

func TestCrashWhileIdleIsReplaced(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Min: 1, Max: 1})
	proc := acquire(t, p)
	_, err := exchange(proc, "warm")
	require.NoError(t, err)
	p.Release(proc, true)
	require.NoError(t, syscall.Kill(proc.Pid(), syscall.SIGKILL))
	select {
	case <-proc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the process was killed")
	}
	// Replaced without anyone asking for a process.
	require.Eventually(t, func() bool {
		s := p.Stats()
		return s.Crashed == 1 && s.Idle == 1 && s.Spawned == 2
	}, 5*time.Second, 5*time.Millisecond)
	require.Contains(t, proc.Exited(), "killed")
	next := acquire(t, p)
	require.NotEqual(t, proc.Pid(), next.Pid())
	p.Release(next, true)
	require.NotEmpty(t, logs.find("transform exited"))
}

func TestDeathWhileLeased(t *testing.T) {
	logs := watch(t)
	argv, env := helperCommand(t, "exit-after", "HELPER_LINES=1")
	p := newPool(t, logs, Config{Command: argv, Env: env, Min: 1, Max: 1})
	proc := acquire(t, p)
	got, err := exchange(proc, "only one")
	require.NoError(t, err)
	require.Equal(t, "only one", got)
	_, err = proc.Stdout().Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "caller sees the exit on stdout")
	<-proc.Done()
	p.Release(proc, true)
	require.Eventually(t, func() bool { s := p.Stats(); return s.Idle == 1 && s.Spawned == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, p.Stats().StartFailures, "a death after a request is a crash, not a start failure")
}

func TestStartFailure(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	crashArgv, crashEnv := helperCommand(t, "crash-at-start")
	for _, tc := range []struct {
		name    string
		command []string
		env     []string
		ready   func(context.Context, *Process) error
		want    []string // in the error text
		cause   error
	}{
		{"missing binary", []string{"/nonexistent/transform"}, nil, nil,
			[]string{`pool "missing binary": cannot start /nonexistent/transform: no such file or directory; check the command path; attempt 1 failed, next in `}, syscall.ENOENT},
		{"not in PATH", []string{"no-such-transform-xyz"}, nil, nil,
			[]string{`"no-such-transform-xyz" not found in PATH`}, errNotInPath},
		{"permission denied", []string{notExec}, nil, nil,
			[]string{notExec, "permission denied; check that the bridge's user may execute it"}, syscall.EACCES},
		{"exits at once", crashArgv, crashEnv, nil,
			[]string{`exited right after start (exit status 3), stderr: "loading model from /srv/model.bin" | "fatal: model file missing"; run the command by hand`}, errEarlyExit},
		{"ready fails", []string{"cat"}, nil, func(context.Context, *Process) error { return errors.New("no handshake") },
			[]string{"readiness check failed: no handshake"}, nil},
		{"ready times out", []string{"cat"}, nil, func(ctx context.Context, _ *Process) error { <-ctx.Done(); return ctx.Err() },
			[]string{"readiness check failed: context deadline exceeded"}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := watch(t)
			p := newPool(t, logs, Config{Name: tc.name, Command: tc.command, Env: tc.env, Ready: tc.ready,
				StartTimeout: 100 * time.Millisecond, QueueTimeout: 10 * time.Second, Max: 2})
			var serr *StartError
			deadline := time.Now().Add(5 * time.Second)
			for serr == nil && time.Now().Before(deadline) {
				start := time.Now()
				proc, err := p.Acquire(context.Background())
				if err == nil {
					// A caller writes its message at once; the process
					// leaves it unread. An early exit is only known once
					// the process died.
					io.WriteString(proc.Stdin(), "message\n")
					<-proc.Done()
					p.Release(proc, true)
					continue
				}
				require.ErrorAs(t, err, &serr)
				require.Less(t, time.Since(start), 2*time.Second, "start errors must not wait for the queue timeout")
			}
			require.NotNil(t, serr, "no StartError")
			for _, w := range tc.want {
				require.Contains(t, serr.Error(), w)
			}
			if tc.cause != nil {
				require.ErrorIs(t, serr, tc.cause)
			}
			// In back-off the error comes at once.
			start := time.Now()
			_, err := p.Acquire(context.Background())
			var again *StartError
			if errors.As(err, &again) {
				require.Less(t, time.Since(start), time.Second, "not after the 10s queue timeout")
			}
			s := p.Stats()
			require.Positive(t, s.StartFailures)
			require.False(t, s.BackoffUntil.IsZero())
			require.Zero(t, s.Spawned-uint64(len(logs.find("transform started"))))
			require.NotEmpty(t, logs.find("transform failed to start"))
		})
	}
}

func TestBackoffGrows(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"/nonexistent/transform"}, Min: 1, Max: 1})
	require.Eventually(t, func() bool { return p.Stats().StartFailures >= 4 }, 5*time.Second, 5*time.Millisecond)
	_, err := p.Acquire(context.Background())
	var serr *StartError
	require.ErrorAs(t, err, &serr)
	require.GreaterOrEqual(t, serr.Failures, 4)
	// 100ms, 200ms, 400ms, 800ms...: the fourth failure waits 800ms.
	gap := serr.RetryAt.Sub(time.Now())
	require.Greater(t, gap, backoffBase*time.Duration(1<<(serr.Failures-2)))
}

func TestKill(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  string
		grace time.Duration
		// The kill takes at least min and less than max.
		min, max time.Duration
		exits    []string
	}{
		// Stdin EOF and SIGTERM race; either ends it, well before SIGKILL.
		{"obeys SIGTERM", "echo", 10 * time.Second, 0, 5 * time.Second, []string{"signal: terminated", "exit status 0"}},
		{"ignores SIGTERM", "ignore-term", 300 * time.Millisecond, 300 * time.Millisecond, 5 * time.Second, []string{"signal: killed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := watch(t)
			argv, env := helperCommand(t, tc.mode)
			p := newPool(t, logs, Config{Command: argv, Env: env, Max: 1, KillGrace: tc.grace})
			proc := acquire(t, p)
			_, err := exchange(proc, "ready")
			require.NoError(t, err)
			start := time.Now()
			var wg sync.WaitGroup
			for range 5 {
				wg.Add(1)
				go func() { defer wg.Done(); proc.Kill() }()
			}
			wg.Wait()
			elapsed := time.Since(start)
			require.GreaterOrEqual(t, elapsed, tc.min)
			require.Less(t, elapsed, tc.max)
			require.Contains(t, tc.exits, proc.Exited())
			proc.Kill() // again: returns at once
			p.Release(proc, false)
			require.Zero(t, p.Stats().Crashed, "a killed process did not crash")
		})
	}
}

func TestKillReachesProcessGroup(t *testing.T) {
	logs := watch(t)
	argv, env := helperCommand(t, "grandchild")
	p := newPool(t, logs, Config{Command: argv, Env: env, Max: 1})
	proc := acquire(t, p)
	var helper int
	_, err := fmt.Fscanln(proc.Stdout(), &helper)
	require.NoError(t, err)
	st, ok := child.ReadStat(helper)
	require.True(t, ok)
	require.Equal(t, proc.Pid(), st.Pgrp, "helper runs in the transform's group")
	p.Release(proc, false)
	require.Empty(t, testenv.WaitGone([]int{proc.Pid(), helper}, 5*time.Second))
}

// A helper that left the transform's process group may hold its stderr
// open after the transform is gone: the drain must end once the pipe is
// empty, with everything the transform wrote, instead of waiting for EOF.
func TestStrayHelperHoldsStderr(t *testing.T) {
	logs := watch(t)
	argv, env := helperCommand(t, "stray-stderr")
	p := newPool(t, logs, Config{Command: argv, Env: env, Max: 1})
	proc := acquire(t, p)
	var stray int
	_, err := fmt.Fscanln(proc.Stdout(), &stray)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(stray, syscall.SIGKILL) })
	_, err = io.WriteString(proc.Stdin(), "exit now\n")
	require.NoError(t, err)
	select {
	case <-proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the process was not reaped while a stray helper holds its stderr")
	}
	require.Equal(t, "exit status 5", proc.Exited())
	require.Equal(t, []string{"last words"}, proc.StderrTail())
	p.Release(proc, true)
}

func TestStderrFlood(t *testing.T) {
	logs := watch(t)
	argv, env := helperCommand(t, "stderr-flood")
	p := newPool(t, logs, Config{Command: argv, Env: env, Max: 1})
	proc := acquire(t, p)
	const requests, linesPerRequest = 8, 1024 + 2 // the flood, the overlong line, "flood done"
	for i := range requests {
		got, err := exchange(proc, fmt.Sprint("request ", i))
		require.NoError(t, err, "a chatty transform must not block")
		require.Equal(t, fmt.Sprint("request ", i), got)
	}
	// The helper writes each 1 MiB flood before its reply, and a pipe
	// holds far less, so the drain has read most of the first flood by
	// now: the notice that lines are dropped must not wait for the next
	// logged line or for the exit.
	require.NotEmpty(t, logs.find("transform stderr rate limit reached, lines dropped from the log"))
	p.Release(proc, true)
	// Close reaps the process after its stderr is drained to the end.
	require.NoError(t, p.Close(context.Background()))

	tail := proc.StderrTail()
	require.Len(t, tail, child.StderrTailLines)
	require.Equal(t, "flood done", tail[len(tail)-1])
	require.Len(t, tail[len(tail)-2], child.StderrLineMax, "overlong line is cut")
	logged := logs.find("transform stderr")
	require.Positive(t, len(logged))
	require.Less(t, len(logged), requests*linesPerRequest, "stderr logging is rate limited")
	dropped := 0
	for _, rec := range logs.find("transform stderr lines not logged (rate limit)") {
		dropped += int(rec.attrs["lines"].(int64))
	}
	require.Equal(t, requests*linesPerRequest, len(logged)+dropped, "every line is either logged or counted as dropped")
	require.Equal(t, "TestStderrFlood", logged[0].attrs["pool"])
	require.EqualValues(t, proc.Pid(), logged[0].attrs["pid"])
}

func TestClose(t *testing.T) {
	logs := watch(t)
	argv, env := helperCommand(t, "ignore-term")
	p, err := New(Config{Name: "close", Command: argv, Env: env, Min: 1, Max: 2, QueueTimeout: 10 * time.Second,
		KillGrace: 10 * time.Second, Logger: logs.logger()})
	require.NoError(t, err)
	held := acquire(t, p)
	other := acquire(t, p)
	for _, proc := range []*Process{held, other} {
		_, err := exchange(proc, "SIGTERM handler installed")
		require.NoError(t, err)
	}
	waiting := make(chan error, 1)
	go func() { _, err := p.Acquire(context.Background()); waiting <- err }()
	require.Eventually(t, func() bool { return p.Stats().Queue == 1 }, 5*time.Second, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, p.Close(ctx), context.DeadlineExceeded, "processes ignoring SIGTERM outlive the deadline")
	require.Less(t, time.Since(start), 5*time.Second, "past the deadline Close kills at once")
	require.ErrorIs(t, <-waiting, ErrClosed)
	_, err = p.Acquire(context.Background())
	require.ErrorIs(t, err, ErrClosed)
	p.Release(held, true) // after Close: harmless
	require.NoError(t, p.Close(context.Background()), "Close is idempotent")
	require.Empty(t, testenv.WaitGone(logs.startedPids(), time.Second))
}

// A program that exits cleanly at once with Min set must back off, not be
// restarted in a tight loop.
func TestNoRestartLoopOnCleanExit(t *testing.T) {
	logs := watch(t)
	start := time.Now()
	p := newPool(t, logs, Config{Command: []string{"true"}, Min: 1, Max: 1})
	// The back-off after the first two failures is 100+200 ms: a third
	// failure cannot come sooner, however fast the machine.
	require.True(t, testenv.Poll(10*time.Second, func() bool { return p.Stats().StartFailures >= 3 }))
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "starts were not backed off")
	s := p.Stats()
	require.LessOrEqual(t, s.Spawned, s.StartFailures+1, "one start at a time")
	require.Zero(t, s.Crashed)
}

func TestReadyCheck(t *testing.T) {
	logs := watch(t)
	var checked sync.Map
	ready := func(ctx context.Context, proc *Process) error {
		checked.Store(proc.Pid(), true)
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > time.Second {
			return errors.New("readiness context not bounded by StartTimeout")
		}
		got, err := exchange(proc, "ping")
		if err != nil {
			return err
		}
		if got != "ping" {
			return fmt.Errorf("handshake got %q", got)
		}
		return nil
	}
	p := newPool(t, logs, Config{Command: []string{"cat"}, Min: 2, Max: 3, Ready: ready, StartTimeout: time.Second})
	require.Equal(t, 2, p.Stats().Idle)
	var procs []*Process
	for range 3 {
		proc := acquire(t, p)
		_, ok := checked.Load(proc.Pid())
		require.True(t, ok, "process %d leased before its readiness check", proc.Pid())
		procs = append(procs, proc)
	}
	for _, proc := range procs {
		p.Release(proc, true)
	}
	require.Zero(t, p.Stats().StartFailures)
}

func TestRetire(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Min: 1, Max: 1})
	proc := acquire(t, p)
	_, err := exchange(proc, "last one")
	require.NoError(t, err)
	proc.Retire()
	p.Release(proc, true)
	next := acquire(t, p)
	require.NotEqual(t, proc.Pid(), next.Pid())
	p.Release(next, true)
	s := p.Stats()
	require.EqualValues(t, 1, s.RecycledRetire)
	require.Zero(t, s.Discarded+s.Crashed+s.StartFailures)
}

func TestReleaseClearsDeadlines(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Max: 1})
	proc := acquire(t, p)
	// Deadlines that have passed already, as a caller's would by the
	// next lease.
	require.NoError(t, proc.Stdout().SetReadDeadline(time.Unix(1, 0)))
	require.NoError(t, proc.Stdin().SetWriteDeadline(time.Unix(1, 0)))
	p.Release(proc, true)
	proc = acquire(t, p)
	defer p.Release(proc, true)
	_, err := io.WriteString(proc.Stdin(), "x\n")
	require.NoError(t, err)
	buf := make([]byte, 2)
	_, err = io.ReadFull(proc.Stdout(), buf)
	require.NoError(t, err, "the previous caller's deadline leaked into this lease")
}

// Leases go on while processes are killed from outside at random: every
// exchange either succeeds or fails cleanly, and the pool heals.
func TestChaos(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Min: 2, Max: 4, QueueSize: 64, QueueTimeout: 10 * time.Second, KillGrace: 100 * time.Millisecond})
	stop := make(chan struct{})
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			pids := logs.startedPids()
			recent := pids[max(0, len(pids)-4):]
			_ = syscall.Kill(recent[rand.IntN(len(recent))], syscall.SIGKILL)
		}
	}()
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end := time.Now().Add(time.Second)
			for r := 0; time.Now().Before(end); r++ {
				proc, err := p.Acquire(context.Background())
				if err != nil {
					var serr *StartError
					if errors.As(err, &serr) {
						continue // an early SIGKILL looks like a start failure
					}
					errs <- err
					return
				}
				msg := fmt.Sprintf("w%d r%d", w, r)
				got, err := exchange(proc, msg)
				switch {
				case err == nil && got != msg:
					errs <- fmt.Errorf("sent %q got %q", msg, got)
					p.Release(proc, false)
					return
				case err == nil:
					ok.Add(1)
				default:
					failed.Add(1)
				}
				p.Release(proc, err == nil)
			}
		}()
	}
	wg.Wait()
	close(stop)
	killer.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Healed: the pool serves again once the killing stops.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		proc, err := p.Acquire(ctx)
		if err != nil {
			return false
		}
		got, err := exchange(proc, "after")
		p.Release(proc, err == nil)
		return err == nil && got == "after"
	}, 10*time.Second, 50*time.Millisecond)
	s := p.Stats()
	require.Zero(t, s.Busy)
	t.Logf("%d exchanges ok, %d failed; spawned %d, crashed %d, start failures %d",
		ok.Load(), failed.Load(), s.Spawned, s.Crashed, s.StartFailures)
	require.Positive(t, failed.Load(), "the killer hit no exchange")
}

func TestCloseDuringReadyCheck(t *testing.T) {
	logs := watch(t)
	entered := make(chan struct{})
	var once sync.Once
	ready := func(ctx context.Context, _ *Process) error {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return ctx.Err()
	}
	p, err := New(Config{Name: "slow-ready", Command: []string{"cat"}, Max: 1, Ready: ready,
		StartTimeout: time.Minute, KillGrace: time.Second, Logger: logs.logger()})
	require.NoError(t, err)
	acquired := make(chan error, 1)
	go func() { _, err := p.Acquire(context.Background()); acquired <- err }()
	<-entered
	start := time.Now()
	require.NoError(t, p.Close(context.Background()))
	require.Less(t, time.Since(start), 5*time.Second)
	require.ErrorIs(t, <-acquired, ErrClosed)
	require.Empty(t, logs.find("transform failed to start"), "a check cut short by Close is no failure")
}

// A death during the first lease is a crash the caller reports and a retry
// gets a fresh process. A process that read its message and died crashed
// while serving it, however often that happens; the second death in a row
// of one that left its input unread means the program cannot serve, and
// the pool backs off.
func TestDeathDuringFirstLease(t *testing.T) {
	type counts struct{ crashed, startFailures uint64 }
	for _, tc := range []struct {
		mode     string
		want     []counts
		startErr string // in the StartError after the leases; "" for none
	}{
		{"crash-after-read", []counts{{1, 0}, {2, 0}, {3, 0}}, ""},
		{"die-on-input", []counts{{1, 0}, {1, 1}}, "fatal: no configuration"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			logs := watch(t)
			argv, env := helperCommand(t, tc.mode)
			p := newPool(t, logs, Config{Command: argv, Env: env, Min: 1, Max: 1})
			for i, want := range tc.want {
				proc := acquire(t, p)
				_, err := exchange(proc, "bad input")
				require.Error(t, err, "lease %d", i)
				<-proc.Done()
				p.Release(proc, false)
				s := p.Stats()
				require.Equal(t, want.crashed, s.Crashed, "lease %d", i)
				require.Equal(t, want.startFailures, s.StartFailures, "lease %d", i)
			}
			if tc.startErr == "" {
				proc := acquire(t, p)
				p.Release(proc, true)
				exits := logs.find("transform exited")
				require.Len(t, exits, len(tc.want))
				for _, r := range exits {
					require.NotContains(t, r.attrs, "stderr", "the caller quotes a leased process's stderr, not the pool")
				}
				return
			}
			_, err := p.Acquire(context.Background())
			var serr *StartError
			require.ErrorAs(t, err, &serr)
			require.Contains(t, serr.Error(), tc.startErr)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no command", Config{Name: "x"}, `pool "x": no command`},
		{"empty program", Config{Name: "x", Command: []string{""}}, `pool "x": no command`},
		{"min above max", Config{Name: "x", Command: []string{"cat"}, Min: 3, Max: 2}, `pool "x": min 3 is above max 2`},
		{"negative", Config{Name: "x", Command: []string{"cat"}, Min: -1}, `must not be negative`},
		{"unknown user", Config{Name: "x", Command: []string{"cat"}, User: "no-such-user-xyz"}, `no-such-user-xyz`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			watch(t)
			_, err := New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := (&Config{Command: []string{"cat"}, Min: 1}).withDefaults()
	require.NoError(t, err)
	require.GreaterOrEqual(t, c.Max, 1)
	require.Equal(t, 4*c.Max, c.QueueSize)
	require.Equal(t, defaultQueueTimeout, c.QueueTimeout)
	require.Equal(t, defaultStartTimeout, c.StartTimeout)
	require.Equal(t, defaultKillGrace, c.KillGrace)
	require.NotNil(t, c.Logger)
	c, err = (&Config{Command: []string{"cat"}, QueueSize: -1}).withDefaults()
	require.NoError(t, err)
	require.Zero(t, c.QueueSize)
}
