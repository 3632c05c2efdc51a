package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is the datagram socket systemd holds for a Type=notify unit;
// each message it receives goes to the channel.
func notifySocket(t *testing.T, name string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 64)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

// nextState waits for the next message that is not a watchdog keep-alive.
func nextState(t *testing.T, msgs <-chan string) (string, int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	watchdogs := 0
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if m == "WATCHDOG=1\n" {
				watchdogs++
				continue
			}
			return m, watchdogs
		case <-deadline:
			t.Fatal("no state message from the daemon within 20s")
		}
	}
}

func hasLine(msg, line string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// TestSystemdNotify runs the daemon as a Type=notify unit would, with an
// abstract NOTIFY_SOCKET and a watchdog: READY=1 once serving, RELOADING=1
// with MONOTONIC_USEC and READY=1 again on HUP, READY=1 with the reason when
// a reload is refused, STOPPING=1 on TERM, and WATCHDOG=1 in between.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bridge.sock")
	cfgPath := filepath.Join(dir, "bridge.toml")
	good := fmt.Sprintf(reloadConfig, sock)
	if err := os.WriteFile(cfgPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("@fcgi-bridge-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	msgs := notifySocket(t, name)
	d := startEnv(t, []string{"NOTIFY_SOCKET=" + name, "WATCHDOG_USEC=400000"}, "-c", cfgPath)

	m, _ := nextState(t, msgs)
	if !hasLine(m, "READY=1") || !strings.Contains(m, "STATUS=serving") {
		t.Fatalf("first state message %q, want READY=1 and a STATUS", m)
	}
	c := unixClient(sock)
	defer c.Close()
	if resp, err := do(ctxTimeout(t, 10*time.Second), c, request{body: "x", ctype: "text/plain"}); err != nil || resp.status != 200 {
		t.Fatalf("request after READY=1: %v %v", resp, err)
	}

	d.signal(syscall.SIGHUP)
	m, _ = nextState(t, msgs)
	if !hasLine(m, "RELOADING=1") || !strings.Contains(m, "\nMONOTONIC_USEC=") {
		t.Fatalf("after HUP %q, want RELOADING=1 and MONOTONIC_USEC", m)
	}
	m, watchdogs := nextState(t, msgs)
	if !hasLine(m, "READY=1") {
		t.Fatalf("after the reload %q, want READY=1 once the new configuration serves", m)
	}
	// The log line is written before READY=1 is sent; reading it from the
	// pipe may take a moment longer.
	if _, ok := d.log.WaitFor("configuration reloaded", 10*time.Second); !ok {
		t.Fatal("READY=1 came after HUP, but the configuration was not reloaded")
	}

	os.WriteFile(cfgPath, []byte(good+"\n[server]\nno_such_key = 1\n"), 0o644)
	d.signal(syscall.SIGHUP)
	if m, _ = nextState(t, msgs); !hasLine(m, "RELOADING=1") {
		t.Fatalf("after the second HUP %q", m)
	}
	m, w := nextState(t, msgs)
	watchdogs += w
	if !hasLine(m, "READY=1") || !strings.Contains(m, "STATUS=reload refused") || !strings.Contains(m, "no_such_key") {
		t.Fatalf("after a refused reload %q, want READY=1 and the reason in STATUS", m)
	}

	// The watchdog runs at half of WATCHDOG_USEC (200ms): wait for one
	// more keep-alive rather than for a time.
	for watchdogs == 0 {
		select {
		case m := <-msgs:
			if m != "WATCHDOG=1\n" {
				t.Fatalf("unexpected %q while waiting for WATCHDOG=1", m)
			}
			watchdogs++
		case <-time.After(20 * time.Second):
			t.Fatal("no WATCHDOG=1 with WATCHDOG_USEC set")
		}
	}

	d.signal(syscall.SIGTERM)
	m, _ = nextState(t, msgs)
	if !hasLine(m, "STOPPING=1") {
		t.Fatalf("after TERM %q, want STOPPING=1", m)
	}
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d after TERM", code)
	}
}
