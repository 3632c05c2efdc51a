// Package sdnotify tells systemd how the service is doing, as sd_notify(3)
// describes: one datagram of newline-separated VAR=value assignments sent to
// the unix socket named by NOTIFY_SOCKET. A unit with Type=notify waits for
// READY=1 before it counts the service as started, and a unit with
// WatchdogSec= expects WATCHDOG=1 at least that often.
//
// Nothing is sent when NOTIFY_SOCKET is unset: a Notifier from New is then
// nil, and every method of a nil Notifier does nothing.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to the socket systemd named.
type Notifier struct {
	conn *net.UnixConn
}

// New opens the socket named by NOTIFY_SOCKET, a path or an abstract name
// written with a leading "@". It returns nil and no error when the variable
// is unset or empty. It removes NOTIFY_SOCKET, WATCHDOG_USEC and
// WATCHDOG_PID from the environment, so that no child process reports in the
// service's name; call Watchdog before New.
func New() (*Notifier, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	os.Unsetenv("WATCHDOG_USEC")
	os.Unsetenv("WATCHDOG_PID")
	if name == "" {
		return nil, nil
	}
	if name[0] != '/' && name[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or an abstract name starting with @", name)
	}
	// The net package maps a leading "@" to the abstract namespace.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: %w", name, err)
	}
	return &Notifier{conn: conn}, nil
}

// Send sends the assignments as one datagram.
func (n *Notifier) Send(assignments ...string) error {
	if n == nil {
		return nil
	}
	for _, a := range assignments {
		if strings.ContainsRune(a, '\n') || !strings.Contains(a, "=") {
			return fmt.Errorf("sd_notify assignment %q: want one VAR=value line", a)
		}
	}
	_, err := n.conn.Write([]byte(strings.Join(assignments, "\n") + "\n"))
	return err
}

// Ready says the service serves, with a one-line status.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1", Status(status))
}

// Reloading says a configuration reload began. MONOTONIC_USEC lets systemd
// tell this reload from an earlier one.
func (n *Notifier) Reloading(status string) error {
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10), Status(status))
}

// Stopping says the service began to stop.
func (n *Notifier) Stopping(status string) error {
	return n.Send("STOPPING=1", Status(status))
}

// Status sends only a new status line.
func (n *Notifier) Status(status string) error { return n.Send(Status(status)) }

// Watchdog sends the keep-alive a unit with WatchdogSec= waits for.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// Close closes the socket.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	return n.conn.Close()
}

// Status makes a STATUS= assignment of s, cut to its first line.
func Status(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return "STATUS=" + s
}

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, or 0 when no watchdog
// is set for this process (WATCHDOG_PID, when set, names another one).
func WatchdogInterval() (time.Duration, error) {
	v := os.Getenv("WATCHDOG_USEC")
	if v == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(v, 10, 63)
	if err != nil || usec == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC=%q: want a positive number of microseconds", v)
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID=%q: %w", p, errors.Unwrap(err))
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	return time.Duration(usec) * time.Microsecond / 2, nil
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
