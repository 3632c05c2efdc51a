package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// daemon is a running fcgi-bridge process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	log    *testenv.Lines
	done   chan struct{}
	err    error
	dir    string // its configuration and sockets
	socket string // unix socket path ("" when it listens on TCP only)
	config string // configuration file
}

// bridgeConfig is the part of every test configuration that is not about
// routes: a unix socket every web server worker may use, text logs with
// access lines.
func bridgeListen(sock string) string {
	return fmt.Sprintf(`[[listen]]
addr = "unix:%s"
mode = "0666"

[log]
level = "info"
access = true
`, sock)
}

// startBridge writes config (a TOML body after the listener, written by
// body(socket)) and runs the daemon on it. The daemon listens on a unix
// socket in a directory web server workers can reach.
func startBridge(t *testing.T, body func(sock string) string, extraArgs ...string) *daemon {
	t.Helper()
	dir := peers.SocketDir(t)
	sock := filepath.Join(dir, "bridge.sock")
	config := filepath.Join(dir, "bridge.toml")
	if err := os.WriteFile(config, []byte(bridgeListen(sock)+body(sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, bridgeBin, append([]string{"-c", config}, extraArgs...)...)
	d.dir, d.socket, d.config = dir, sock, config
	return d
}

// runDaemon starts argv in its own process group and waits for the
// daemon's start-up line. Cleanup stops the whole group.
func runDaemon(t *testing.T, argv0 string, args ...string) *daemon {
	t.Helper()
	d, ok := launchDaemon(t, argv0, args...)
	if !ok {
		t.Fatalf("fcgi-bridge did not start:\n%s", d.log)
	}
	return d
}

// launchDaemon is runDaemon that reports a daemon that did not start
// instead of failing the test.
func launchDaemon(t *testing.T, argv0 string, args ...string) (*daemon, bool) {
	t.Helper()
	cmd := exec.Command(argv0, args...)
	cmd.Dir = repoRoot
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv0, err)
	}
	d := &daemon{t: t, cmd: cmd, log: testenv.NewLines(pr), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		pw.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-d.done
			}
		}
		if t.Failed() {
			t.Logf("fcgi-bridge log:\n%s", d.log)
		}
	})
	// Generous: under CI every package's tests compete for the CPU, and
	// `go run` may compile first. A daemon that exits ends the wait at once.
	_, ok := d.log.WaitFor("fcgi-bridge started", 3*time.Minute)
	return d, ok
}

func (d *daemon) upstream() peers.Upstream { return peers.Upstream("unix:" + d.socket) }

func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the daemon to exit and returns its exit status.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatalf("fcgi-bridge did not exit within %v", timeout)
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if d.err != nil {
		d.t.Fatal(d.err)
	}
	return 0
}

// descendants returns the pids of every live process below pid, found by a
// scan of /proc (transforms run in their own process groups, so a group
// lookup would miss them).
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := procParent(p); ok {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q, hops := parent[p], 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// procParent reads the parent pid of p from /proc/p/stat; zombies count as
// gone.
func procParent(p int) (int, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return 0, false
	}
	// The command name is in parentheses and may contain spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// alive reports which of pids still run (not zombies).
func alive(pids []int) []int {
	var out []int
	for _, p := range pids {
		if _, ok := procParent(p); ok {
			out = append(out, p)
		}
	}
	return out
}

// waitGone waits until none of pids runs, up to d, and returns those left.
func waitGone(pids []int, d time.Duration) []int {
	var left []int
	testenv.Poll(d, func() bool { left = alive(pids); return len(left) == 0 })
	return left
}

// httpResult is one HTTP answer, read whole.
type httpResult struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

// httpClient is shared by tests; it never follows redirects (the tests
// check the upstream's own 3xx).
var httpClient = &http.Client{
	Timeout: 60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
	Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
}

// fetch sends one request and reads the whole answer.
func fetch(t testing.TB, method, url string, header map[string]string, body io.Reader) (*httpResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: body: %w", method, url, err)
	}
	return &httpResult{status: resp.StatusCode, header: resp.Header, body: string(data), took: time.Since(start)}, nil
}

// mustFetch is fetch that fails the test on a transport error.
func mustFetch(t testing.TB, method, url string, header map[string]string, body io.Reader) *httpResult {
	t.Helper()
	r, err := fetch(t, method, url, header, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}
