package listen

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdActivation passes a TCP and a unix socket to a child process the
// way systemd does (descriptors 3 and 4, LISTEN_PID set to the child's own
// pid by a shell that then execs it) and checks that the child serves on
// them by name and in order.
func TestSystemdActivation(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	sockPath := filepath.Join(t.TempDir(), "a.sock")
	ul, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	tf, _ := tl.(*net.TCPListener).File()
	uf, _ := ul.(*net.UnixListener).File()
	defer tf.Close()
	defer uf.Close()

	self, _ := os.Executable()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -test.run='^TestSystemdChild$' -test.v`, self)
	cmd.Env = append(os.Environ(), "FCGI_BRIDGE_SYSTEMD_CHILD=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=web:admin")
	cmd.ExtraFiles = []*os.File{tf, uf}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	waitFor := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), prefix) {
				return strings.TrimPrefix(lines.Text(), prefix)
			}
		}
		t.Fatalf("child ended before printing %q", prefix)
		return ""
	}
	if ready := waitFor("READY "); ready != "admin=unix next=tcp env=clean" {
		t.Fatalf("child reported %q", ready)
	}
	for _, tc := range []struct{ network, addr, want string }{
		{"unix", sockPath, "admin"},
		{"tcp", tl.Addr().String(), "next"},
	} {
		c, err := net.Dial(tc.network, tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.TrimSpace(got) != tc.want {
			t.Errorf("%s socket answered %q, want %q", tc.network, got, tc.want)
		}
	}
}

// TestSystemdChild is the socket-activated side of TestSystemdActivation.
func TestSystemdChild(t *testing.T) {
	if os.Getenv("FCGI_BRIDGE_SYSTEMD_CHILD") != "1" {
		t.Skip("run by TestSystemdActivation")
	}
	admin, err := Open("systemd:admin", Options{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := Open("systemd:", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open("systemd:", Options{}); err == nil {
		t.Fatal("a third socket was handed out")
	}
	env := "clean"
	if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
		env = "left"
	}
	fmt.Printf("READY admin=%s next=%s env=%s\n", admin.Addr().Network(), next.Addr().Network(), env)
	for _, l := range []struct {
		net.Listener
		name string
	}{{admin, "admin"}, {next, "next"}} {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(c, l.name)
		c.Close()
	}
}

func TestParseActivation(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if a := parseActivation(env(map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"}), 2, 100); len(a.files) != 0 || a.err != nil {
		t.Errorf("sockets meant for another pid were taken: %+v", a)
	}
	if a := parseActivation(env(map[string]string{}), 2, 100); len(a.files) != 0 || a.err != nil {
		t.Errorf("no environment: %+v", a)
	}
	if a := parseActivation(env(map[string]string{"LISTEN_PID": "2", "LISTEN_FDS": "x"}), 2, 100); a.err == nil {
		t.Errorf("bad LISTEN_FDS accepted")
	}
}

// TestSystemdExposedTCP hands a wildcard TCP socket to openSystemd through
// the internal table: without an allow list it is refused like a bind would be.
func TestSystemdExposedTCP(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := l.(*net.TCPListener).File()
	l.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	restore := useActivation(t, &activation{files: []*os.File{os.NewFile(uintptr(fd), "x")}, names: []string{"web"}, claimed: []bool{false}})
	defer restore()
	if _, err := Open("systemd:web", Options{}); err == nil || !strings.Contains(err.Error(), "without an allow list") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if _, err := Open("systemd:web", Options{}); err == nil || !strings.Contains(err.Error(), "no unclaimed socket") {
		t.Fatalf("err = %v, want no unclaimed socket", err)
	}
}

func useActivation(t *testing.T, a *activation) func() {
	t.Helper()
	loadActivation() // consume the real environment first
	activationMu.Lock()
	old := activated
	activated = a
	activationMu.Unlock()
	return func() {
		activationMu.Lock()
		activated = old
		activationMu.Unlock()
	}
}
