// Package peers starts real web servers (nginx, Apache, lighttpd, HAProxy)
// from their Debian packages as a test's own instances, configured to pass
// requests to a FastCGI application under test, and runs cgi-fcgi. It is
// test support: only tests import it.
//
// Every server runs from a fresh directory with a generated configuration,
// listens on a free 127.0.0.1 port, writes its logs into that directory
// (printed when the test fails) and is stopped by t.Cleanup. Nothing under
// /etc is used. A missing binary skips the test, or fails it under CI=true
// (internal/testenv).
//
// When the tests run as root the servers' workers run as an unprivileged
// user where the server insists on it (Apache, lighttpd); SocketDir and
// ListenUnix make unix sockets reachable for that user.
package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running web server instance.
type Server struct {
	Name string // "nginx", "apache2", ...
	Port int    // HTTP port on 127.0.0.1
	Dir  string // configuration, logs, temp files

	// readyNetwork and readyAddr are dialled to tell that the server is up
	// (its HTTP port, or the FastCGI socket of an application server).
	readyNetwork, readyAddr string

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	logFiles []string
	stopOnce sync.Once
}

// URL returns "http://127.0.0.1:PORT" plus path (which should start with "/").
func (s *Server) URL(path ...string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Port, strings.Join(path, ""))
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Logs returns the server's captured output and log files, for diagnostics.
func (s *Server) Logs() string {
	var b strings.Builder
	for _, f := range s.logFiles {
		data, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		const max = 16 << 10
		if len(data) > max {
			data = append([]byte("...\n"), data[len(data)-max:]...)
		}
		fmt.Fprintf(&b, "--- %s %s\n%s\n", s.Name, filepath.Base(f), data)
	}
	return b.String()
}

// Stop terminates the server (TERM, then KILL of its process group after
// five seconds). Tests need not call it: Start registers it with t.Cleanup.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
		// Workers that outlived the master (Apache children) go too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// Upstream is a FastCGI application address in the daemon's syntax:
// "tcp:HOST:PORT", "unix:PATH", or plain "HOST:PORT".
type Upstream string

// Split returns the network ("tcp" or "unix") and address.
func (u Upstream) Split() (network, address string) {
	s := string(u)
	switch {
	case strings.HasPrefix(s, "unix:"):
		return "unix", strings.TrimPrefix(s, "unix:")
	case strings.HasPrefix(s, "tcp:"):
		return "tcp", strings.TrimPrefix(s, "tcp:")
	case strings.HasPrefix(s, "/"):
		return "unix", s
	}
	return "tcp", s
}

// UpstreamOf returns the Upstream for a listener's address.
func UpstreamOf(a net.Addr) Upstream {
	if a.Network() == "unix" {
		return Upstream("unix:" + a.String())
	}
	return Upstream("tcp:" + a.String())
}

