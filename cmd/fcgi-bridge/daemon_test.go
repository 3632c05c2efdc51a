package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestQuickModeServes runs `fcgi-bridge --listen unix:… -- cat`: the request
// body comes back through a pool of cat, for RESPONDER and FILTER requests,
// the socket is created 0660, and QUIT stops the daemon, removing it.
func TestQuickModeServes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	d := start(t, "--listen", "unix:"+sock, "--", "cat")
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket %s: %v, mode %v; want a 0660 socket", sock, err, st.Mode())
	}
	c := unixClient(sock)
	defer c.Close()
	resp, err := do(ctxTimeout(t, 10*time.Second), c, request{body: "hello through cat", ctype: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.status != 200 || resp.body != "hello through cat" {
		t.Fatalf("RESPONDER through cat: %d %q", resp.status, resp.body)
	}
	resp, err = do(ctxTimeout(t, 10*time.Second), c, request{role: fcgi.RoleFilter, data: "filter data"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.status != 200 || resp.body != "filter data" {
		t.Fatalf("FILTER through cat: %d %q", resp.status, resp.body)
	}
	if line, _ := d.log.WaitFor("fcgi-bridge started", 0); !strings.Contains(line, "unix:"+sock) || !strings.Contains(line, "routes=") {
		t.Errorf("start-up line should name the listeners and routes: %q", line)
	}
	d.signal(syscall.SIGQUIT) // drains like TERM (and prints no goroutine dump)
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d after QUIT, want 0", code)
	}
	if strings.Contains(d.log.String(), "goroutine ") {
		t.Error("QUIT printed the Go runtime's goroutine dump instead of draining")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind after exit: %v", err)
	}
}

// TestDefaultConfigServes runs the embedded default (with the listener moved
// to a unix socket): JSON is rendered to HTML by the binary's own `html`
// transform, format=json bypasses it, and FILTER data is upper-cased.
func TestDefaultConfigServes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	d := start(t, "--listen", "unix:"+sock)
	c := unixClient(sock)
	defer c.Close()
	ctx := ctxTimeout(t, 20*time.Second)

	resp, err := do(ctx, c, request{body: `{"name":"<b>x</b>"}`, ctype: "application/json", accept: "text/html"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.status != 200 || !strings.HasPrefix(resp.header("Content-Type"), "text/html") ||
		!strings.Contains(resp.body, "&lt;b&gt;x&lt;/b&gt;") || !strings.Contains(resp.body, "http://example.test/app/page") {
		t.Fatalf("rendered page: %d %q\n%s", resp.status, resp.header("Content-Type"), resp.body)
	}
	resp, err = do(ctx, c, request{uri: "/app/page?format=json", body: `{"a":1}`, ctype: "application/json"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.body != `{"a":1}` {
		t.Fatalf("format=json should bypass the transform, got %q", resp.body)
	}
	resp, err = do(ctx, c, request{role: fcgi.RoleFilter, data: "make me loud"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.body != "MAKE ME LOUD" {
		t.Fatalf("FILTER through upper: %q", resp.body)
	}
	d.signal(syscall.SIGINT)
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d after INT", code)
	}
}

// slowUpstream answers after hold, or when release is closed; started
// receives one value per request as it arrives.
func slowUpstream(t *testing.T, hold time.Duration) (srv *httptest.Server, started chan struct{}, release chan struct{}) {
	started = make(chan struct{}, 16)
	release = make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-time.After(hold):
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "slow answer")
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		srv.Close()
	})
	return srv, started, release
}

// TestTermDrainsInFlight sends TERM while a slow request is in flight: the
// request completes, then the daemon exits 0.
func TestTermDrainsInFlight(t *testing.T) {
	up, started, _ := slowUpstream(t, 1500*time.Millisecond)
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	d := start(t, "--listen", "unix:"+sock, "--upstream", up.URL, "--log-format", "json", "--", binary, "transform", "identity")
	if line, _ := d.log.WaitFor("fcgi-bridge started", 0); !strings.HasPrefix(line, "{") {
		t.Errorf("--log-format json: start-up line %q", line)
	}
	c := unixClient(sock)
	defer c.Close()
	type result struct {
		resp *response
		err  error
	}
	res := make(chan result, 1)
	go func() {
		r, err := do(ctxTimeout(t, 30*time.Second), c, request{method: "GET"})
		res <- result{r, err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	d.signal(syscall.SIGTERM)
	if _, ok := d.log.WaitFor("draining", 5*time.Second); !ok {
		t.Fatal("no drain log line after TERM")
	}
	r := <-res
	if r.err != nil || r.resp.status != 200 || r.resp.body != "slow answer" {
		t.Fatalf("the request in flight during TERM: %+v, %v", r.resp, r.err)
	}
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d after a clean drain", code)
	}
	noTransformsLeft(t)
}

// TestSecondSignalStopsAtOnce: with a request that would take a minute, a
// second TERM ends the daemon within seconds.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	up, started, _ := slowUpstream(t, time.Minute)
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	d := start(t, "--listen", "unix:"+sock, "--upstream", up.URL, "--shutdown-timeout", "2m", "--", binary, "transform", "identity")
	if len(childrenOf(d.cmd.Process.Pid)) == 0 {
		t.Fatal("no transform process running")
	}
	c := unixClient(sock)
	defer c.Close()
	go do(ctxTimeout(t, 2*time.Minute), c, request{method: "GET"})
	<-started
	d.signal(syscall.SIGTERM)
	if _, ok := d.log.WaitFor("draining", 5*time.Second); !ok {
		t.Fatal("no drain log line after TERM")
	}
	t0 := time.Now()
	d.signal(syscall.SIGTERM)
	code := d.wait(10 * time.Second)
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("second TERM took %v to stop the daemon", took)
	}
	if code != 1 {
		t.Errorf("exit status %d after a forced stop, want 1", code)
	}
	if _, ok := d.log.WaitFor("second signal", 0); !ok {
		t.Error("no log line for the second signal")
	}
	noTransformsLeft(t)
}

const reloadConfig = `
[[listen]]
addr = "unix:%s"

[log]
access = false

[transform.note]
command = ["@self", "transform", "annotate"]
min = 1
max = 2

[[route]]
name = "all"
source = "body"
transform = ["note"]
`

// TestReloadUnderLoad sends HUP repeatedly (and once with a broken file)
// while clients send a steady stream of requests: not one fails, and the
// transform processes are replaced by each reload.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bridge.sock")
	cfgPath := filepath.Join(dir, "bridge.toml")
	good := fmt.Sprintf(reloadConfig, sock)
	os.WriteFile(cfgPath, []byte(good), 0o644)
	d := start(t, "-c", cfgPath)

	var (
		stop          atomic.Bool
		total, failed atomic.Int64
		mu            sync.Mutex
		pids          = map[int]bool{}
		firstErr      error
		wg            sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			c := &fcgi.Client{Network: "unix", Address: sock, KeepConn: true, MaxIdleConns: 1, DialTimeout: 5 * time.Second}
			defer c.Close()
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				resp, err := do(ctx, c, request{body: "payload", ctype: "text/plain"})
				cancel()
				total.Add(1)
				if err == nil && (resp.status != 200 || resp.body != "payload") {
					err = fmt.Errorf("status %d body %q", resp.status, resp.body)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				pid, _ := strconv.Atoi(resp.header("X-Transform-Pid"))
				mu.Lock()
				pids[pid] = true
				mu.Unlock()
			}
		})
	}

	// traffic waits until the clients have had n more answers, so each
	// reload meets requests in flight.
	traffic := func(n int64) {
		t.Helper()
		want := total.Load() + n
		if !testenv.Poll(20*time.Second, func() bool { return total.Load() >= want }) {
			t.Fatalf("the clients stalled at %d requests", total.Load())
		}
	}
	hup := func(wantLine string) {
		t.Helper()
		before := d.log.Count(wantLine)
		d.signal(syscall.SIGHUP)
		if !testenv.Poll(15*time.Second, func() bool { return d.log.Count(wantLine) > before }) {
			t.Fatalf("no %q after HUP", wantLine)
		}
	}
	for range 4 {
		traffic(10)
		hup("configuration reloaded")
	}
	os.WriteFile(cfgPath, []byte(good+"\n[server]\nno_such_key = 1\n"), 0o644)
	traffic(10)
	d.signal(syscall.SIGHUP)
	if _, ok := d.log.WaitFor("reload failed", 10*time.Second); !ok {
		t.Fatal("a broken file on HUP was not reported")
	}
	os.WriteFile(cfgPath, []byte(good), 0o644)
	traffic(10)
	hup("configuration reloaded")
	traffic(10)
	stop.Store(true)
	wg.Wait()

	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across reloads; first: %v", failed.Load(), total.Load(), firstErr)
	}
	if total.Load() < 50 {
		t.Errorf("only %d requests were sent; the stream was not steady", total.Load())
	}
	if len(pids) < 3 {
		t.Errorf("requests were served by %d transform processes over 5 reloads; reloads should replace them", len(pids))
	}
	t.Logf("%d requests, 0 failed, %d transform processes over 5 reloads", total.Load(), len(pids))

	// A reload that changes the transform takes effect for the next request;
	// one that moves the listener is reported and the old socket kept.
	changed := strings.Replace(good, `"annotate"`, `"upper"`, 1)
	changed = strings.Replace(changed, sock, filepath.Join(dir, "moved.sock"), 1)
	os.WriteFile(cfgPath, []byte(changed), 0o644)
	hup("configuration reloaded")
	if _, ok := d.log.WaitFor("listener changes take effect on restart", 0); !ok {
		t.Error("a changed listener address was not reported on reload")
	}
	c := unixClient(sock)
	resp, err := do(ctxTimeout(t, 10*time.Second), c, request{body: "payload", ctype: "text/plain"})
	c.Close()
	if err != nil || resp.body != "PAYLOAD" {
		t.Fatalf("after reloading with the upper transform: %+v, %v", resp, err)
	}

	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for pid := range pids {
		if alive(pid) {
			t.Errorf("transform process %d outlived the daemon", pid)
		}
	}
	noTransformsLeft(t)
}

