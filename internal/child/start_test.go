package child

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

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

// The parent-death signal kills the child when the bridge dies (pool's
// TestNoOrphansWhenBridgeIsKilled checks that through Start); it fires
// when the forking thread ends. A caller of
// Start whose goroutine returns with its thread locked ends that thread;
// the child must not die of it.
func TestChildSurvivesCallerThreadExit(t *testing.T) {
	var p *Proc
	var err error
	require.True(t, testenv.OnEndingThread(10*time.Second, func() {
		p, err = Start(&Spec{Path: "/bin/cat", Args: []string{"cat"}, Log: quiet()})
	}), "the caller's thread did not end")
	require.NoError(t, err)
	t.Cleanup(func() {
		p.Kill()
		p.CloseFiles()
	})
	_, err = io.WriteString(p.Stdin(), "still here\n")
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

// Env wins over the variables passed from the bridge's environment, one
// entry per name, and unset names are not passed.
func TestEnviron(t *testing.T) {
	t.Setenv("CHILD_TEST_PASSED", "from-bridge")
	t.Setenv("CHILD_TEST_BOTH", "from-bridge")
	got := Environ([]string{"A=1", "CHILD_TEST_BOTH=from-env", "A=2"}, []string{"CHILD_TEST_PASSED", "CHILD_TEST_BOTH", "CHILD_TEST_UNSET_XYZ"})
	require.Equal(t, []string{"CHILD_TEST_PASSED=from-bridge", "CHILD_TEST_BOTH=from-env", "A=2"}, got)
}
