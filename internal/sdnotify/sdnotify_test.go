package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens the datagram socket systemd would hold.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSendToPathAndAbstractSocket(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify.sock"),
		fmt.Sprintf("@fcgi-bridge-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(name[:1], func(t *testing.T) {
			c := listen(t, name)
			t.Setenv("NOTIFY_SOCKET", name)
			n, err := New()
			if err != nil || n == nil {
				t.Fatalf("New: %v, %v", n, err)
			}
			defer n.Close()
			if os.Getenv("NOTIFY_SOCKET") != "" {
				t.Error("NOTIFY_SOCKET left in the environment for children to inherit")
			}
			if err := n.Ready("serving 2 routes\nsecond line dropped"); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, c); got != "READY=1\nSTATUS=serving 2 routes\n" {
				t.Fatalf("got %q", got)
			}
			if err := n.Reloading("reloading"); err != nil {
				t.Fatal(err)
			}
			got := receive(t, c)
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			if len(lines) != 3 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
				t.Fatalf("got %q", got)
			}
			if usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil || usec <= 0 {
				t.Fatalf("MONOTONIC_USEC %q", lines[1])
			}
			n.Stopping("stopping")
			if got := receive(t, c); got != "STOPPING=1\nSTATUS=stopping\n" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestNothingWithoutNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := New()
	if n != nil || err != nil {
		t.Fatalf("New without NOTIFY_SOCKET: %v, %v", n, err)
	}
	// A nil Notifier is usable and silent.
	if err := n.Ready("x"); err != nil {
		t.Fatal(err)
	}
	n.Close()
}

func TestBadNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "relative.sock")
	if _, err := New(); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was accepted")
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if _, err := New(); err == nil {
		t.Fatal("a socket nobody holds was accepted")
	}
}

func TestSendRefusesBrokenAssignments(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify.sock")
	listen(t, name)
	t.Setenv("NOTIFY_SOCKET", name)
	n, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, a := range []string{"READY=1\nWATCHDOG=1", "READY"} {
		if err := n.Send(a); err == nil {
			t.Errorf("Send(%q) accepted", a)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"10000000", "", 5 * time.Second, false},
		{"10000000", pid, 5 * time.Second, false},
		{"10000000", "1", 0, false},
		{"0", "", 0, true},
		{"ten", "", 0, true},
		{"10000000", "me", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := WatchdogInterval()
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.err)
		}
	}
}
