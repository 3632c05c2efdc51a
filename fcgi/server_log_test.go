package fcgi

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logBuffer collects slog output from the server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines(level string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, "level="+level) {
			out = append(out, line)
		}
	}
	return out
}

// startLoggedTCPServer serves h on loopback TCP (where a peer can send a
// reset) with its log captured at debug level.
func startLoggedTCPServer(t *testing.T, h Handler) (*Server, *logBuffer, string) {
	t.Helper()
	logs := &logBuffer{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &Server{Handler: h, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return srv, logs, l.Addr().String()
}

func dialTCPPeer(t *testing.T, addr string) *peer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, c: c, rr: newRecordReader(c), results: map[uint16]*peerResult{}}
}

// reset closes the peer's connection with a TCP RST instead of a FIN.
func (p *peer) reset() {
	require.NoError(p.t, p.c.(*net.TCPConn).SetLinger(0))
	require.NoError(p.t, p.c.Close())
}

// A peer closing or resetting an idle connection (lighttpd, HAProxy and
// Caddy do) is routine: debug only. A reset that cuts requests short gets one
// INFO line.
func TestReadErrorLogLevels(t *testing.T) {
	bh := newBlockingHandler()
	srv, logs, addr := startLoggedTCPServer(t, bh)
	waitLog := func(what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			return len(logs.lines("DEBUG")) > 0 && strings.Contains(strings.Join(logs.lines("DEBUG"), "\n"), what)
		}, 5*time.Second, 5*time.Millisecond, "debug line %q", what)
	}

	// Idle after a kept request, then reset.
	p := dialTCPPeer(t, addr)
	p.send(request(1, true, ""))
	recvTimeout(t, bh.started, "handler start")
	bh.release <- struct{}{}
	require.Equal(t, StatusRequestComplete, p.result(1).protoStatus)
	recvTimeout(t, bh.done, "handler end")
	p.reset()
	waitLog("peer reset the connection")

	// Idle, then closed.
	p = dialTCPPeer(t, addr)
	require.NoError(t, p.c.Close())
	waitLog("peer closed the connection")
	require.Empty(t, logs.lines("INFO"), "idle closes and resets are not news")
	require.Empty(t, logs.lines("WARN"))

	// A reset with a request in flight: one INFO line.
	p = dialTCPPeer(t, addr)
	p.send(request(1, true, ""))
	recvTimeout(t, bh.started, "handler start")
	p.reset()
	recvTimeout(t, bh.done, "handler cancelled")
	require.Eventually(t, func() bool { return len(logs.lines("INFO")) > 0 }, 5*time.Second, 5*time.Millisecond)
	// Once the server has let go of the connection nothing more is logged
	// about it.
	waitFor(t, "the connection to be forgotten", func() bool { return len(srv.connections()) == 0 })
	info := logs.lines("INFO")
	require.Len(t, info, 1, "one line per reset connection")
	require.Contains(t, info[0], "peer reset the connection")
	require.Contains(t, info[0], "requests=1")
}
