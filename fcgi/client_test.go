package fcgi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func startFake(t *testing.T, a *fakeApp) *Client {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "app.sock"))
	require.NoError(t, err)
	a.serve(t, l)
	c := &Client{Network: "unix", Address: l.Addr().String()}
	t.Cleanup(func() { c.Close() })
	return c
}

// fakeEchoHandler answers with the params it got (in order) and the body.
func fakeEchoHandler(r *fakeReq, w *fakeOut) {
	var b strings.Builder
	b.WriteString("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
	fmt.Fprintf(&b, "role=%v id=%d keep=%v\n", r.role, r.id, r.keep)
	for _, p := range r.params {
		fmt.Fprintf(&b, "%s=%s\n", p.Name, p.Value)
	}
	body, _ := io.ReadAll(r.stdin)
	fmt.Fprintf(&b, "stdin=%s\n", body)
	if r.role == RoleFilter {
		data, _ := io.ReadAll(r.data)
		fmt.Fprintf(&b, "data=%s\n", data)
	}
	w.stdout([]byte(b.String()))
}

func clientDoString(t *testing.T, c *Client, req *ClientRequest) (string, *Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, req)
	require.NoError(t, err)
	out, err := io.ReadAll(resp.Stdout)
	require.NoError(t, err)
	require.NoError(t, resp.Stdout.Close())
	return string(out), resp
}

func TestClientRoles(t *testing.T) {
	tests := []struct {
		name string
		req  ClientRequest
		want []string
	}{
		{name: "responder, params in order, inline body",
			req:  ClientRequest{Params: []Pair{{"B", "2"}, {"A", "1"}, {"EMPTY", ""}}, Stdin: strings.NewReader("hello")},
			want: []string{"role=RESPONDER id=1 keep=false", "B=2\nA=1\nEMPTY=\n", "stdin=hello\n"}},
		{name: "responder, streamed body",
			req:  ClientRequest{Stdin: io.MultiReader(strings.NewReader("str"), strings.NewReader("eamed"))},
			want: []string{"stdin=streamed\n"}},
		{name: "authorizer without body", req: ClientRequest{Role: RoleAuthorizer},
			want: []string{"role=AUTHORIZER", "stdin=\n"}},
		{name: "filter with data inline",
			req:  ClientRequest{Role: RoleFilter, Stdin: strings.NewReader("in"), Data: bytes.NewReader([]byte("file"))},
			want: []string{"role=FILTER", "stdin=in\n", "data=file\n"}},
		{name: "filter with data streamed",
			req:  ClientRequest{Role: RoleFilter, Data: io.LimitReader(strings.NewReader("streamed-data"), 100)},
			want: []string{"stdin=\n", "data=streamed-data\n"}},
		{name: "long param straddles records",
			req:  ClientRequest{Params: []Pair{{"X", "y"}, {"LONG", strings.Repeat("v", 70000)}, {"Z", "z"}}},
			want: []string{"X=y\nLONG=" + strings.Repeat("v", 70000) + "\nZ=z\n"}},
		{name: "many params over several records",
			req:  ClientRequest{Params: clientManyParams(3000)},
			want: []string{"P0=value-0\n", "P2999=value-2999\n"}},
	}
	c := startFake(t, &fakeApp{handler: fakeEchoHandler})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, resp := clientDoString(t, c, &tc.req)
			for _, w := range tc.want {
				require.Contains(t, out, w)
			}
			require.Equal(t, uint8(StatusRequestComplete), resp.ProtocolStatus)
		})
	}
}

func clientManyParams(n int) []Pair {
	ps := make([]Pair, n)
	for i := range ps {
		ps[i] = Pair{fmt.Sprintf("P%d", i), fmt.Sprintf("value-%d", i) + strings.Repeat("x", 20)}
		ps[i].Value = fmt.Sprintf("value-%d", i)
	}
	return ps
}

func TestClientDataOnlyForFilter(t *testing.T) {
	c := &Client{Network: "unix", Address: "/nonexistent"}
	_, err := c.Do(context.Background(), &ClientRequest{Data: strings.NewReader("x")})
	require.ErrorContains(t, err, "only sent in the FILTER role")
}

