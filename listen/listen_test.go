package listen

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		network string
		addr    string
		err     string
	}{
		{"tcp:127.0.0.1:9000", "tcp", "127.0.0.1:9000", ""},
		{"tcp:[::1]:9000", "tcp", "[::1]:9000", ""},
		{"tcp::9000", "tcp", ":9000", ""},
		{"127.0.0.1:9000", "tcp", "127.0.0.1:9000", ""},
		{"unix:/run/x.sock", "unix", "/run/x.sock", ""},
		{"/run/x.sock", "unix", "/run/x.sock", ""},
		{"systemd:", "systemd", "", ""},
		{"systemd:web", "systemd", "web", ""},
		{"tcp:127.0.0.1", "", "", "want tcp:HOST:PORT"},
		{"unix:", "", "", "want unix:PATH"},
		{"udp:1.2.3.4", "", "", "unknown kind"},
		{"nothing", "", "", "want tcp:HOST:PORT"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			s, err := ParseSpec(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseSpec(%q) error = %v, want one containing %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Network != tc.network || s.Address != tc.addr {
				t.Fatalf("ParseSpec(%q) = %+v, want %s %s", tc.in, s, tc.network, tc.addr)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	a, err := ParseAllow([]string{"10.1.0.0/16", "192.168.1.7", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		list *AllowList
		ip   string
		want bool
	}{
		{nil, "127.0.0.1", true},
		{nil, "127.3.4.5", true},
		{nil, "::1", true},
		{nil, "::ffff:127.0.0.1", true},
		{nil, "10.1.2.3", false},
		{a, "10.1.200.3", true},
		{a, "::ffff:10.1.2.3", true},
		{a, "10.2.0.1", false},
		{a, "192.168.1.7", true},
		{a, "192.168.1.8", false},
		{a, "fd12::1", true},
		{a, "127.0.0.1", false}, // an explicit list replaces the loopback default
	}
	for _, tc := range tests {
		if got := tc.list.Allows(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("list %v Allows(%s) = %v, want %v", tc.list != nil, tc.ip, got, tc.want)
		}
	}
	for _, bad := range []string{"example.com", "10.0.0.0/33", "1.2.3"} {
		if _, err := ParseAllow([]string{bad}); err == nil {
			t.Errorf("ParseAllow(%q) accepted a bad entry", bad)
		}
	}
}

func TestTCPExposure(t *testing.T) {
	tests := []struct {
		name string
		spec string
		opts Options
		err  string
	}{
		{"loopback", "tcp:127.0.0.1:0", Options{}, ""},
		{"localhost", "tcp:localhost:0", Options{}, ""},
		{"ipv6 loopback", "tcp:[::1]:0", Options{}, ""},
		{"every interface", "tcp::0", Options{}, "refusing to accept FastCGI on every interface"},
		{"wildcard", "tcp:0.0.0.0:0", Options{}, "without an allow list"},
		{"wildcard with allow", "tcp:0.0.0.0:0", Options{Allow: []string{"10.0.0.0/8"}}, ""},
		{"wildcard forced", "tcp:0.0.0.0:0", Options{ForceExposed: true}, ""},
		{"bad allow", "tcp:127.0.0.1:0", Options{Allow: []string{"web1"}}, "not an address or CIDR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Open(tc.spec, tc.opts)
			if tc.err != "" {
				if err == nil {
					l.Close()
					t.Fatalf("Open(%s) succeeded, want an error containing %q", tc.spec, tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Open(%s) error = %v, want %q", tc.spec, err, tc.err)
				}
				return
			}
			if err != nil {
				if strings.Contains(tc.spec, "::1") && errors.Is(err, syscall.EADDRNOTAVAIL) {
					t.Skip("no IPv6 loopback on this machine")
				}
				t.Fatal(err)
			}
			l.Close()
		})
	}
}

// TestTCPAllowListRefuses connects from 127.0.0.1 to listeners whose allow
// lists do and do not include it: a refused client sees its connection
// closed and the log has one line naming it.
func TestTCPAllowListRefuses(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tc := range []struct {
		allow []string
		ok    bool
	}{
		{nil, true},
		{[]string{"127.0.0.1"}, true},
		{[]string{"127.0.0.0/8", "10.0.0.1"}, true},
		{[]string{"10.0.0.0/8"}, false},
	} {
		logs.Reset()
		var refused atomic.Int64
		l, err := Open("tcp:127.0.0.1:0", Options{Allow: tc.allow, Logger: logger, Refused: func() { refused.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var one [1]byte
		if tc.ok {
			srv := <-accepted
			srv.Write([]byte("y"))
			if _, err := c.Read(one[:]); err != nil {
				t.Errorf("allow %v: allowed client could not read: %v", tc.allow, err)
			}
			srv.Close()
		} else {
			if _, err := c.Read(one[:]); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("allow %v: refused client read err = %v, want EOF or reset", tc.allow, err)
			}
			if !strings.Contains(logs.String(), "refused FastCGI connection") || !strings.Contains(logs.String(), "client=127.0.0.1:") {
				t.Errorf("allow %v: log does not name the refused client: %q", tc.allow, logs.String())
			}
		}
		// The refusal is counted before the connection is closed, which the
		// client has seen by now.
		if want := map[bool]int64{true: 0, false: 1}[tc.ok]; refused.Load() != want {
			t.Errorf("allow %v: Refused called %d times, want %d", tc.allow, refused.Load(), want)
		}
		c.Close()
		l.Close()
		<-accepted
	}
}

func TestTCPPortInUse(t *testing.T) {
	l, err := Open("tcp:127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Open("tcp:"+l.Addr().String(), Options{})
	if err == nil || !strings.Contains(err.Error(), "already in use") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listener on %s: err = %v, want an 'already in use' explanation", l.Addr(), err)
	}
}

// lockedBuffer is a log sink the accepting goroutine writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}
