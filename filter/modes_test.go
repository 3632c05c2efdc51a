package filter

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
)

// TestTransformBehaviour covers the well-behaved but demanding transforms.
func TestTransformBehaviour(t *testing.T) {
	req := &RequestInfo{URL: "http://example.org/a?b=c", Method: "POST", Path: "/a", Query: "b=c", Params: []Field{{Name: "REMOTE_ADDR", Value: "192.0.2.7"}}}
	tests := []struct {
		name       string
		mode       string
		in         func() *Message
		wantStatus int
		wantBody   string // prefix when wantPrefix
		wantPrefix bool
		wantRetire bool // the process is not reused afterwards
	}{
		{name: "echo-headers-sees-request-info", mode: testtransform.EchoHeaders, in: func() *Message { return textMessage("x") }, wantStatus: 200,
			wantBody: "HTTP/1.1 200 OK\nContent-Type: text/plain\nX-Request-URL: http://example.org/a?b=c\nX-Bridge-Method: POST\nX-Bridge-Path: /a\nX-Bridge-Query: b=c\nX-Bridge-Param-REMOTE_ADDR: 192.0.2.7\nContent-Length: 1\n"},
		{name: "status-404", mode: testtransform.Status, in: func() *Message {
			m := textMessage("gone")
			m.Header.Add(testtransform.StatusHeader, "404 Not Here")
			return m
		}, wantStatus: 404, wantBody: "gone"},
		{name: "status-204", mode: testtransform.Status, in: func() *Message {
			m := textMessage("dropped")
			m.Header.Add(testtransform.StatusHeader, "204 No Content")
			return m
		}, wantStatus: 204, wantBody: ""},
		{name: "conn-close-retires", mode: testtransform.ConnClose, in: func() *Message { return textMessage("until eof") }, wantStatus: 200, wantBody: "until eof", wantRetire: true},
		{name: "stderr-flood", mode: testtransform.StderrFlood, in: func() *Message { return textMessage(strings.Repeat("s", 100000)) }, wantStatus: 200, wantBody: strings.Repeat("s", 100000)},
		{name: "slow-reader", mode: testtransform.SlowReader, in: func() *Message { return textMessage(strings.Repeat("r", 300000)) }, wantStatus: 200, wantBody: strings.Repeat("r", 300000)},
		{name: "upper-chunked", mode: testtransform.Upper, in: func() *Message { return &Message{Status: 200, Length: -1, Body: body("abc", "def")} }, wantStatus: 200, wantBody: "ABCDEF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaks := startLeakCheck()
			p := newModePool(t, tt.mode)
			tr := NewPooled(tt.name, p, 10*time.Second)
			for range 3 { // three times: the process keeps serving (or is replaced)
				out, got, err := roundTrip(t, tr, tt.in(), req)
				require.NoError(t, err)
				require.Equal(t, tt.wantStatus, out.Status)
				require.Equal(t, tt.wantBody, got)
			}
			want := uint64(1)
			if tt.wantRetire {
				want = 3
			}
			require.Equal(t, want, p.Stats().Spawned)
			closePool(t, p)
			leaks.check(t)
		})
	}
}

// flaky fails its first Apply with a crash after reading part of the input,
// then echoes: Run must replay the whole input to the second attempt.
type flaky struct{ calls int }

func (f *flaky) Name() string { return "flaky" }

func (f *flaky) Apply(ctx context.Context, in *Message, req *RequestInfo) (*Message, error) {
	f.calls++
	if f.calls == 1 {
		buf := make([]byte, 3)
		io.ReadFull(in.Body, buf)
		in.Body.Close()
		return nil, newError("flaky", 42, Crash, errors.New("exit status 1"))
	}
	return in, nil
}

func TestRunPolicy(t *testing.T) {
	t.Run("retry-replays-whole-input", func(t *testing.T) {
		var logs logBuffer
		f := &flaky{}
		out, err := Run(context.Background(), f, textMessage("abcdef"), nil, Policy{Retry: true, KeepInput: 1 << 10, Logger: logs.logger()})
		require.NoError(t, err)
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		require.Equal(t, "abcdef", string(b))
		require.Equal(t, 2, f.calls)
		require.Contains(t, logs.String(), `action=retry`)
	})
	t.Run("no-retry-past-keep-limit", func(t *testing.T) {
		f := &flaky{}
		_, err := Run(context.Background(), f, textMessage("abcdef"), nil, Policy{Retry: true, FailOpen: true, KeepInput: 2, Logger: discardLogger()})
		var e *Error
		require.True(t, errors.As(err, &e))
		require.Equal(t, Crash, e.Kind)
		require.Equal(t, 1, f.calls, "3 bytes were read and only 2 kept: neither retry nor fail open")
	})
	t.Run("retry-on-real-crash-uses-a-fresh-process", func(t *testing.T) {
		leaks := startLeakCheck()
		var logs logBuffer
		p := newModePool(t, testtransform.CrashAfterRead, func(c *pool.Config) { c.Min = 1 })
		_, err := Run(context.Background(), NewPooled("crash", p, 0), textMessage("abc"), nil, Policy{Retry: true, KeepInput: 1 << 10, Logger: logs.logger()})
		var e *Error
		require.True(t, errors.As(err, &e))
		require.Equal(t, Crash, e.Kind)
		log := logs.String()
		require.Contains(t, log, "action=retry")
		require.Contains(t, log, `action="fail closed"`)
		require.GreaterOrEqual(t, p.Stats().Spawned, uint64(2))
		closePool(t, p)
		leaks.check(t)
	})
	t.Run("fail-open-on-crash", func(t *testing.T) {
		leaks := startLeakCheck()
		var logs logBuffer
		p := newModePool(t, testtransform.CrashAfterRead)
		in := textMessage(strings.Repeat("z", 100000))
		out, err := Run(context.Background(), NewPooled("crash", p, 0), in, nil, Policy{FailOpen: true, KeepInput: 1 << 20, Logger: logs.logger()})
		require.NoError(t, err)
		b, err := io.ReadAll(out.Body)
		require.NoError(t, err)
		out.Body.Close()
		require.Equal(t, strings.Repeat("z", 100000), string(b))
		require.Equal(t, int64(100000), out.Length)
		require.Contains(t, logs.String(), `action="fail open"`)
		require.Contains(t, logs.String(), "exiting with status 3", "the log line carries the stderr tail")
		closePool(t, p)
		leaks.check(t)
	})
	t.Run("bad-request-never-fails-open", func(t *testing.T) {
		p := newModePool(t, testtransform.Cat)
		m := textMessage("x")
		m.Header.Add("X-Evil", "a\r\nb")
		_, err := Run(context.Background(), NewPooled("cat", p, 0), m, nil, Policy{FailOpen: true, KeepInput: 1 << 10, Logger: discardLogger()})
		var e *Error
		require.True(t, errors.As(err, &e))
		require.Equal(t, BadRequest, e.Kind)
		_, body, err := roundTrip(t, NewPooled("cat", p, 0), textMessage("still fine"), nil)
		require.NoError(t, err)
		require.Equal(t, "still fine", body)
		require.Equal(t, uint64(1), p.Stats().Spawned, "nothing was written, so the process was kept")
	})
}