// 10 MB up while 10 MB come back: the body writer and the response reader
// must run at the same time or both sides block on full socket buffers.
func TestClientFullDuplexLargeBodies(t *testing.T) {
	c := startFake(t, &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		w.stdout([]byte("Status: 200 OK\r\n\r\n"))
		buf := make([]byte, 16<<10)
		for {
			n, err := r.stdin.Read(buf)
			if n > 0 {
				if w.stdout(bytes.ToUpper(buf[:n])) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}})
	const size = 10 << 20
	body := bytes.Repeat([]byte("abcdefghij"), size/10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A reader without Len, so the body is streamed.
	resp, err := c.Do(ctx, &ClientRequest{Stdin: io.MultiReader(bytes.NewReader(body))})
	require.NoError(t, err)
	cgi, err := ReadCGIResponse(resp.Stdout)
	require.NoError(t, err)
	h := sha256.New()
	n, err := io.Copy(h, cgi.Body)
	require.NoError(t, err)
	require.Equal(t, int64(size), n)
	require.Equal(t, sha256.Sum256(bytes.ToUpper(body)), [32]byte(h.Sum(nil)))
}

func TestClientStderrBounded(t *testing.T) {
	c := startFake(t, &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		w.stderr([]byte(strings.Repeat("e", 1000)))
		w.stdout([]byte("Status: 200 OK\r\n\r\nok"))
	}})
	c.StderrLimit = 100
	var stderr bytes.Buffer
	out, _ := clientDoString(t, c, &ClientRequest{Stderr: &stderr})
	require.Contains(t, out, "ok")
	require.Equal(t, strings.Repeat("e", 100), stderr.String())
}

func TestClientProtocolStatusErrors(t *testing.T) {
	for _, tc := range []struct {
		status uint8
		want   error
	}{
		{StatusOverloaded, ErrOverloaded},
		{StatusCantMpxConn, ErrCantMpxConn},
		{StatusUnknownRole, ErrUnknownRole},
	} {
		t.Run(tc.want.Error(), func(t *testing.T) {
			c := startFake(t, &fakeApp{handler: func(r *fakeReq, w *fakeOut) { endWith(r, tc.status) }})
			_, err := c.Do(context.Background(), &ClientRequest{})
			require.ErrorIs(t, err, tc.want)
			var e *EndRequestError
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.status, e.ProtocolStatus)
		})
	}
}

func TestClientKeepConnReuse(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler}
	c := startFake(t, app)
	c.KeepConn = true
	for i := 0; i < 20; i++ {
		out, _ := clientDoString(t, c, &ClientRequest{Stdin: strings.NewReader(fmt.Sprint(i))})
		require.Contains(t, out, "keep=true")
		require.Contains(t, out, fmt.Sprintf("stdin=%d\n", i))
	}
	require.EqualValues(t, 1, app.accepted.Load())
}

func TestClientNoKeepConnDialsEachTime(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler}
	c := startFake(t, app)
	for i := 0; i < 5; i++ {
		out, _ := clientDoString(t, c, &ClientRequest{})
		require.Contains(t, out, "keep=false")
	}
	require.EqualValues(t, 5, app.accepted.Load())
}

// An application that closes kept connections (php-fpm recycling a worker)
// must not fail the next request: nothing of it was sent.
func TestClientRetriesStaleConnection(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler, closeAfterEach: true}
	c := startFake(t, app)
	c.KeepConn = true
	for i := 0; i < 5; i++ {
		out, _ := clientDoString(t, c, &ClientRequest{})
		require.Contains(t, out, "stdin=")
		// The client noticed the close: the next request dials.
		waitFor(t, "the client to drop the closed connection", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.open == 0
		})
	}
	require.EqualValues(t, 5, app.accepted.Load())
}

// The race the retry exists for: the connection is dead but the client has
// not noticed yet when it sends.
func TestClientRetryOnWriteToDeadConn(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler}
	c := startFake(t, app)
	c.KeepConn = true
	clientDoString(t, c, &ClientRequest{})
	c.mu.Lock()
	require.Len(t, c.idle, 1)
	cc := c.idle[0]
	c.mu.Unlock()
	// Break the socket under the pooled connection without telling it.
	cc.wlock = make(chan struct{}, 1)
	cc.wlock <- struct{}{}
	cc.nc.(*net.UnixConn).CloseWrite()
	_ = cc.nc.SetWriteDeadline(time.Now().Add(-time.Second))
	out, _ := clientDoString(t, c, &ClientRequest{})
	require.Contains(t, out, "role=RESPONDER")
	require.EqualValues(t, 2, app.accepted.Load())
}

