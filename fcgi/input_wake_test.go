package fcgi

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A handler reading a stream the web server stopped feeding is woken by its
// request's cancellation (here HandlerTimeout), not only by
// InputIdleTimeout or the connection's end.
func TestStdinReadWakesOnHandlerTimeout(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{HandlerTimeout: 100 * time.Millisecond, InputIdleTimeout: time.Minute})
	for _, role := range []Role{RoleResponder, RoleFilter} {
		t.Run(role.String(), func(t *testing.T) {
			p := ts.dial(t)
			p.send(beginRec(1, role, true), paramsRecs(1))
			if role == RoleFilter {
				p.send(streamRecs(typeStdin, 1, ""), rawRecord(typeData, 1, []byte("part"), 0))
			} else {
				p.send(rawRecord(typeStdin, 1, []byte("part"), 0))
			}
			h, _ := splitCGI(t, p.result(1).stdout)
			header := "X-Stdin-Err"
			if role == RoleFilter {
				header = "X-Data-Err"
			}
			require.Equal(t, ErrHandlerTimeout.Error(), h[header])
		})
	}
}

// Close on Stdin or Data stops a Read blocked on another goroutine, the way an
// aborted transform exchange stops the goroutine copying the input into it.
func TestInputCloseWakesBlockedRead(t *testing.T) {
	for _, role := range []Role{RoleResponder, RoleFilter} {
		t.Run(role.String(), func(t *testing.T) {
			readErr := make(chan error, 1)
			ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
				in := r.Stdin
				if role == RoleFilter {
					in = r.Data
				}
				go func() {
					_, err := io.Copy(io.Discard, in)
					readErr <- err
				}()
				waitGoroutine(t, "(*inputStream).Read")
				require.NoError(t, in.(io.Closer).Close())
				err := recvTimeout(t, readErr, "blocked Read")
				w.Header().Set("X-Err", err.Error())
				_, err = in.Read(make([]byte, 1))
				w.Header().Set("X-Again", err.Error())
			}), Limits{InputIdleTimeout: time.Minute})
			p := ts.dial(t)
			p.send(beginRec(1, role, true), paramsRecs(1))
			if role == RoleFilter {
				p.send(streamRecs(typeStdin, 1, ""))
			}
			h, _ := splitCGI(t, p.result(1).stdout)
			require.Equal(t, ErrInputClosed.Error(), h["X-Err"])
			require.Equal(t, ErrInputClosed.Error(), h["X-Again"])
			// The rest of the stream is discarded and the connection serves on.
			if role == RoleFilter {
				p.send(streamRecs(typeData, 1, "late"))
			} else {
				p.send(streamRecs(typeStdin, 1, "late"))
			}
			ts.srv.Handler = echoHandler
			p.send(request(1, true, "next"))
			_, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, "next", body)
		})
	}
}

// Shutdown's deadline ending requests whose PARAMS are still arriving races
// with the read loop finishing them; run under -race this checks that the
// two never touch the same fields unguarded, and every request still gets
// its END_REQUEST.
func TestShutdownDeadlineDuringParams(t *testing.T) {
	for i := range 20 {
		ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
			_, _ = io.Copy(io.Discard, r.Stdin)
			<-r.Context().Done()
		}), Limits{})
		var peers []*peer
		for range 4 {
			p := ts.dial(t)
			p.send(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, appendPair(nil, "A", "b"), 0))
			peers = append(peers, p)
		}
		waitFor(t, "the requests to begin", func() bool {
			begun := 0
			for _, c := range ts.srv.connections() {
				begun += c.activeCount()
			}
			return begun == len(peers)
		})
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Go(func() {
				// The timing under test: the end of PARAMS lands at a
				// different moment of Shutdown in each round.
				time.Sleep(time.Duration(i%5) * 100 * time.Microsecond)
				_, _ = p.c.Write(join(rawRecord(typeParams, 1, nil, 0), streamRecs(typeStdin, 1, "x")))
			})
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := ts.srv.Shutdown(ctx)
		require.True(t, err == nil || errors.Is(err, context.Canceled), "Shutdown: %v", err)
		wg.Wait()
		for _, p := range peers {
			require.Equal(t, StatusRequestComplete, p.result(1).protoStatus)
			_ = p.c.Close()
		}
	}
}
