package pool

import (
	"bufio"
	"fmt"
	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a transform: TestMain runs a helper mode when
// helperEnv is set, so the tests need nothing but cat and sleep.
const helperEnv = "POOL_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// helperCommand returns argv and env for a helper mode.
func helperCommand(t testing.TB, mode string, env ...string) ([]string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("test binary: %v", err)
	}
	// The race detector's runtime sleeps a second at exit unless told
	// not to; the helpers must exit when their mode says so.
	return []string{exe}, append([]string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)
}

func runHelper(mode string) int {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	// echo copies lines from stdin to stdout until EOF.
	echo := func(each func(line string)) {
		for {
			line, err := in.ReadString('\n')
			if line != "" {
				if each != nil {
					each(line)
				}
				out.WriteString(line)
				out.Flush()
			}
			if err != nil {
				return
			}
		}
	}
	switch mode {
	case "echo":
		echo(nil)
	case "crash-after-read":
		line, _ := in.ReadString('\n')
		fmt.Fprintf(os.Stderr, "panic: cannot parse %q\n", strings.TrimSpace(line))
		return 1
	case "die-on-input":
		// Fails as soon as a request arrives, without reading it: a
		// program that cannot serve at all.
		unix.Poll([]unix.PollFd{{Fd: 0, Events: unix.POLLIN}}, -1)
		fmt.Fprintln(os.Stderr, "fatal: no configuration")
		return 2
	case "crash-at-start":
		fmt.Fprintln(os.Stderr, "loading model from /srv/model.bin")
		fmt.Fprintln(os.Stderr, "fatal: model file missing")
		return 3
	case "stderr-flood":
		// 1 MiB of stderr per line of input, plus one overlong line.
		chunk := strings.Repeat("x", 1023) + "\n"
		echo(func(string) {
			w := bufio.NewWriterSize(os.Stderr, 64<<10)
			for range 1024 {
				w.WriteString(chunk)
			}
			w.WriteString(strings.Repeat("y", 10000) + "\n")
			w.WriteString("flood done\n")
			w.Flush()
		})
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		echo(nil)
		// Deaf to stdin EOF too: hanging is what the tests using this
		// mode check.
		time.Sleep(time.Hour)
	case "exit-after":
		n, _ := strconv.Atoi(os.Getenv("HELPER_LINES"))
		for range n {
			line, err := in.ReadString('\n')
			out.WriteString(line)
			out.Flush()
			if err != nil {
				return 1
			}
		}
		return 0
	case "env":
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Fprintln(out, kv)
		}
		fmt.Fprintln(out, "END")
		out.Flush()
		echo(nil)
	case "id":
		fmt.Fprintf(out, "%d %d %v\n", os.Getuid(), os.Getgid(), mustGroups())
		out.Flush()
		echo(nil)
	case "alloc":
		// "alloc N" makes the process hold N MiB, touched so they count
		// in the RSS.
		var hold [][]byte
		echo(func(line string) {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "alloc "); ok {
				mib, _ := strconv.Atoi(n)
				b := make([]byte, mib<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				hold = append(hold, b)
			}
		})
		_ = hold
	case "grandchild":
		// A helper in the same process group, as renderers start workers.
		c := exec.Command("/bin/sleep", "1000")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(out, c.Process.Pid)
		out.Flush()
		echo(nil)
	case "stray-stderr":
		// A helper that leaves the process group and keeps stderr open.
		c := exec.Command("/bin/sleep", "1000")
		c.Stderr = os.Stderr
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(out, c.Process.Pid)
		out.Flush()
		in.ReadString('\n')
		fmt.Fprintln(os.Stderr, "last words")
		return 5
	case "parent":
		return runOrphanParent()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		return 2
	}
	return 0
}

func mustGroups() []int {
	g, _ := os.Getgroups()
	return g
}

// procInfo is a process seen in /proc.
type procInfo struct {
	child.Stat
	pid int
}

func allProcs() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := child.ReadStat(pid); ok {
			out = append(out, procInfo{st, pid})
		}
	}
	return out
}
