package fcgi

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// During Shutdown, a request that arrives on an open connection is answered
// (the web server sent it before it could see the connection close), and the
// connection closes right after the response that leaves it idle.
func TestShutdownServesRequestsOnOpenConnections(t *testing.T) {
	t.Run("request sent on a kept connection after Shutdown began", func(t *testing.T) {
		release := make(chan struct{})
		started := make(chan struct{})
		ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
			if r.ID == 1 {
				close(started)
				<-release
			}
			echoHandler(w, r)
		}), Limits{})
		p := ts.dial(t)
		p.send(request(1, true, "first"))
		recvTimeout(t, started, "handler 1")
		done := make(chan error, 1)
		go func() { done <- ts.srv.Shutdown(context.Background()) }()
		waitFor(t, "Shutdown to begin", ts.srv.inShutdown.Load)

		p.send(request(3, true, "late"))
		res := p.result(3)
		require.Equal(t, StatusRequestComplete, res.protoStatus, "served, not refused as overloaded")
		_, body := splitCGI(t, res.stdout)
		require.Equal(t, "late", body)

		close(release)
		_, body = splitCGI(t, p.result(1).stdout)
		require.Equal(t, "first", body)
		p.expectClosed(2 * time.Second)
		_ = p.c.Close() // as a web server does on EOF, which ends the drain
		require.NoError(t, recvTimeout(t, done, "Shutdown"))
		require.ErrorIs(t, recvTimeout(t, ts.served, "Serve"), ErrServerClosed)
		ts.served <- ErrServerClosed // for the cleanup
	})
	t.Run("request already sent on an idle kept connection", func(t *testing.T) {
		ts := startServer(t, echoHandler, Limits{})
		p := ts.dial(t)
		p.send(request(1, true, "kept"))
		p.result(1)
		p.send(request(1, true, "just sent"))
		done := make(chan error, 1)
		go func() { done <- ts.srv.Shutdown(context.Background()) }()
		res := p.result(1)
		require.Equal(t, StatusRequestComplete, res.protoStatus)
		_, body := splitCGI(t, res.stdout)
		require.Equal(t, "just sent", body)
		p.expectClosed(2 * time.Second)
		_ = p.c.Close()
		require.NoError(t, recvTimeout(t, done, "Shutdown"))
	})
}