// alive reports whether pid is still one of our transforms (a recycled pid
// running something else does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.HasPrefix(string(b), binary+"\x00transform")
}

// transformProcesses lists the pids of every process running this test's
// binary as a transform.
func transformProcesses() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// noTransformsLeft fails the test when a transform of this test's binary is
// still running shortly after the daemon exited. Only a killed daemon relies
// on the kernel's parent-death signal, which is delivered asynchronously,
// hence the short wait.
func noTransformsLeft(t *testing.T) {
	t.Helper()
	if !testenv.Poll(3*time.Second, func() bool { return len(transformProcesses()) == 0 }) {
		t.Errorf("transform processes %v outlived the daemon", transformProcesses())
	}
}

func childrenOf(ppid int) []int {
	var out []int
	for _, pid := range transformProcesses() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestNoTransformOutlivesKill kills the daemon with SIGKILL, the crash case
// no cleanup code runs in: its transforms must die with it.
func TestNoTransformOutlivesKill(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	d := start(t, "--listen", "unix:"+sock)
	var kids []int
	if !testenv.Poll(10*time.Second, func() bool { kids = childrenOf(d.cmd.Process.Pid); return len(kids) >= 2 }) {
		t.Fatalf("the default configuration should start its two transforms (min = 1 each); found %v", kids)
	}
	d.signal(syscall.SIGKILL)
	d.wait(5 * time.Second)
	var left []int
	if !testenv.Poll(5*time.Second, func() bool {
		left = left[:0]
		for _, pid := range kids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		return len(left) == 0
	}) {
		t.Fatalf("transforms %v outlived the killed daemon", left)
	}
}

// TestStartErrors: one clear sentence for the errors people meet when
// starting, exit status 1, and no transform left running.
func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stale := filepath.Join(t.TempDir(), "file.sock")
	os.WriteFile(stale, []byte("not a socket"), 0o644)
	for _, tc := range []struct {
		listen, want string
	}{
		{"tcp:" + busy.Addr().String(), "already in use"},
		{"unix:" + filepath.Join(t.TempDir(), "no", "such", "dir.sock"), "does not exist"},
		{"unix:" + stale, "is not a socket"},
	} {
		code, _, errOut := runCmd(t, "", "--listen", tc.listen)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("--listen %s: exit %d, want 1 and %q in:\n%s", tc.listen, code, tc.want, errOut)
		}
	}
	noTransformsLeft(t)
	if b, _ := os.ReadFile(stale); string(b) != "not a socket" {
		t.Error("a regular file at the socket path was changed")
	}
}

