package fcgi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

// This file is the raw-bytes peer the server tests drive: a web server written
// out record by record, so every test says exactly what goes on the wire.

func beginRec(id uint16, role Role, keep bool) []byte {
	flags := byte(0)
	if keep {
		flags = flagKeepConn
	}
	return rawRecord(typeBeginRequest, id, []byte{byte(role >> 8), byte(role), flags, 0, 0, 0, 0, 0}, 0)
}

// paramsRecs encodes pairs "NAME=value" as one PARAMS record plus the empty one.
func paramsRecs(id uint16, pairs ...string) []byte {
	var body []byte
	for _, p := range pairs {
		name, value, _ := strings.Cut(p, "=")
		body = appendPair(body, name, value)
	}
	out := []byte{}
	if len(body) > 0 {
		out = rawRecord(typeParams, id, body, 0)
	}
	return append(out, rawRecord(typeParams, id, nil, 0)...)
}

func streamRecs(t recType, id uint16, content string) []byte {
	var out []byte
	for len(content) > 0 {
		n := min(len(content), maxContent)
		out = append(out, rawRecord(t, id, []byte(content[:n]), paddingFor(n))...)
		content = content[n:]
	}
	return append(out, rawRecord(t, id, nil, 0)...)
}

// request is a complete RESPONDER request with a body.
func request(id uint16, keep bool, body string, params ...string) []byte {
	out := beginRec(id, RoleResponder, keep)
	out = append(out, paramsRecs(id, params...)...)
	return append(out, streamRecs(typeStdin, id, body)...)
}

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// testServer serves h on a unix socket in a temporary directory.
type testServer struct {
	srv    *Server
	path   string
	served chan error
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startServer(t testing.TB, h Handler, lim Limits) *testServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "fcgi")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	ts := &testServer{srv: &Server{Handler: h, Limits: lim, Logger: quietLogger()}, path: path, served: make(chan error, 1)}
	ts.srv.init() // tests look at the server's tables before Serve may have begun
	go func() { ts.served <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		_ = ts.srv.Close()
		select {
		case err := <-ts.served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return ts
}

type peer struct {
	t       testing.TB
	c       net.Conn
	rr      *recordReader
	results map[uint16]*peerResult
	mgmt    []readRecord
}

type peerResult struct {
	stdout, stderr []byte
	stdoutEnded    bool
	stderrEnded    bool
	ended          bool
	appStatus      uint32
	protoStatus    uint8
}

func (ts *testServer) dial(t testing.TB) *peer {
	t.Helper()
	c, err := net.Dial("unix", ts.path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, c: c, rr: newRecordReader(c), results: map[uint16]*peerResult{}}
}

func (p *peer) send(parts ...[]byte) {
	p.t.Helper()
	_ = p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := p.c.Write(join(parts...))
	require.NoError(p.t, err)
}

// next reads one record and files it; it returns the record's header.
func (p *peer) next() (recordHeader, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, content, err := p.rr.next()
	if err != nil {
		return h, err
	}
	if h.ID == 0 {
		p.mgmt = append(p.mgmt, readRecord{h, string(content)})
		return h, nil
	}
	r := p.results[h.ID]
	if r == nil {
		r = &peerResult{}
		p.results[h.ID] = r
	}
	if r.ended {
		p.t.Errorf("record %v for request %d after its END_REQUEST", h.Type, h.ID)
	}
	switch h.Type {
	case typeStdout:
		if r.stdoutEnded {
			p.t.Errorf("STDOUT for request %d after its end", h.ID)
		}
		if len(content) == 0 {
			r.stdoutEnded = true
		}
		r.stdout = append(r.stdout, content...)
	case typeStderr:
		if len(content) == 0 {
			r.stderrEnded = true
		}
		r.stderr = append(r.stderr, content...)
	case typeEndRequest:
		if len(content) != 8 {
			p.t.Errorf("END_REQUEST body of %d bytes", len(content))
			break
		}
		r.ended = true
		r.appStatus = uint32(content[0])<<24 | uint32(content[1])<<16 | uint32(content[2])<<8 | uint32(content[3])
		r.protoStatus = content[4]
	default:
		p.t.Errorf("server sent %v for request %d", h.Type, h.ID)
	}
	return h, nil
}

// result reads until request id has ended.
func (p *peer) result(id uint16) *peerResult {
	p.t.Helper()
	for {
		if r := p.results[id]; r != nil && r.ended {
			delete(p.results, id)
			return r
		}
		_, err := p.next()
		require.NoError(p.t, err, "reading the response of request %d", id)
	}
}

// mgmtRecord reads until a management record arrives.
func (p *peer) mgmtRecord() readRecord {
	p.t.Helper()
	for len(p.mgmt) == 0 {
		_, err := p.next()
		require.NoError(p.t, err)
	}
	r := p.mgmt[0]
	p.mgmt = p.mgmt[1:]
	return r
}

// expectClosed reads until EOF, failing on any record for an active request.
func (p *peer) expectClosed(within time.Duration) {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := p.rr.next()
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.t.Fatalf("connection still open after %v", within)
		}
		return
	}
}