func TestClientMultiplex(t *testing.T) {
	release := make(chan struct{})
	app := &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		<-release
		fakeEchoHandler(r, w)
	}}
	c := startFake(t, app)
	c.Multiplex = true
	c.MaxReqsPerConn = 8
	const n = 20
	var wg sync.WaitGroup
	outs := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Do(context.Background(), &ClientRequest{Params: []Pair{{"N", fmt.Sprint(i)}}})
			if err != nil {
				errs[i] = err
				return
			}
			b, err := io.ReadAll(resp.Stdout)
			outs[i], errs[i] = string(b), err
		}()
	}
	// Let every request arrive before any is answered.
	require.Eventually(t, func() bool { return app.maxActive.Load() == 8 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	for i := 0; i < n; i++ {
		require.NoError(t, errs[i])
		require.Contains(t, outs[i], fmt.Sprintf("N=%d\n", i))
	}
	require.LessOrEqual(t, app.accepted.Load(), int32(3), "20 requests at 8 per connection")
	require.EqualValues(t, 8, app.maxActive.Load())
}

func TestClientAbortOnEarlyClose(t *testing.T) {
	stopped := make(chan struct{}, 1)
	app := &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		if r.param("ENDLESS") == "" {
			fakeEchoHandler(r, w)
			return
		}
		w.stdout([]byte("Status: 200 OK\r\n\r\n"))
		for r.ctx.Err() == nil {
			if w.stdout(bytes.Repeat([]byte("x"), 4096)) != nil {
				break
			}
		}
		stopped <- struct{}{}
	}}
	c := startFake(t, app)
	c.KeepConn = true
	resp, err := c.Do(context.Background(), &ClientRequest{Params: []Pair{{"ENDLESS", "1"}}})
	require.NoError(t, err)
	_, err = io.ReadFull(resp.Stdout, make([]byte, 10000))
	require.NoError(t, err)
	require.NoError(t, resp.Stdout.Close())
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the application did not see the abort")
	}
	require.EqualValues(t, 1, app.aborts.Load())
	// The connection is reused once the aborted request has ended.
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.idle) == 1
	}, 5*time.Second, time.Millisecond)
	out, _ := clientDoString(t, c, &ClientRequest{})
	require.Contains(t, out, "keep=true")
	require.EqualValues(t, 1, app.accepted.Load())
}

func TestClientContextCancel(t *testing.T) {
	app := &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		w.stdout([]byte("Status: 200 OK\r\n\r\nfirst"))
		<-r.ctx.Done()
	}}
	c := startFake(t, app)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.Do(ctx, &ClientRequest{})
	require.NoError(t, err)
	buf := make([]byte, 100)
	n, err := resp.Stdout.Read(buf)
	require.NoError(t, err)
	require.Contains(t, string(buf[:n]), "first")
	cancel()
	_, err = resp.Stdout.Read(buf)
	require.ErrorIs(t, err, context.Canceled)
	require.Eventually(t, func() bool { return app.aborts.Load() == 1 }, 5*time.Second, time.Millisecond)
	resp.Stdout.Close()
}

func TestClientContextCancelBeforeReply(t *testing.T) {
	app := &fakeApp{handler: func(r *fakeReq, w *fakeOut) { <-r.ctx.Done() }}
	c := startFake(t, app)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, &ClientRequest{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return app.aborts.Load() == 1 }, 5*time.Second, time.Millisecond)
}