// TestStartErrorsUnprivileged runs the daemon as nobody, where permission
// problems are real: a socket in a directory it cannot write, and a port
// below 1024.
func TestStartErrorsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as another user")
	}
	// nobody must be able to reach and run the binary: open up the
	// directory TestMain made, and only that.
	os.Chmod(filepath.Dir(binary), 0o711)
	for dir := filepath.Dir(filepath.Dir(binary)); dir != "/"; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm()&0o001 == 0 {
			t.Skipf("nobody cannot reach the test binary through %s", dir)
		}
	}
	closed := t.TempDir()
	os.Chmod(closed, 0o755)               // root's; nobody may not create files in it
	os.Chmod(filepath.Dir(closed), 0o711) // but may pass through its parent (the test's own)
	private := filepath.Join(closed, "private")
	os.Mkdir(private, 0o700)
	for _, tc := range []struct{ listen, want string }{
		{"unix:" + filepath.Join(closed, "bridge.sock"), "may not create files in " + closed},
		{"unix:" + filepath.Join(private, "bridge.sock"), "cannot reach " + private},
		{"tcp:127.0.0.1:80", "ports below 1024 need root or CAP_NET_BIND_SERVICE"},
	} {
		if strings.HasSuffix(tc.listen, ":80") {
			if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(string(b)) == "0" {
				continue // every port is unprivileged here
			}
		}
		cmd := exec.Command(binary, "--listen", tc.listen, "--", "cat")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("--listen %s as nobody: %v, want exit 1 and %q in:\n%s", tc.listen, err, tc.want, out)
		}
	}
}