// expectOpen checks that nothing arrives and the connection stays open.
func (p *peer) expectOpen(for_ time.Duration) {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(for_))
	h, _, err := p.rr.next()
	require.ErrorIs(p.t, err, os.ErrDeadlineExceeded, "got record %+v or close", h)
}

// splitCGI separates a CGI response into its header block and body.
func splitCGI(t testing.TB, stdout []byte) (map[string]string, string) {
	t.Helper()
	head, body, ok := strings.Cut(string(stdout), "\r\n\r\n")
	require.True(t, ok, "no complete header block in %q", stdout)
	h := map[string]string{}
	for i, line := range strings.Split(head, "\r\n") {
		k, v, ok := strings.Cut(line, ": ")
		require.True(t, ok, "bad header line %q", line)
		if i == 0 {
			require.Equal(t, "Status", k, "the first line is an explicit Status")
		}
		h[k] = v
	}
	return h, body
}

// echoHandler answers with the role, a few params and everything it read.
var echoHandler = HandlerFunc(func(w ResponseWriter, r *Request) {
	w.Header().Set("Content-Type", "text/x-echo")
	body, err := io.ReadAll(r.Stdin)
	data, derr := io.ReadAll(r.Data)
	w.Header().Set("X-Role", r.Role.String())
	w.Header().Set("X-Id", strconv.Itoa(int(r.ID)))
	if err != nil {
		w.Header().Set("X-Stdin-Err", err.Error())
	}
	if derr != nil {
		w.Header().Set("X-Data-Err", derr.Error())
	}
	w.Header().Set("X-Q", r.Params["Q"])
	_, _ = w.Write(body)
	_, _ = w.Write(data)
})

// goroutines counts the goroutines that are not waiting in a server's
// workers for the next handler: those are bounded per server (see workers),
// and a test that shares a server with others may have started some.
func goroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[chan receive") && strings.Contains(g, "fcgi.(*workers).work(") {
			continue
		}
		count++
	}
	return count
}

// leakCheck records goroutines and open descriptors and, at cleanup, waits for
// them to come back to where they were.
func leakCheck(t *testing.T) {
	t.Helper()
	g0 := goroutines()
	fd0 := openFDs()
	t.Cleanup(func() {
		var g, fd int
		settled := testenv.Poll(5*time.Second, func() bool {
			g, fd = goroutines(), openFDs()
			return g <= g0 && fd <= fd0
		})
		if !settled {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("leak: goroutines %d -> %d, fds %d -> %d\n%s", g0, g, fd0, fd, buf)
		}
	})
}

// waitFor fails the test unless cond holds within 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !testenv.Poll(10*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitInputFull waits until the server holds a full input buffer for request
// id on one of its connections: from then on its read loop waits for room.
func waitInputFull(t testing.TB, srv *Server, id uint16) {
	t.Helper()
	waitFor(t, "the request's input buffer to fill", func() bool {
		for _, c := range srv.connections() {
			var s *inputStream
			c.mu.Lock()
			if r := c.reqs[id]; r != nil {
				s = r.stdin // set under c.mu when PARAMS end
			}
			c.mu.Unlock()
			if s == nil {
				continue
			}
			s.mu.Lock()
			full := len(s.buf)-s.off >= s.limit
			s.mu.Unlock()
			if full {
				return true
			}
		}
		return false
	})
}

// waitGoroutine waits until some goroutine's stack shows fn, for a test that
// needs a call to be blocked before it acts.
func waitGoroutine(t testing.TB, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	waitFor(t, fn+" to block", func() bool {
		return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
	})
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// blockingHandler signals started and waits for its context or release.
type blockingHandler struct {
	started chan *Request
	release chan struct{}
	done    chan error // context cause when it returned
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{started: make(chan *Request, 16), release: make(chan struct{}), done: make(chan error, 16)}
}

func (b *blockingHandler) ServeFCGI(w ResponseWriter, r *Request) {
	b.started <- r
	select {
	case <-r.Context().Done():
		b.done <- context.Cause(r.Context())
	case <-b.release:
		_, _ = io.WriteString(w, "released")
		b.done <- nil
	}
}

func recvTimeout[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}
