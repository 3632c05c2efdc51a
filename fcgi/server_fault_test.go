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

// Fault tests: each fault must close or fail only what it should while another
// connection keeps being served, and leave no goroutine or descriptor behind.

// faultHandler reports how each request ended and what its readers returned.
type faultHandler struct {
	started chan uint16
	ended   chan faultEnd
}

type faultEnd struct {
	id       uint16
	stdinErr error
	dataErr  error
	writeErr error
	cause    error
}

func newFaultHandler() *faultHandler {
	return &faultHandler{started: make(chan uint16, 16), ended: make(chan faultEnd, 16)}
}

// ServeFCGI reads Stdin and Data to their end, then, if OUT is set, writes
// until a write fails or its context ends; CONTROL requests just echo.
func (f *faultHandler) ServeFCGI(w ResponseWriter, r *Request) {
	if r.Params["CONTROL"] != "" {
		_, _ = io.Copy(w, r.Stdin)
		return
	}
	f.started <- r.ID
	e := faultEnd{id: r.ID}
	_, e.stdinErr = io.Copy(io.Discard, r.Stdin)
	_, e.dataErr = io.Copy(io.Discard, r.Data)
	if r.Params["OUT"] != "" {
		chunk := []byte(strings.Repeat("o", 8192))
		for {
			if _, err := w.Write(chunk); err != nil {
				e.writeErr = err
				break
			}
			if err := w.Flush(); err != nil {
				e.writeErr = err
				break
			}
		}
	}
	e.cause = context.Cause(r.Context())
	f.ended <- e
}

// controlServed checks that a fresh connection is served normally.
func controlServed(t *testing.T, ts *testServer) {
	t.Helper()
	c := ts.dial(t)
	c.send(request(1, false, "control", "CONTROL=1"))
	_, body := splitCGI(t, c.result(1).stdout)
	require.Equal(t, "control", body)
	c.expectClosed(2 * time.Second)
	_ = c.c.Close()
}

func TestFaultAbortAtEveryState(t *testing.T) {
	tests := []struct {
		name      string
		role      Role
		params    []string
		before    []byte // sent after BEGIN(+PARAMS) and before ABORT
		noParams  bool   // ABORT before PARAMS ended: no handler runs
		wantStdin error
		wantData  error
		wantWrite error
	}{
		{name: "before params end", noParams: true, before: rawRecord(typeParams, 1, appendPair(nil, "A", "b"), 0)},
		{name: "during stdin", role: RoleResponder, before: rawRecord(typeStdin, 1, []byte("part"), 0), wantStdin: ErrAborted},
		{name: "during data", role: RoleFilter, before: join(streamRecs(typeStdin, 1, "in"), rawRecord(typeData, 1, []byte("d"), 0)), wantData: ErrAborted},
		{name: "while writing output", role: RoleResponder, params: []string{"OUT=1"}, before: streamRecs(typeStdin, 1, ""), wantWrite: ErrAborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			fh := newFaultHandler()
			ts := startServer(t, fh, Limits{})
			p := ts.dial(t)
			if tt.noParams {
				p.send(beginRec(1, RoleResponder, true), tt.before, rawRecord(typeAbortRequest, 1, nil, 0))
				res := p.result(1)
				require.Equal(t, StatusRequestComplete, res.protoStatus)
				require.Empty(t, res.stdout)
			} else {
				p.send(beginRec(1, tt.role, true), paramsRecs(1, tt.params...), tt.before)
				require.Equal(t, uint16(1), recvTimeout(t, fh.started, "handler"))
				if tt.wantWrite != nil {
					// Let output flow, then abort while it still flows.
					for p.results[1] == nil || len(p.results[1].stdout) < 100_000 {
						_, err := p.next()
						require.NoError(t, err)
					}
				}
				p.send(rawRecord(typeAbortRequest, 1, nil, 0))
				// Keep reading, as a peer that aborts does: a handler blocked in a
				// write to a full socket only sees the abort once that write ends.
				require.Equal(t, StatusRequestComplete, p.result(1).protoStatus)
				e := recvTimeout(t, fh.ended, "handler end")
				require.ErrorIs(t, e.cause, ErrAborted)
				if tt.wantStdin != nil {
					require.ErrorIs(t, e.stdinErr, tt.wantStdin)
				}
				if tt.wantData != nil {
					require.ErrorIs(t, e.dataErr, tt.wantData)
				}
				if tt.wantWrite != nil {
					require.ErrorIs(t, e.writeErr, tt.wantWrite)
				}
			}
			// After the end: ABORT and input for the finished id are ignored,
			// and the connection goes on serving.
			p.send(rawRecord(typeAbortRequest, 1, nil, 0), streamRecs(typeStdin, 1, "late"))
			p.expectOpen(50 * time.Millisecond) // also: nothing after END_REQUEST
			p.send(request(1, false, "again", "CONTROL=1"))
			_, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, "again", body)
			controlServed(t, ts)
			p.expectClosed(2 * time.Second)
			_ = p.c.Close()
		})
	}
}

