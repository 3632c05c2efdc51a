package pool

import (
	"bufio"
	"context"
	"fmt"
	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runOrphanParent is the helper mode for TestNoOrphans: a bridge stand-in
// that starts a pool, prints the pids of its transforms and waits to be
// killed.
func runOrphanParent() int {
	p, err := New(Config{Name: "orphans", Command: []string{"sleep", "1000"}, Min: 3, Max: 3})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var pids []string
	for range 3 {
		proc, err := p.Acquire(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pids = append(pids, strconv.Itoa(proc.Pid()))
	}
	fmt.Println(strings.Join(pids, " "))
	// Not a wait for anything: the test kills this process, and what
	// its death does to the transforms is what it checks.
	time.Sleep(time.Hour)
	return 0
}

func TestNoOrphansWhenBridgeIsKilled(t *testing.T) {
	watch(t)
	exe, err := os.Executable()
	require.NoError(t, err)
	parent := exec.Command(exe)
	parent.Env = append(os.Environ(), helperEnv+"=parent")
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	var pids []int
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		st, ok := child.ReadStat(pid)
		require.True(t, ok, "transform %d runs", pid)
		require.Equal(t, parent.Process.Pid, st.PPid)
		require.Equal(t, pid, st.Pgrp, "transform leads its own process group")
		pids = append(pids, pid)
	}
	require.Len(t, pids, 3)

	require.NoError(t, parent.Process.Signal(syscall.SIGKILL))
	_ = parent.Wait()
	require.Empty(t, testenv.WaitGone(pids, 5*time.Second), "transforms outlived the killed bridge")
}

// Pdeathsig fires when the forking thread exits. Goroutines that lock a
// thread and exit without unlocking make the runtime end that thread; the
// transforms must survive that. (The forking thread is also held by the
// waiter's blocking waitid, so this guards the behaviour rather than
// proving the lock: the lock is what keeps the goroutine from moving to
// another thread between the fork and the wait.)
func TestTransformsSurviveThreadExits(t *testing.T) {
	logs := watch(t)
	p := newPool(t, logs, Config{Command: []string{"cat"}, Min: 4, Max: 4})
	// Many at once, so that every idle thread, including any that forked a
	// transform, gets locked and then ended.
	var tidMu sync.Mutex
	var tids []int
	for range 4 {
		var locked, exited sync.WaitGroup
		release := make(chan struct{})
		for range 64 {
			locked.Add(1)
			exited.Add(1)
			go func() {
				defer exited.Done()
				runtime.LockOSThread()
				tidMu.Lock()
				tids = append(tids, unix.Gettid())
				tidMu.Unlock()
				locked.Done()
				// A blocking syscall keeps the thread out of the
				// scheduler while the others lock theirs.
				<-release
				// Exiting while locked terminates this thread.
			}()
		}
		locked.Wait()
		close(release)
		exited.Wait()
	}
	// A thread's parent-death signals are sent before it leaves
	// /proc/self/task; once the threads are gone, a transform they killed
	// can no longer answer.
	gone := func() bool {
		for _, tid := range tids {
			if tid == os.Getpid() {
				continue // the main thread is parked, never ended
			}
			if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err == nil {
				return false
			}
		}
		return true
	}
	require.True(t, testenv.Poll(10*time.Second, gone), "locked threads did not end")
	defer func() { require.Zero(t, p.Stats().Crashed) }()
	var procs []*Process
	for range 4 {
		proc := acquire(t, p)
		got, err := exchange(proc, "still here")
		require.NoError(t, err)
		require.Equal(t, "still here", got)
		procs = append(procs, proc)
	}
	for _, proc := range procs {
		p.Release(proc, true)
	}
	require.EqualValues(t, 4, p.Stats().Spawned)
}
