package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func socketMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		t.Fatalf("%s is %v, not a socket", path, st.Mode().Type())
	}
	return st.Mode().Perm()
}

// TestUnixModeIgnoresUmask creates sockets under permissive and restrictive
// umasks: the mode is always the configured one, the process umask is
// restored, and nothing but the socket is left in the directory.
func TestUnixModeIgnoresUmask(t *testing.T) {
	for _, tc := range []struct {
		umask int
		mode  fs.FileMode
		want  fs.FileMode
	}{
		{0, 0, 0o660},
		{0o077, 0, 0o660},
		{0, 0o600, 0o600},
		{0o022, 0o666, 0o666},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "fcgi.sock")
		old := syscall.Umask(tc.umask)
		l, err := Open("unix:"+path, Options{Mode: tc.mode})
		if after := syscall.Umask(old); after != tc.umask {
			t.Errorf("Open changed the process umask from %#o to %#o", tc.umask, after)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := socketMode(t, path); got != tc.want {
			t.Errorf("umask %#o mode %#o: socket mode %#o, want %#o", tc.umask, tc.mode, got, tc.want)
		}
		if l.Addr().String() != path {
			t.Errorf("Addr() = %s, want %s", l.Addr(), path)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries after Open, want only the socket", len(entries))
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial the new socket: %v", err)
		}
		srv, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if srv.LocalAddr().String() != path {
			t.Errorf("accepted connection's local address %q, want the socket path", srv.LocalAddr())
		}
		srv.Close()
		c.Close()
		l.Close()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file still there after Close: %v", err)
		}
	}
}

// TestUnixLongPath binds at the longest path sun_path takes and refuses a
// longer one with an explanation.
func TestUnixLongPath(t *testing.T) {
	dir := t.TempDir()
	name := strings.Repeat("s", maxSocketPath-len(dir)-1)
	path := filepath.Join(dir, name)
	old := syscall.Umask(0)
	l, err := Open("unix:"+path, Options{})
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := socketMode(t, path); got != 0o660 {
		t.Errorf("mode %#o, want 0660", got)
	}
	if _, err := Open("unix:"+path+strings.Repeat("x", 10), Options{}); err == nil || !strings.Contains(err.Error(), "limited to") {
		t.Errorf("too long a path: err = %v", err)
	}
}

func TestUnixStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fcgi.sock")
	// A listener closed without unlinking leaves what a crashed daemon leaves.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()

	l, err := Open("unix:"+path, Options{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestUnixRefusesLiveSocketAndFiles(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	l, err := Open("unix:"+live, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Open("unix:"+live, Options{}); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("live socket: err = %v, want a refusal", err)
	}
	if _, err := net.Dial("unix", live); err != nil {
		t.Errorf("the live socket was damaged by the refused Open: %v", err)
	}

	regular := filepath.Join(dir, "data.txt")
	os.WriteFile(regular, []byte("precious"), 0o644)
	if _, err := Open("unix:"+regular, Options{}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("regular file: err = %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "precious" {
		t.Errorf("regular file changed: %q", b)
	}
	sub := filepath.Join(dir, "subdir")
	os.Mkdir(sub, 0o755)
	if _, err := Open("unix:"+sub, Options{}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("directory: err = %v, want a refusal", err)
	}
}

// TestUnixCloseKeepsSuccessor checks that closing an old listener does not
// remove a socket another instance has since put at the same path.
func TestUnixCloseKeepsSuccessor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fcgi.sock")
	old, err := Open("unix:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path) // as an operator (or a new instance's stale cleanup) would
	successor, err := Open("unix:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer successor.Close()
	old.Close()
	if _, err := net.Dial("unix", path); err != nil {
		t.Fatalf("the successor's socket is gone after the old listener closed: %v", err)
	}
	if err := old.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestUnixOwnerGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a socket's owner needs root")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		owner, group string
		uid, gid     uint32
	}{
		{"65534", "65534", 65534, 65534},
		{"nobody", "", 65534, 0},
		{"", "1", 0, 1},
	} {
		path := filepath.Join(dir, "o.sock")
		l, err := Open("unix:"+path, Options{Owner: tc.owner, Group: tc.group})
		if err != nil {
			t.Fatalf("owner %q group %q: %v", tc.owner, tc.group, err)
		}
		var st syscall.Stat_t
		syscall.Lstat(path, &st)
		if st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("owner %q group %q: socket is %d:%d, want %d:%d", tc.owner, tc.group, st.Uid, st.Gid, tc.uid, tc.gid)
		}
		l.Close()
	}
	if _, err := Open("unix:"+filepath.Join(dir, "x.sock"), Options{Owner: "no-such-user-here"}); err == nil || !strings.Contains(err.Error(), "socket owner") {
		t.Errorf("unknown owner: err = %v", err)
	}
}

func TestUnixMissingDirectory(t *testing.T) {
	_, err := Open("unix:"+filepath.Join(t.TempDir(), "no", "fcgi.sock"), Options{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v, want an explanation that the directory does not exist", err)
	}
}

func TestUnixAbstract(t *testing.T) {
	name := "@fcgi-bridge-test-" + filepath.Base(t.TempDir())
	l, err := Open("unix:"+name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// A socket owner or group the bridge may not give is reported with the
// names as configured, the ids, who the bridge runs as and what to change.
func TestChownErrorSaysWhoAndWhat(t *testing.T) {
	me := strconv.Itoa(os.Geteuid())
	if u, err := user.LookupId(me); err == nil {
		me = u.Username
	}
	err := chownError(-1, 33, "", "www-data", &fs.PathError{Op: "lchown", Path: "/run/x.sock", Err: syscall.EPERM})
	for _, want := range []string{`group "www-data" (gid 33)`, "runs as " + me, "usermod -aG www-data " + me, "operation not permitted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("group error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("the cause is lost: %v", err)
	}
	err = chownError(os.Geteuid()+1, -1, "web", "", &fs.PathError{Op: "lchown", Path: "/run/x.sock", Err: syscall.EPERM})
	for _, want := range []string{fmt.Sprintf(`owner "web" (uid %d)`, os.Geteuid()+1), "only root (or CAP_CHOWN)", "drop the listener's owner key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("owner error %q does not say %q", err, want)
		}
	}
}