func TestFaultConnectionLossCancelsRequests(t *testing.T) {
	leakCheck(t)
	fh := newFaultHandler()
	ts := startServer(t, fh, Limits{})
	p := ts.dial(t)
	p.send(request(1, true, "", "OUT=1"), beginRec(3, RoleResponder, true), paramsRecs(3), rawRecord(typeStdin, 3, []byte("x"), 0))
	recvTimeout(t, fh.started, "handler")
	recvTimeout(t, fh.started, "handler")
	_ = p.c.Close()
	for range 2 {
		e := recvTimeout(t, fh.ended, "handler end")
		require.Error(t, e.cause, "request %d", e.id)
	}
	controlServed(t, ts)
}

func TestFaultMalformedKeepsOthersServed(t *testing.T) {
	v2 := request(1, true, "")
	v2[0] = 2
	tests := []struct {
		name   string
		stream []byte
		lim    Limits
		open   bool // the connection is expected to stay open afterwards
	}{
		{name: "version 2", stream: v2},
		{name: "BEGIN id 0", stream: beginRec(0, RoleResponder, true)},
		{name: "duplicate BEGIN", stream: join(beginRec(1, RoleResponder, true), beginRec(1, RoleResponder, true))},
		{name: "truncated record then close", stream: join(beginRec(1, RoleResponder, true), []byte{1, 4, 0, 1, 0, 50, 0, 0, 'a'})},
		{name: "oversized length, bytes never come", stream: []byte{1, 4, 0, 1, 0xff, 0xff, 0xff, 0}, lim: Limits{ParamsTimeout: 200 * time.Millisecond}},
		{name: "params never end", stream: join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, appendPair(nil, "A", "b"), 0)), lim: Limits{ParamsTimeout: 200 * time.Millisecond}},
		{name: "huge pair length", stream: join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			ts := startServer(t, newFaultHandler(), tt.lim)
			bystander := ts.dial(t)
			bystander.send(request(1, true, "before", "CONTROL=1"))
			bystander.result(1)
			p := ts.dial(t)
			p.send(tt.stream)
			if tt.name == "truncated record then close" {
				_ = p.c.Close()
			} else {
				p.expectClosed(3 * time.Second)
				_ = p.c.Close()
			}
			bystander.send(request(1, true, "after", "CONTROL=1"))
			_, body := splitCGI(t, bystander.result(1).stdout)
			require.Equal(t, "after", body)
			controlServed(t, ts)
			_ = bystander.c.Close()
		})
	}
}