// SocketDir returns a new directory for unix sockets that unprivileged
// server workers can reach (t.TempDir is private to the test's user). It is
// removed at the end of the test.
func SocketDir(t testing.TB) string {
	t.Helper()
	// Short paths: sun_path is 108 bytes and t.TempDir names can be long.
	dir, err := os.MkdirTemp("", "peers-")
	if err != nil {
		t.Fatalf("peers: socket directory: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("peers: socket directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ListenUnix listens on a new unix socket in SocketDir, with permissions
// that let any local user (the servers' workers) connect.
func ListenUnix(t testing.TB) net.Listener {
	t.Helper()
	path := filepath.Join(SocketDir(t), "fcgi.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("peers: listen on %s: %v", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		t.Fatalf("peers: chmod %s: %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenTCP listens on a free 127.0.0.1 port.
func ListenTCP(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("peers: listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// isRoot reports whether the tests run as root, where servers must be told
// which user their workers run as.
func isRoot() bool { return os.Geteuid() == 0 }

// unprivileged returns a user and group for workers of servers that refuse
// to serve as root.
func unprivileged() (string, string) {
	for _, c := range [][2]string{{"www-data", "www-data"}, {"nobody", "nogroup"}} {
		if _, err := user.Lookup(c[0]); err != nil {
			continue
		}
		if _, err := user.LookupGroup(c[1]); err != nil {
			continue
		}
		return c[0], c[1]
	}
	return "nobody", "nogroup"
}

// newDir makes the instance directory. Workers that run as another user must
// be able to read the configuration and document root and write temp files.
func newDir(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "peers-"+name+"-")
	if err != nil {
		t.Fatalf("peers: %s directory: %v", name, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatalf("peers: %s directory: %v", name, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("peers: %v", err)
	}
}

// start runs argv with its output captured in dir, waits until port accepts
// connections, and registers the stop with t.Cleanup. When the test fails the
// logs are printed.
func start(t testing.TB, name string, port int, dir string, argv []string, env []string, logFiles ...string) *Server {
	t.Helper()
	return startReady(t, name, port, "tcp", fmt.Sprintf("127.0.0.1:%d", port), dir, argv, env, nil, logFiles...)
}

// Process is a server run from a configuration the test wrote itself (an
// example file, a copy of a packaged /etc tree), for StartProcess.
type Process struct {
	Name string   // for logs: "nginx", "caddy", ...
	Port int      // the HTTP port on 127.0.0.1 that tells it is up
	Dir  string   // working directory; its output goes to Dir/Name.out
	Argv []string // the command, in the foreground
	Env  []string // added to the test's environment
	// User, when set, runs the command as that user with its primary and
	// supplementary groups, as a service manager would (User= in a unit).
	// Only root can; servers that drop privileges themselves (nginx,
	// Apache, lighttpd, HAProxy) are started as root and told in their
	// configuration.
	User     string
	LogFiles []string // printed with the output when the test fails
}

// StartProcess starts p, waits until its port accepts connections and
// stops it (with everything in its process group) in t.Cleanup.
func StartProcess(t testing.TB, p Process) *Server {
	t.Helper()
	var cred *syscall.Credential
	if p.User != "" {
		var err error
		if cred, err = credential(p.User); err != nil {
			t.Fatalf("peers: %s: %v", p.Name, err)
		}
	}
	return startReady(t, p.Name, p.Port, "tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), p.Dir, p.Argv, p.Env, cred, p.LogFiles...)
}

// credential is the uid, gid and supplementary groups of a user, as
// initgroups(3) would set them.
func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", name, err)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, id := range ids {
		g, _ := strconv.ParseUint(id, 10, 32)
		c.Groups = append(c.Groups, uint32(g))
	}
	return c, nil
}

// UIDs returns the user ids the server's processes run as now (its master
// and workers: everything in its process group).
func (s *Server) UIDs() []int {
	pgid := s.cmd.Process.Pid
	seen := map[int]bool{}
	var uids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+d.Name(), &st) != nil || seen[int(st.Uid)] {
			continue
		}
		seen[int(st.Uid)] = true
		uids = append(uids, int(st.Uid))
	}
	return uids
}

// startReady is start with the address that tells readiness given, and
// the credential to run as (nil: the test's own).
func startReady(t testing.TB, name string, port int, readyNetwork, readyAddr, dir string, argv []string, env []string, cred *syscall.Credential, logFiles ...string) *Server {
	t.Helper()
	outPath := filepath.Join(dir, name+".out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("peers: start %s: %v", name, err)
	}
	s := &Server{Name: name, Port: port, Dir: dir, cmd: cmd, done: make(chan struct{}),
		readyNetwork: readyNetwork, readyAddr: readyAddr}
	s.logFiles = append([]string{outPath}, logFiles...)
	s.logFiles = append(s.logFiles, filepath.Join(dir, name+".conf"))
	go func() {
		s.waitErr = cmd.Wait()
		out.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("peers: %s logs (dir %s):\n%s", name, dir, s.Logs())
		}
	})
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		t.Fatalf("peers: %s %s: %v\n%s", name, strings.Join(argv, " "), err, s.Logs())
	}
	return s
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("exited during start-up: %v", s.waitErr)
		default:
		}
		c, err := net.DialTimeout(s.readyNetwork, s.readyAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not listening after %v: %v", s.readyNetwork, s.readyAddr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CGIFCGI runs cgi-fcgi (libfcgi-bin) once against upstream: it sends one
// RESPONDER request whose params are env (plus nothing else: the environment
// is replaced) and whose body is stdin, and returns what the application
// wrote to stdout (the CGI response). Only stdout and exit status are
// returned; stderr is in the error when the command fails.
func CGIFCGI(t testing.TB, ctx context.Context, upstream Upstream, env []string, stdin []byte) ([]byte, error) {
	t.Helper()
	bin := requireBinary(t, "cgi-fcgi")
	_, addr := upstream.Split()
	cmd := exec.CommandContext(ctx, bin, "-bind", "-connect", addr)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("cgi-fcgi -connect %s: %w (stderr: %q)", addr, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// errNoModule is returned when an Apache module file is missing.
var errNoModule = errors.New("apache module not found")