// TestUSR1ReopensLogFile renames the log file away, as logrotate does, and
// sends USR1: the daemon writes to a new file at the configured path.
func TestUSR1ReopensLogFile(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "bridge.log")
	sock := filepath.Join(dir, "bridge.sock")
	cfgPath := filepath.Join(dir, "bridge.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("[[listen]]\naddr = \"unix:%s\"\n\n[log]\nfile = %q\n\n[[route]]\nname = \"all\"\n", sock, logPath)), 0o644)
	d := start2(t, logPath, "-c", cfgPath)
	os.Rename(logPath, logPath+".1")
	d.signal(syscall.SIGUSR1)
	waitFile(t, logPath, "log file reopened")
	d.signal(syscall.SIGTERM)
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	waitFile(t, logPath, "stopped")
	if b, _ := os.ReadFile(logPath + ".1"); strings.Contains(string(b), "stopped") {
		t.Error("the daemon kept writing to the rotated file")
	}
}

// start2 starts a daemon that logs to a file, waiting for its start-up line there.
func start2(t *testing.T, logPath string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &proc{t: t, cmd: cmd, log: testenv.NewLines(strings.NewReader("")), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
	})
	waitFile(t, logPath, "fcgi-bridge started")
	return d
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	var b []byte
	if !testenv.Poll(20*time.Second, func() bool { b, _ = os.ReadFile(path); return strings.Contains(string(b), want) }) {
		t.Fatalf("%s never contained %q:\n%s", path, want, b)
	}
}

