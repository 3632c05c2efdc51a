package filter

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
)

// TestFailureTable runs every transform row of the design's failure table
// against the test transform: the caller's error (kind, status, pid,
// stderr), the log line, the process replaced, and nothing leaked.
func TestFailureTable(t *testing.T) {
	tests := []struct {
		name        string
		mode        string
		command     []string
		timeout     time.Duration
		policy      Policy
		wantKind    Kind
		afterOutput bool   // the error comes from reading the body
		wantErr     string // in Error()
		wantStderr  string // in StderrTail
		noProcess   bool   // no process was involved (pid 0)
	}{
		{name: "timeout", mode: testtransform.Hang, timeout: time.Second, wantKind: Timeout, wantErr: "no complete reply within 1s", wantStderr: "not answering"},
		{name: "timeout-ignoring-sigterm", mode: testtransform.IgnoreTerm, timeout: 300 * time.Millisecond, wantKind: Timeout, wantErr: "killed"},
		{name: "policy-timeout", mode: testtransform.Hang, policy: Policy{Timeout: time.Second}, wantKind: Timeout, wantErr: "deadline"},
		{name: "crash-before-output", mode: testtransform.CrashAfterRead, wantKind: Crash, wantErr: "exit status 3", wantStderr: "exiting with status 3"},
		{name: "protocol-before-output", mode: testtransform.Garbage, wantKind: Protocol, wantErr: `reply line 1: expected a status line`},
		{name: "crash-after-output", mode: testtransform.CrashMidReply, wantKind: Crash, afterOutput: true, wantErr: "more body bytes", wantStderr: "exiting with status 4"},
		{name: "timeout-after-output", mode: testtransform.HangMidReply, timeout: 300 * time.Millisecond, wantKind: Timeout, afterOutput: true},
		{name: "start-failure", command: []string{"/nonexistent/transform"}, wantKind: Start, wantErr: "/nonexistent/transform", noProcess: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaks := startLeakCheck()
			cfg := pool.Config{Name: tt.name, Command: testtransform.Command(), Env: []string{testtransform.Env(tt.mode)}, Min: 1}
			if tt.command != nil {
				cfg.Command, cfg.Min = tt.command, 0
			}
			var logs logBuffer
			p := newPool(t, cfg)
			tr := NewPooled(tt.name, p, tt.timeout)
			policy := tt.policy
			policy.Logger = logs.logger()

			start := time.Now()
			out, err := Run(context.Background(), tr, textMessage(strings.Repeat("x", 1000)), &RequestInfo{URL: "http://x/"}, policy)
			if tt.afterOutput {
				require.NoError(t, err, "the reply head arrived, so the output began")
				_, err = io.ReadAll(out.Body)
				out.Body.Close()
			}
			var e *Error
			require.True(t, errors.As(err, &e), "want *Error, got %T %v", err, err)
			require.Equal(t, tt.wantKind, e.Kind, "%v", e)
			require.Equal(t, tt.wantKind.Status(), e.Status)
			require.Equal(t, tt.name, e.Transform)
			require.Contains(t, e.Error(), tt.wantErr)
			if tt.wantStderr != "" {
				require.Contains(t, strings.Join(e.StderrTail, "\n"), tt.wantStderr)
			}
			if tt.timeout > 0 || tt.policy.Timeout > 0 {
				require.Less(t, time.Since(start), 5*time.Second, "the timeout ends the exchange")
			}
			if tt.noProcess {
				require.Zero(t, e.Pid)
			} else {
				require.NotZero(t, e.Pid)
				// The failed process is gone and another took its place.
				require.Eventually(t, func() bool {
					return syscall.Kill(e.Pid, 0) == syscall.ESRCH && p.Stats().Spawned >= 2
				}, 5*time.Second, 10*time.Millisecond, "process %d replaced", e.Pid)
			}
			if !tt.afterOutput {
				log := logs.String()
				require.Contains(t, log, `msg="transform failed"`)
				require.Contains(t, log, "kind="+tt.wantKind.String())
				require.Contains(t, log, `action="fail closed"`)
			}
			closePool(t, p)
			leaks.check(t)
		})
	}
}