// An application that ignores ABORT costs the connection, after AbortTimeout.
func TestClientAbortTimeoutDropsConnection(t *testing.T) {
	hold := make(chan struct{})
	app := &fakeApp{ignoreAbort: true, handler: func(r *fakeReq, w *fakeOut) {
		w.stdout([]byte("Status: 200 OK\r\n\r\n"))
		<-hold // deaf to the abort
	}}
	c := startFake(t, app)
	t.Cleanup(func() { close(hold) })
	c.KeepConn = true
	c.AbortTimeout = 100 * time.Millisecond
	resp, err := c.Do(context.Background(), &ClientRequest{})
	require.NoError(t, err)
	require.NoError(t, resp.Stdout.Close())
	st := resp.Stdout.(*clientStream)
	require.Eventually(t, func() bool { return st.cc.closedErr() != nil }, 5*time.Second, time.Millisecond)
	require.ErrorContains(t, st.cc.closedErr(), "not ended")
}

func TestClientBodyReadErrorAborts(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler}
	c := startFake(t, app)
	boom := errors.New("disk on fire")
	resp, err := c.Do(context.Background(), &ClientRequest{Stdin: io.MultiReader(strings.NewReader("part"), clientErrReader{boom})})
	if err == nil {
		_, err = io.ReadAll(resp.Stdout)
	}
	require.ErrorIs(t, err, boom)
	require.Eventually(t, func() bool { return app.aborts.Load() == 1 }, 5*time.Second, time.Millisecond)
}

type clientErrReader struct{ err error }

func (r clientErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestClientGetValues(t *testing.T) {
	app := &fakeApp{values: map[string]string{ValueMaxConns: "10", ValueMaxReqs: "50", ValueMpxsConns: "1"}, handler: fakeEchoHandler}
	c := startFake(t, app)
	c.KeepConn = true
	vals, err := c.GetValues(context.Background(), ValueMaxConns, ValueMpxsConns, "UNKNOWN")
	require.NoError(t, err)
	require.Equal(t, map[string]string{ValueMaxConns: "10", ValueMpxsConns: "1"}, vals)
	// The connection serves a request afterwards.
	clientDoString(t, c, &ClientRequest{})
	require.EqualValues(t, 1, app.accepted.Load())
}

func TestClientConnectionLost(t *testing.T) {
	app := &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		w.stdout([]byte("Status: 200 OK\r\n\r\npartial"))
		w.c.nc.Close()
	}}
	c := startFake(t, app)
	resp, err := c.Do(context.Background(), &ClientRequest{})
	require.NoError(t, err)
	out, err := io.ReadAll(resp.Stdout)
	require.ErrorContains(t, err, "lost before the request ended")
	require.Contains(t, string(out), "partial")
}

func TestClientDialError(t *testing.T) {
	c := &Client{Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock")}
	_, err := c.Do(context.Background(), &ClientRequest{})
	require.ErrorContains(t, err, "connect to unix")
	require.NoError(t, c.Close())
	_, err = c.Do(context.Background(), &ClientRequest{})
	require.ErrorIs(t, err, ErrClientClosed)
}

func TestClientIdleTimeout(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler}
	c := startFake(t, app)
	c.KeepConn = true
	c.IdleTimeout = 50 * time.Millisecond
	clientDoString(t, c, &ClientRequest{})
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.idle) == 0
	}, 5*time.Second, 5*time.Millisecond)
	clientDoString(t, c, &ClientRequest{})
	require.EqualValues(t, 2, app.accepted.Load())
}

// FuzzClientResponse feeds arbitrary bytes as the application's reply: the
// client must neither panic nor hang, and must end with an error or EOF.
func FuzzClientResponse(f *testing.F) {
	rec := func(t recType, id uint16, content string) []byte {
		return appendRecord(nil, t, id, []byte(content))
	}
	end := appendEndRequest(nil, 1, 0, 0)
	f.Add(append(append(rec(typeStdout, 1, "Status: 200 OK\r\n\r\nhi"), rec(typeStdout, 1, "")...), end...))
	f.Add(append(rec(typeStderr, 1, "warn"), appendEndRequest(nil, 1, 3, StatusOverloaded)...))
	f.Add(append(rec(typeStdout, 2, "other id"), end...))
	f.Add(rec(typeGetValuesResult, 0, "\x0e\x01FCGI_MAX_CONNS1"))
	f.Add([]byte{1, 6, 0, 1, 0xff, 0xff, 0, 0, 'x'})
	f.Add([]byte{2, 6, 0, 1, 0, 1, 0, 0, 'x'})
	f.Add(rec(typeEndRequest, 1, "abc"))
	f.Add(rec(typeBeginRequest, 1, "\x00\x01\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, reply []byte) {
		c := &Client{KeepConn: true, AbortTimeout: 50 * time.Millisecond, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				go io.Copy(io.Discard, server)
				server.Write(reply)
				server.Close()
			}()
			return client, nil
		}}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.Do(ctx, &ClientRequest{Params: []Pair{{"A", "b"}}, Stdin: strings.NewReader("body")})
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("Do hung until the deadline")
			}
			return
		}
		_, err = io.Copy(io.Discard, resp.Stdout)
		if ctx.Err() != nil {
			t.Fatalf("reading the response hung until the deadline")
		}
		if err == nil && resp.ProtocolStatus != StatusRequestComplete {
			t.Fatalf("EOF with protocol status %d", resp.ProtocolStatus)
		}
		resp.Stdout.Close()
	})
}