// TestSystemdSocketActivation passes a listening unix socket the way systemd
// does (descriptor 3, LISTEN_FDS, LISTEN_FDNAMES, and LISTEN_PID set to the
// daemon's own pid by a shell that then execs it): the daemon serves on it,
// and its transforms inherit neither the descriptor nor the variables.
func TestSystemdSocketActivation(t *testing.T) {
	if code, _, errOut := runCmd(t, "", "-t", "--listen", "systemd:fcgi"); code != 0 {
		t.Fatalf("-t --listen systemd:fcgi: exit %d: %s", code, errOut)
	}
	sock := filepath.Join(t.TempDir(), "activated.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// systemd owns the file; closing our copy must not remove it.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	defer l.Close()
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inode := socketInode(t, f.Fd())

	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" --listen systemd:fcgi`, binary)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=fcgi")
	cmd.ExtraFiles = []*os.File{f}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &proc{t: t, cmd: cmd, log: testenv.NewLines(stderr), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	defer func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
	}()
	if _, ok := d.log.WaitFor("fcgi-bridge started", 20*time.Second); !ok {
		t.Fatalf("the daemon did not start:\n%s", d.log)
	}
	f.Close()
	l.Close() // only the daemon holds the socket now

	c := unixClient(sock)
	defer c.Close()
	resp, err := do(ctxTimeout(t, 10*time.Second), c, request{role: fcgi.RoleFilter, data: "activated"})
	if err != nil || resp.body != "ACTIVATED" {
		t.Fatalf("request over the activated socket: %+v %v\n%s", resp, err, d.log)
	}
	kids := childrenOf(cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("no transform processes found to inspect")
	}
	for _, pid := range kids {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), "LISTEN_FDS=") {
			t.Errorf("transform %d inherited LISTEN_FDS", pid)
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); target == inode {
				t.Errorf("transform %d inherited the listening socket as fd %s", pid, fd.Name())
			}
		}
	}
	d.signal(syscall.SIGTERM)
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// socketInode returns the /proc link target ("socket:[N]") naming fd's socket.
func socketInode(t *testing.T, fd uintptr) string {
	t.Helper()
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// A configuration that was never checked with -t still says its warnings:
// the daemon logs them when it starts.
func TestStartLogsWarnings(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bridge.sock")
	cfg := filepath.Join(dir, "bridge.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[[listen]]\naddr = \"unix:%s\"\nmode = \"0666\"\n\n[[route]]\nname = \"all\"\n", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := start(t, "-c", cfg)
	if line, ok := d.log.WaitFor("configuration warning", 0); !ok || !strings.Contains(line, "listen.0.mode") {
		t.Errorf("no warning about the world-writable socket at start-up: %q", line)
	}
	d.signal(syscall.SIGTERM)
	d.wait(20 * time.Second)
}

// TestReloadWhilePreviousDrains reloads again while the generation the first
// reload replaced is still draining a request: the draining side must not
// read the configuration the second reload is replacing (the daemon is
// built with -race, which reports such a read and exits 66).
func TestReloadWhilePreviousDrains(t *testing.T) {
	up, started, release := slowUpstream(t, time.Minute)
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	d := start(t, "--listen", "unix:"+sock, "--upstream", up.URL, "--", binary, "transform", "identity")
	c := unixClient(sock)
	defer c.Close()
	res := make(chan error, 1)
	go func() {
		r, err := do(ctxTimeout(t, 60*time.Second), c, request{method: "GET"})
		if err == nil && (r.status != 200 || r.body != "slow answer") {
			err = fmt.Errorf("status %d body %q", r.status, r.body)
		}
		res <- err
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	waitCount := func(s string, n int) {
		t.Helper()
		if !testenv.Poll(20*time.Second, func() bool { return d.log.Count(s) >= n }) {
			t.Fatalf("%d lines %q, want %d", d.log.Count(s), s, n)
		}
	}
	d.signal(syscall.SIGHUP)
	waitCount("configuration reloaded", 1)
	// The first generation still serves the held request: its drain is on.
	d.signal(syscall.SIGHUP)
	waitCount("configuration reloaded", 2)
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("the request held across two reloads: %v", err)
	}
	waitCount("previous configuration drained and closed", 2)
	d.signal(syscall.SIGTERM)
	code := d.wait(30 * time.Second)
	if strings.Contains(d.log.String(), "DATA RACE") {
		t.Fatalf("data race in the daemon:\n%s", d.log)
	}
	if code != 0 {
		t.Fatalf("exit status %d", code)
	}
}
