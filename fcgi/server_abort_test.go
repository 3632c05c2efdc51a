package fcgi

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// abortingHandler writes a header block and body, flushes it, then aborts
// with a message that carries control characters. It reports what a write
// after Abort returned.
type abortingHandler struct {
	body      string
	flush     bool
	wait      chan struct{} // closed to let it abort; nil = at once
	afterErrs chan error
}

func (h *abortingHandler) ServeFCGI(w ResponseWriter, r *Request) {
	_, _ = io.Copy(io.Discard, r.Stdin)
	if r.Params["NORMAL"] != "" {
		_, _ = io.WriteString(w, "complete")
		return
	}
	_, _ = io.WriteString(w, h.body)
	if h.flush {
		_ = w.Flush()
	}
	if h.wait != nil {
		<-h.wait
	}
	w.(Aborter).Abort(errors.New("transform died\r\nforged: line\x1b[31m"))
	_, err := io.WriteString(w, "after")
	h.afterErrs <- err
}

// readUntilClosed files every record until the server's deliberately
// broken record (version 0), then expects EOF.
func readUntilClosed(t *testing.T, p *peer) {
	t.Helper()
	for {
		_, err := p.next()
		if err == nil {
			continue
		}
		var ve *versionError
		require.ErrorAs(t, err, &ve, "a version-0 record ends the aborted response")
		rest := p.rr.buffered()
		require.Equal(t, brokenRecord[:], rest[:headerLen], "the broken record is a zero header")
		require.Len(t, rest, headerLen, "nothing follows the broken record")
		p.rr.r += headerLen
		_ = p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		err = p.rr.fill(1)
		require.Equal(t, 0, len(p.rr.buffered()), "nothing follows the broken record")
		require.ErrorIs(t, err, io.EOF, "the connection is closed after the broken record")
		return
	}
}

const wantAbortLine = "fcgi: response 1 aborted: transform died??forged: line?[31m\n"

// Abort on a connection with one request (nginx, Apache, lighttpd): the
// sent output, one sanitized STDERR line, then the connection closes
// without the empty STDOUT and without END_REQUEST, so the web server sees a
// truncated response. Unsent output is dropped. Same with KEEP_CONN.
func TestAbortSoleRequestClosesWithoutEnd(t *testing.T) {
	for _, keep := range []bool{false, true} {
		h := &abortingHandler{body: strings.Repeat("b", 100<<10), flush: true, afterErrs: make(chan error, 1)}
		ts := startServer(t, h, Limits{})
		p := ts.dial(t)
		p.send(request(1, keep, "in"))
		readUntilClosed(t, p)
		res := p.results[1]
		require.NotNil(t, res)
		require.False(t, res.ended, "no END_REQUEST (keep=%v)", keep)
		require.False(t, res.stdoutEnded, "no empty STDOUT (keep=%v)", keep)
		_, body := splitCGI(t, res.stdout)
		require.Equal(t, 100<<10, len(body))
		require.Equal(t, wantAbortLine, string(res.stderr))
		require.ErrorIs(t, recvTimeout(t, h.afterErrs, "write after Abort"), ErrRequestEnded)

		// Unflushed output is not sent.
		h2 := &abortingHandler{body: "short", afterErrs: make(chan error, 1)}
		ts2 := startServer(t, h2, Limits{})
		p2 := ts2.dial(t)
		p2.send(request(1, keep, ""))
		readUntilClosed(t, p2)
		require.Empty(t, p2.results[1].stdout)
		require.False(t, p2.results[1].ended)
		require.Equal(t, wantAbortLine, string(p2.results[1].stderr))
	}
}