func TestFaultMissingEndOfStream(t *testing.T) {
	tests := []struct {
		name string
		role Role
		sent []byte
		data bool
	}{
		{"no empty STDIN", RoleResponder, rawRecord(typeStdin, 1, []byte("abc"), 0), false},
		{"no STDIN at all", RoleResponder, nil, false},
		{"no empty DATA", RoleFilter, join(streamRecs(typeStdin, 1, "s"), rawRecord(typeData, 1, []byte("d"), 0)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			fh := newFaultHandler()
			ts := startServer(t, fh, Limits{InputIdleTimeout: 200 * time.Millisecond})
			p := ts.dial(t)
			p.send(beginRec(1, tt.role, true), paramsRecs(1), tt.sent)
			recvTimeout(t, fh.started, "handler")
			e := recvTimeout(t, fh.ended, "handler end")
			if tt.data {
				require.ErrorIs(t, e.dataErr, ErrInputTimeout)
			} else {
				require.ErrorIs(t, e.stdinErr, ErrInputTimeout)
			}
			require.NoError(t, e.cause, "the request itself is not cancelled")
			require.Equal(t, StatusRequestComplete, p.result(1).protoStatus)
			controlServed(t, ts)
			p.send(request(1, true, "still", "CONTROL=1"))
			_, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, "still", body)
			_ = p.c.Close()
		})
	}
}

// A handler that ignores its context is ended at Shutdown's deadline; Close
// then releases everything it can.
func TestFaultShutdownDeadlineWithStuckHandler(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) { close(started); <-release }), Limits{})
	p := ts.dial(t)
	p.send(request(1, true, ""))
	recvTimeout(t, started, "handler")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := ts.srv.Shutdown(ctx)
	require.True(t, errors.Is(err, context.DeadlineExceeded))
	h, _ := splitCGI(t, p.result(1).stdout)
	require.Equal(t, "503 Service Unavailable", h["Status"])
	p.expectClosed(2 * time.Second)
	close(release)
}

// While the read loop holds back input for a handler that does not read, a
// peer that goes away is still noticed and the request cancelled.
func TestFaultPeerGoneDuringFlowControl(t *testing.T) {
	leakCheck(t)
	causes := make(chan error, 1)
	started := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Params["CONTROL"] != "" {
			_, _ = io.Copy(w, r.Stdin)
			return
		}
		close(started)
		<-r.Context().Done() // never reads Stdin
		causes <- context.Cause(r.Context())
	}), Limits{InputBuffer: 4096})
	p := ts.dial(t)
	p.send(beginRec(1, RoleResponder, false), paramsRecs(1), rawRecord(typeStdin, 1, make([]byte, 20000), 0))
	<-started
	waitInputFull(t, ts.srv, 1) // the loop now waits for room
	_ = p.c.Close()
	require.ErrorIs(t, recvTimeout(t, causes, "cancellation"), ErrAborted)
	controlServed(t, ts)
}

// The same with more input queued behind the held record: an ABORT, or a close,
// that arrived after it is still seen while the handler does not read.
func TestFaultAbortOrCloseBehindHeldInput(t *testing.T) {
	for _, how := range []string{"abort", "close"} {
		t.Run(how, func(t *testing.T) {
			leakCheck(t)
			causes := make(chan error, 1)
			started := make(chan struct{})
			ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
				if r.Params["CONTROL"] != "" {
					_, _ = io.Copy(w, r.Stdin)
					return
				}
				close(started)
				<-r.Context().Done() // never reads Stdin
				causes <- context.Cause(r.Context())
			}), Limits{InputBuffer: 4096})
			p := ts.dial(t)
			p.send(beginRec(1, RoleResponder, true), paramsRecs(1), rawRecord(typeStdin, 1, make([]byte, 20000), 0),
				rawRecord(typeStdin, 1, make([]byte, 5000), 0), rawRecord(typeStdin, 1, make([]byte, 5000), 0))
			<-started
			waitInputFull(t, ts.srv, 1)
			if how == "abort" {
				p.send(rawRecord(typeAbortRequest, 1, nil, 0))
				require.ErrorIs(t, recvTimeout(t, causes, "cancellation"), ErrAborted)
				require.Equal(t, StatusRequestComplete, p.result(1).protoStatus)
				p.send(streamRecs(typeStdin, 1, "rest"), request(1, true, "next", "CONTROL=1"))
				_, body := splitCGI(t, p.result(1).stdout)
				require.Equal(t, "next", body)
			} else {
				_ = p.c.Close()
				require.ErrorIs(t, recvTimeout(t, causes, "cancellation"), ErrAborted)
			}
			controlServed(t, ts)
			_ = p.c.Close()
		})
	}
}
