package child

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// parentEnv makes the test binary a stand-in for the bridge: it starts a
// child, prints its pid and waits to be killed.
const parentEnv = "CHILD_TEST_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(parentEnv) != "" {
		os.Exit(runParent())
	}
	os.Exit(m.Run())
}

func runParent() int {
	p, err := Start(&Spec{Path: "/bin/sleep", Args: []string{"sleep", "1000"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(p.Pid())
	// Not a wait for anything: the test kills this process, and what its
	// death does to the child is what it checks.
	time.Sleep(time.Hour)
	return 0
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func start(t *testing.T, s *Spec) *Proc {
	t.Helper()
	if s.Log == nil {
		s.Log = quiet()
	}
	p, err := Start(s)
	require.NoError(t, err)
	t.Cleanup(func() {
		p.Kill()
		p.CloseFiles()
	})
	return p
}

func shell(t *testing.T, script string) *Spec {
	sh := testenv.Require(t, "sh")
	return &Spec{Path: sh, Args: []string{"sh", "-c", script}, KillGrace: 100 * time.Millisecond}
}

// The child dies with the bridge, also when the bridge is SIGKILLed and
// cannot clean up.
func TestChildDiesWithParent(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	parent := exec.Command(exe)
	parent.Env = append(os.Environ(), parentEnv+"=1")
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err)
	st, ok := ReadStat(pid)
	require.True(t, ok, "child %d runs", pid)
	require.Equal(t, parent.Process.Pid, st.PPid)
	require.Equal(t, pid, st.Pgrp, "the child leads its own process group")

	require.NoError(t, parent.Process.Signal(syscall.SIGKILL))
	_ = parent.Wait()
	require.Empty(t, testenv.WaitGone([]int{pid}, 5*time.Second), "the child outlived its killed parent")
}

// The parent-death signal fires when the forking thread ends. A caller of
// Start whose goroutine returns with its thread locked ends that thread;
// the child must not die of it.
func TestChildSurvivesCallerThreadExit(t *testing.T) {
	type started struct {
		p   *Proc
		err error
		tid int
	}
	var s started
	for {
		res := make(chan started, 1)
		go func() {
			runtime.LockOSThread()
			tid := unix.Gettid()
			if tid == unix.Getpid() {
				// The main thread is parked rather than ended: try
				// again from another one.
				runtime.UnlockOSThread()
				res <- started{tid: tid}
				return
			}
			p, err := Start(&Spec{Path: "/bin/cat", Args: []string{"cat"}, Log: quiet()})
			res <- started{p, err, tid}
			// Returning while locked ends this thread.
		}()
		if s = <-res; s.tid != unix.Getpid() {
			break
		}
	}
	require.NoError(t, s.err)
	p := s.p
	t.Cleanup(func() {
		p.Kill()
		p.CloseFiles()
	})
	// A thread's parent-death signals are sent before it leaves
	// /proc/self/task.
	require.True(t, testenv.WaitUntil(10*time.Second, 5*time.Millisecond, func() bool {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(s.tid))
		return err != nil
	}), "the caller's thread did not end")
	_, err := io.WriteString(p.Stdin(), "still here\n")
	require.NoError(t, err)
	got, err := bufio.NewReader(p.Stdout()).ReadString('\n')
	require.NoError(t, err, "the child died with its caller's thread: %s", p.Exited())
	require.Equal(t, "still here\n", got)
}

// termDeaf starts a process deaf to SIGTERM and to the end of its input,
// with the given kill grace, and waits until it is so.
func termDeaf(t *testing.T, grace time.Duration) *Proc {
	spec := shell(t, `trap "" TERM; echo ready; while :; do sleep 1; done`)
	spec.KillGrace = grace
	p := start(t, spec)
	line, err := bufio.NewReader(p.Stdout()).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line, "the TERM trap is set")
	return p
}

// Stop escalates to SIGKILL after the grace; Stop and Kill are idempotent.
func TestStopEscalates(t *testing.T) {
	p := termDeaf(t, 100*time.Millisecond)
	p.Stop()
	p.Stop()
	p.Kill()
	p.Kill()
	require.Equal(t, "signal: killed", p.Exited())
	how, err := p.Exit()
	require.Equal(t, "signal: killed", how)
	require.Error(t, err)
	require.True(t, p.Stopped(), "an end that was asked for")
	require.True(t, p.Exiting())
}

// Stop returns at once; KillNow does not wait for the grace.
func TestStopDoesNotWait(t *testing.T) {
	p := termDeaf(t, time.Hour)
	p.Stop()
	require.Empty(t, p.Exited(), "deaf to SIGTERM, SIGKILL an hour away: it runs")
	require.False(t, p.Exiting())
	p.KillNow()
	<-p.Done()
	require.Equal(t, "signal: killed", p.Exited())
}

// A process that ends on its own is reaped with its helpers (the rest of
// its group), its exit and its stderr are kept, and it was not stopped.
func TestExitSweepsGroupAndKeepsStderr(t *testing.T) {
	spec := shell(t, `sleep 1000 & echo $!; echo "first" >&2; printf 'last\r\n' >&2; exit 3`)
	spec.Env = []string{"PATH=/usr/bin:/bin"}
	p := start(t, spec)
	var helper int
	_, err := fmt.Fscanln(p.Stdout(), &helper)
	require.NoError(t, err)
	<-p.Done()
	require.Equal(t, "exit status 3", p.Exited())
	require.False(t, p.Stopped())
	require.Equal(t, []string{"first", "last"}, p.StderrTail())
	require.Empty(t, testenv.WaitGone([]int{helper}, 5*time.Second), "the helper in the group outlived the program")
}

// The environment is exactly Env, never the bridge's, and Dir is the
// working directory.
func TestEnvAndDir(t *testing.T) {
	dir := t.TempDir()
	spec := shell(t, `pwd; env | sort`)
	spec.Dir, spec.Env = dir, []string{"ONLY=this"}
	p := start(t, spec)
	out, err := io.ReadAll(p.Stdout())
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Equal(t, dir, lines[0])
	require.Contains(t, lines[1:], "ONLY=this")
	for _, kv := range lines[1:] {
		// sh adds PWD, SHLVL and _ of its own.
		name, _, _ := strings.Cut(kv, "=")
		require.Contains(t, []string{"ONLY", "PWD", "SHLVL", "_"}, name, "inherited %q", kv)
	}
}

func TestStartFailure(t *testing.T) {
	_, err := Start(&Spec{Path: "/nonexistent/prog", Args: []string{"prog"}, Log: quiet()})
	var pe *os.PathError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, syscall.ENOENT)
}