// Abort on a multiplexed connection (HAProxy): closing would kill the other
// requests, so the aborted one ends with its STDERR line, the stream ends and
// END_REQUEST{appStatus 1}; the other request completes normally and the
// connection stays open.
func TestAbortMultiplexedEndsWithAppStatus(t *testing.T) {
	h := &abortingHandler{body: "partial", flush: true, wait: make(chan struct{}), afterErrs: make(chan error, 1)}
	ts := startServer(t, h, Limits{})
	p := ts.dial(t)
	p.send(request(1, true, ""), request(3, true, "", "NORMAL=1"))
	res3 := p.result(3)
	_, body := splitCGI(t, res3.stdout)
	require.Equal(t, "complete", body)
	close(h.wait)
	res := p.result(1)
	require.Equal(t, uint32(1), res.appStatus)
	require.Equal(t, StatusRequestComplete, res.protoStatus)
	require.True(t, res.stdoutEnded)
	require.True(t, res.stderrEnded)
	require.Equal(t, wantAbortLine, string(res.stderr))
	_, body = splitCGI(t, res.stdout)
	require.Equal(t, "partial", body)
	require.ErrorIs(t, recvTimeout(t, h.afterErrs, "write after Abort"), ErrRequestEnded)
	p.expectOpen(50 * time.Millisecond)
	p.send(request(5, true, "", "NORMAL=1"))
	_, body = splitCGI(t, p.result(5).stdout)
	require.Equal(t, "complete", body)
}

// Abort after the peer sent ABORT_REQUEST: END_REQUEST only, as for any
// aborted request.
func TestAbortAfterPeerAbort(t *testing.T) {
	started := make(chan struct{})
	done := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.WriteString(w, "x")
		_ = w.Flush()
		close(started)
		<-r.Context().Done()
		w.(Aborter).Abort(errors.New("late"))
		close(done)
	}), Limits{})
	p := ts.dial(t)
	p.send(beginRec(1, RoleResponder, true), paramsRecs(1), streamRecs(typeStdin, 1, ""))
	recvTimeout(t, started, "handler start")
	p.send(rawRecord(typeAbortRequest, 1, nil, 0))
	res := p.result(1)
	recvTimeout(t, done, "handler end")
	require.Empty(t, res.stderr)
	p.expectOpen(50 * time.Millisecond)
}

// A handler that panics after its output began is aborted like Abort does:
// on an id-1 connection the peer sees the broken record and the close, never
// an END_REQUEST that would pass the partial body off as complete; on a
// multiplexed one END_REQUEST{appStatus 1} after the STDERR line.
func TestAbortOnPanicAfterOutput(t *testing.T) {
	panicky := HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Params["NORMAL"] != "" {
			_, _ = io.WriteString(w, "complete")
			return
		}
		_, _ = io.WriteString(w, "partial")
		if r.Params["FLUSH"] != "" {
			_ = w.Flush()
		}
		panic("boom")
	})
	ts := startServer(t, panicky, Limits{})
	for _, flush := range []string{"", "1"} {
		p := ts.dial(t)
		p.send(request(1, false, "", "FLUSH="+flush))
		readUntilClosed(t, p)
		res := p.results[1]
		require.False(t, res.ended)
		require.Equal(t, "fcgi: response 1 aborted: handler panicked\n", string(res.stderr))
		if flush == "" {
			require.Empty(t, res.stdout, "unsent output is dropped")
		} else {
			require.Contains(t, string(res.stdout), "partial")
		}
	}

	p := ts.dial(t)
	p.send(request(3, true, "", "FLUSH=1"))
	res := p.result(3)
	require.Equal(t, uint32(1), res.appStatus)
	require.True(t, res.stdoutEnded)
	require.Equal(t, "fcgi: response 3 aborted: handler panicked\n", string(res.stderr))
	p.send(request(5, true, "", "NORMAL=1"))
	_, body := splitCGI(t, p.result(5).stdout)
	require.Equal(t, "complete", body)
}

// Shutdown's deadline ends a stuck handler's response that had begun by
// aborting it, not with a normal END_REQUEST.
func TestAbortAtShutdownDeadlineAfterOutput(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	flushed := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.WriteString(w, "partial")
		_ = w.Flush()
		close(flushed)
		<-release
	}), Limits{})
	p := ts.dial(t)
	p.send(request(1, true, ""))
	recvTimeout(t, flushed, "first output")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, ts.srv.Shutdown(ctx), context.DeadlineExceeded)
	readUntilClosed(t, p)
	res := p.results[1]
	require.False(t, res.ended)
	require.Contains(t, string(res.stdout), "partial")
	require.Contains(t, string(res.stderr), "fcgi: response 1 aborted: fcgi: server closed")
}