// TestSaturated holds the only process and checks that the next caller
// gets 503 once the queue wait times out.
func TestSaturated(t *testing.T) {
	leaks := startLeakCheck()
	p := newModePool(t, testtransform.Cat, func(c *pool.Config) { c.Max, c.QueueSize, c.QueueTimeout = 1, 1, 100*time.Millisecond })
	tr := NewPooled("cat", p, 0)
	held, err := tr.Apply(context.Background(), textMessage("held"), nil)
	require.NoError(t, err)

	var logs logBuffer
	_, err = Run(context.Background(), tr, textMessage("waits"), nil, Policy{Logger: logs.logger()})
	var e *Error
	require.True(t, errors.As(err, &e), "%v", err)
	require.Equal(t, Saturated, e.Kind)
	require.Equal(t, 503, e.Status)
	require.Contains(t, logs.String(), "kind=saturated")

	// Fail open serves the input instead.
	out, err := Run(context.Background(), tr, textMessage("plain"), nil, Policy{FailOpen: true, Logger: logs.logger()})
	require.NoError(t, err)
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	require.Equal(t, "plain", string(b))
	require.Contains(t, logs.String(), `action="fail open"`)

	b, err = io.ReadAll(held.Body)
	require.NoError(t, err)
	require.Equal(t, "held", string(b))
	held.Body.Close()
	closePool(t, p)
	leaks.check(t)
}

// TestCanceled aborts an exchange from the caller's side, as when the web
// server aborts the request: the work stops at once and nothing leaks.
func TestCanceled(t *testing.T) {
	for _, during := range []string{"head", "body"} {
		t.Run(during, func(t *testing.T) {
			leaks := startLeakCheck()
			mode := testtransform.Hang
			if during == "body" {
				mode = testtransform.HangMidReply
			}
			p := newModePool(t, mode, func(c *pool.Config) { c.Min = 1 })
			tr := NewPooled("t", p, 0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if during == "head" {
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			out, err := tr.Apply(ctx, textMessage("abc"), nil)
			if during == "body" {
				require.NoError(t, err)
				time.AfterFunc(100*time.Millisecond, cancel)
				_, err = io.ReadAll(out.Body)
				out.Body.Close()
			}
			var e *Error
			require.True(t, errors.As(err, &e), "%v", err)
			require.Equal(t, Canceled, e.Kind)
			require.Eventually(t, func() bool { return syscall.Kill(e.Pid, 0) == syscall.ESRCH }, 5*time.Second, 10*time.Millisecond)
			closePool(t, p)
			leaks.check(t)
		})
	}
}

// TestCloseEarly closes the body before its end: the process cannot be
// reused (its reply is still in the pipe) and is replaced.
func TestCloseEarly(t *testing.T) {
	leaks := startLeakCheck()
	p := newModePool(t, testtransform.Cat)
	tr := NewPooled("cat", p, 0)
	out, err := tr.Apply(context.Background(), textMessage(strings.Repeat("y", 1<<20)), nil)
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = io.ReadFull(out.Body, buf)
	require.NoError(t, err)
	require.NoError(t, out.Body.Close())
	_, err = out.Body.Read(buf)
	require.Error(t, err)
	_, body, err := roundTrip(t, tr, textMessage("next"), nil)
	require.NoError(t, err)
	require.Equal(t, "next", body)
	require.Equal(t, uint64(2), p.Stats().Spawned, "the abandoned process was replaced")
	closePool(t, p)
	leaks.check(t)
}

// A transform that cannot start is described once: the pool's message
// quotes the stderr lines that name the cause, and the transform's error
// does not quote them again.
func TestStartErrorQuotesCauseOnce(t *testing.T) {
	se := &pool.StartError{Pool: "render", Path: "/usr/bin/node", Err: errors.New("exited right after start"),
		Stderr: []string{"Error: Cannot find module '/srv/render.js'", "  at x", "  at y", "  at z", "Node.js v20.20.2"}}
	e := (&pooled{name: "render"}).acquireError(context.Background(), se)
	require.Equal(t, Start, e.Kind)
	msg := e.Error()
	require.Equal(t, 1, strings.Count(msg, "Cannot find module"), msg)
	require.NotContains(t, msg, "its stderr ended with", msg)
}
