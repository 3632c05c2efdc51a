package pool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
		st, ok := procStat(pid)
		require.True(t, ok, "transform %d runs", pid)
		require.Equal(t, parent.Process.Pid, st.ppid)
		require.Equal(t, pid, st.pgrp, "transform leads its own process group")
		pids = append(pids, pid)
	}
	require.Len(t, pids, 3)

	require.NoError(t, parent.Process.Signal(syscall.SIGKILL))
	_ = parent.Wait()
	require.Empty(t, waitGone(pids, 5*time.Second), "transforms outlived the killed bridge")
}