func TestClientMaxConns(t *testing.T) {
	release := make(chan struct{})
	app := &fakeApp{handler: func(r *fakeReq, w *fakeOut) {
		if r.param("HOLD") != "" {
			w.stdout([]byte("Status: 200 OK\r\n\r\n"))
			<-release
			return
		}
		time.Sleep(20 * time.Millisecond) // a slow application, so requests queue for the connections
		fakeEchoHandler(r, w)
	}}
	c := startFake(t, app)
	c.KeepConn = true
	c.MaxConns = 2
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Do(context.Background(), &ClientRequest{})
			if err == nil {
				_, err = io.ReadAll(resp.Stdout)
				resp.Stdout.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, app.accepted.Load(), int32(2))

	// A request that cannot get a connection in time says why.
	holding := &ClientRequest{Params: []Pair{{"HOLD", "1"}}}
	hold, err := c.Do(context.Background(), holding)
	require.NoError(t, err)
	hold2, err := c.Do(context.Background(), holding)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Do(ctx, &ClientRequest{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "waiting for one of 2 connections")
	close(release)
	hold.Stdout.Close()
	hold2.Stdout.Close()
}

// An application that answers FCGI_CANT_MPX_CONN makes a multiplexing
// client fall back to one request per connection, retrying the refused
// request transparently.
func TestClientMultiplexFallback(t *testing.T) {
	app := &fakeApp{refuseMpx: true, handler: func(r *fakeReq, w *fakeOut) {
		time.Sleep(50 * time.Millisecond) // a slow application, so requests overlap on a connection
		fakeEchoHandler(r, w)
	}}
	c := startFake(t, app)
	c.Multiplex = true
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Do(context.Background(), &ClientRequest{Params: []Pair{{"N", fmt.Sprint(i)}}})
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Stdout)
				if err == nil && !strings.Contains(string(b), fmt.Sprintf("N=%d\n", i)) {
					err = fmt.Errorf("wrong answer %q", b)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, app.refused.Load())
	require.True(t, c.mpxRefused.Load())
}

// Without a pause between requests the next request often goes out on the
// connection the application is closing; an idempotent request is sent again
// on a new connection instead of failing.
func TestClientRetriesIdempotentOnClosingConn(t *testing.T) {
	app := &fakeApp{handler: fakeEchoHandler, closeAfterEach: true}
	c := startFake(t, app)
	c.KeepConn = true
	get := []Pair{{"REQUEST_METHOD", "GET"}}
	for i := 0; i < 50; i++ {
		out, _ := clientDoString(t, c, &ClientRequest{Params: get})
		require.Contains(t, out, "REQUEST_METHOD=GET")
	}
	// The application closed (nearly) every connection under the client.
	require.GreaterOrEqual(t, app.accepted.Load(), int32(25))
}

func TestIdempotent(t *testing.T) {
	require.True(t, idempotent([]Pair{{"REQUEST_METHOD", "GET"}}))
	require.True(t, idempotent([]Pair{{"REQUEST_METHOD", "POST"}, {"REQUEST_METHOD", "HEAD"}}))
	require.False(t, idempotent([]Pair{{"REQUEST_METHOD", "POST"}}))
	require.False(t, idempotent(nil))
}
