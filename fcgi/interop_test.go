package fcgi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/stretchr/testify/require"
)

// Interop with real web servers from Debian packages. Each case serves the
// echo application with this package's server, drives the web server with
// Go's HTTP client, and with -update records what the web server sent into
// testdata/peers/<peer>-<case>.bin for replay_test.go.

var httpTimeout = 15 * time.Second

type httpResult struct {
	status int
	header http.Header
	body   string
}

func httpDo(t *testing.T, method, url string, body io.Reader, length int64, hdr ...string) httpResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	require.NoError(t, err)
	req.ContentLength = length
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

// listen returns a TCP or unix listener reachable by the servers' workers.
func listen(t *testing.T, network string) net.Listener {
	if network == "unix" {
		return peers.ListenUnix(t)
	}
	return peers.ListenTCP(t)
}

func record(t *testing.T, rec *recorder, name string) {
	t.Helper()
	conns := rec.transcript()
	if updatePeers() {
		writeTranscript(t, name, conns)
		return
	}
	t.Logf("%s sent:\n%s", name, summarizeTranscript(conns))
}

// basicExchange sends three GETs and a POST and checks what the application saw.
func basicExchange(t *testing.T, s *peers.Server, app *echoApp) {
	t.Helper()
	for i := 0; i < 3; i++ {
		r := httpDo(t, "GET", s.URL(fmt.Sprintf("/echo?i=%d", i)), nil, 0)
		require.Equal(t, 200, r.status, r.body)
		require.Contains(t, r.body, "role=RESPONDER")
		require.Contains(t, r.body, "param REQUEST_METHOD=GET\n")
		require.Contains(t, r.body, "body-bytes=0\n")
		require.Equal(t, "text/plain", r.header.Get("Content-Type"))
	}
	r := httpDo(t, "POST", s.URL("/echo"), strings.NewReader("hello"), 5, "Content-Type", "text/x-test")
	require.Equal(t, 200, r.status, r.body)
	require.Contains(t, r.body, "param REQUEST_METHOD=POST\n")
	require.Contains(t, r.body, "param CONTENT_LENGTH=5\n")
	require.Contains(t, r.body, "param CONTENT_TYPE=text/x-test\n")
	require.Contains(t, r.body, "body-bytes=5\n")
	require.Len(t, app.requests(), 4)
}

// connsAndKeep checks the connection count and KEEP_CONN flags seen.
func connsAndKeep(t *testing.T, rec *recorder, wantConns int, wantKeep bool) {
	t.Helper()
	conns := rec.transcript()
	require.Len(t, conns, wantConns, "connections")
	for _, c := range conns {
		reqs, _, _ := analyzeTranscript(c)
		for _, r := range reqs {
			require.Equal(t, wantKeep, r.KeepConn, "FCGI_KEEP_CONN of request %d", r.ID)
		}
	}
}

func TestInteropNginx(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		keep    bool
	}{
		{"tcp", "tcp", false},
		{"unix", "unix", false},
		{"keepconn-tcp", "tcp", true},
		{"keepconn-unix", "unix", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &echoApp{}
			rec := serveEcho(t, listen(t, tc.network), app)
			s := peers.StartNginx(t, peers.NginxConfig{FastCGI: peers.UpstreamOf(rec.Addr()), KeepConn: tc.keep})
			start := time.Now()
			basicExchange(t, s, app)
			// KEEP_CONN=0 must be closed promptly or nginx waits for EOF.
			require.Less(t, time.Since(start), 5*time.Second)
			wantConns := 4
			if tc.keep {
				wantConns = 1
			}
			connsAndKeep(t, rec, wantConns, tc.keep)
			record(t, rec, "nginx-"+tc.name)
		})
	}

	// nginx is half duplex towards FastCGI: once the response header has
	// arrived it stops sending STDIN (measured: after 192 KiB buffered,
	// ~290 KiB unbuffered) and waits for END_REQUEST. So the 10 MB POST with
	// a 10 MB response works when the application reads the body before it
	// answers; the server must take the body in bounded memory meanwhile.
	for _, buffering := range []bool{true, false} {
		name := "post-10MB-get-10MB"
		if !buffering {
			name += "-unbuffered"
		}
		t.Run(name, func(t *testing.T) {
			app := &echoApp{}
			rec := serveEcho(t, listen(t, "unix"), app)
			s := peers.StartNginx(t, peers.NginxConfig{FastCGI: peers.UpstreamOf(rec.Addr()), KeepConn: true,
				NoRequestBuffering: !buffering, NoResponseBuffering: !buffering})
			const size = 10 << 20
			body := bytes.Repeat([]byte("0123456789"), size/10)
			r := httpDo(t, "POST", s.URL(fmt.Sprintf("/duplex?wait=1&n=%d", size)), bytes.NewReader(body), size)
			require.Equal(t, 200, r.status)
			require.Equal(t, size, len(r.body))
			var want bytes.Buffer
			writeGenerated(&want, size)
			require.True(t, want.String() == r.body, "response body differs")
			seen := app.requests()
			require.Len(t, seen, 1)
			require.Equal(t, int64(size), seen[0].BodyBytes)
			require.Equal(t, fmt.Sprintf("%x", sha256.Sum256(body)), seen[0].BodySum)
			record(t, rec, "nginx-"+name)
		})
	}

	// The half-duplex behaviour itself, so a change in nginx shows: an
	// application answering while the body still arrives never gets the rest.
	t.Run("half-duplex", func(t *testing.T) {
		app := &echoApp{}
		rec := serveEcho(t, listen(t, "unix"), app)
		s := peers.StartNginx(t, peers.NginxConfig{FastCGI: peers.UpstreamOf(rec.Addr()), ReadTimeout: "2s"})
		const size = 4 << 20
		go func() {
			resp, err := http.Post(s.URL(fmt.Sprintf("/duplex?n=%d", size)), "text/plain", bytes.NewReader(make([]byte, size)))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		require.Eventually(t, func() bool {
			conns := rec.transcript()
			if len(conns) == 0 {
				return false
			}
			reqs, _, _ := analyzeTranscript(conns[0])
			return len(reqs) == 1 && reqs[0].StdinLen > 0
		}, 10*time.Second, 10*time.Millisecond)
		// What is tested is that nothing more comes: give nginx a second.
		time.Sleep(time.Second)
		reqs, _, _ := analyzeTranscript(rec.transcript()[0])
		t.Logf("nginx sent %d of %d body bytes after the response began", reqs[0].StdinLen, size)
		require.Less(t, reqs[0].StdinLen, size)
		require.False(t, reqs[0].StdinEnd)
	})

	t.Run("chunked-unbuffered", func(t *testing.T) {
		app := &echoApp{}
		rec := serveEcho(t, listen(t, "tcp"), app)
		s := peers.StartNginx(t, peers.NginxConfig{FastCGI: peers.UpstreamOf(rec.Addr()), NoRequestBuffering: true})
		// Length -1 makes Go's client send a chunked body; the pause makes
		// nginx start passing it on before it has seen the end.
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte("chunk1-"))
			time.Sleep(200 * time.Millisecond) // the slow client body under test
			pw.Write([]byte("chunk2"))
			pw.Close()
		}()
		r := httpDo(t, "POST", s.URL("/echo"), pr, -1)
		require.Equal(t, 200, r.status, r.body)
		require.Contains(t, r.body, "body-bytes=13\n")
		require.Contains(t, r.body, "param CONTENT_LENGTH=\n")
		record(t, rec, "nginx-chunked")
	})

	t.Run("chunked-buffered", func(t *testing.T) {
		app := &echoApp{}
		rec := serveEcho(t, listen(t, "tcp"), app)
		s := peers.StartNginx(t, peers.NginxConfig{FastCGI: peers.UpstreamOf(rec.Addr()),
			ExtraParams: []string{"HTTP_TRANSFER_ENCODING $http_transfer_encoding"}})
		r := httpDo(t, "POST", s.URL("/echo"), io.MultiReader(strings.NewReader("chunk1-"), strings.NewReader("chunk2")), -1)
		require.Equal(t, 200, r.status, r.body)
		require.Contains(t, r.body, "body-bytes=13\n")
		require.Contains(t, r.body, "param CONTENT_LENGTH=13\n")
		record(t, rec, "nginx-chunked-buffered")
	})

	for _, keep := range []bool{false, true} {
		name := "client-disconnect"
		if keep {
			name += "-keepconn"
		}
		t.Run(name, func(t *testing.T) {
			app := &echoApp{}
			rec := serveEcho(t, listen(t, "tcp"), app)
			s := peers.StartNginx(t, peers.NginxConfig{FastCGI: peers.UpstreamOf(rec.Addr()), KeepConn: keep, NoResponseBuffering: true})
			conn, err := net.Dial("tcp", s.Addr())
			require.NoError(t, err)
			fmt.Fprintf(conn, "GET /drip HTTP/1.1\r\nHost: localhost\r\n\r\n")
			_, err = io.ReadFull(conn, make([]byte, 4096))
			require.NoError(t, err)
			conn.Close()
			require.Eventually(t, func() bool { return app.cancelled.Load() == 1 }, 15*time.Second, 10*time.Millisecond,
				"the handler's context was not cancelled after the client left")
			if keep {
				// nginx cannot reuse a connection with a response in
				// flight: it closes it (no ABORT_REQUEST), and the next
				// request goes on a new one.
				r := httpDo(t, "GET", s.URL("/echo?next"), nil, 0)
				require.Equal(t, 200, r.status, r.body)
				require.Len(t, rec.transcript(), 2)
			}
			record(t, rec, "nginx-disconnect"+strings.TrimPrefix(name, "client-disconnect"))
		})
	}
}

func TestInteropApache(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		reuse   bool
	}{
		{"tcp", "tcp", false},
		{"unix", "unix", false},
		{"reuse-tcp", "tcp", true},
		{"reuse-unix", "unix", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &echoApp{}
			rec := serveEcho(t, listen(t, tc.network), app)
			s := peers.StartApache(t, peers.ApacheConfig{FastCGI: peers.UpstreamOf(rec.Addr()), EnableReuse: tc.reuse})
			basicExchange(t, s, app)
			if tc.reuse {
				// One connection per Apache worker process at most.
				conns := rec.transcript()
				require.LessOrEqual(t, len(conns), 2)
				connsAndKeep(t, rec, len(conns), true)
			} else {
				connsAndKeep(t, rec, 4, false)
			}
			record(t, rec, "apache-"+tc.name)
		})
	}

	t.Run("chunked", func(t *testing.T) {
		app := &echoApp{}
		rec := serveEcho(t, listen(t, "tcp"), app)
		s := peers.StartApache(t, peers.ApacheConfig{FastCGI: peers.UpstreamOf(rec.Addr())})
		body := strings.Repeat("x", 100000)
		r := httpDo(t, "POST", s.URL("/echo"), io.MultiReader(strings.NewReader(body[:50000]), strings.NewReader(body[50000:])), -1)
		require.Equal(t, 200, r.status, r.body)
		require.Contains(t, r.body, "body-bytes=100000\n")
		require.NotContains(t, r.body, "param CONTENT_LENGTH=")
		record(t, rec, "apache-chunked")
	})

	t.Run("authorizer", func(t *testing.T) {
		app := &echoApp{}
		rec := serveEcho(t, listen(t, "tcp"), app)
		up := peers.UpstreamOf(rec.Addr())
		s := peers.StartApache(t, peers.ApacheConfig{FastCGI: up, Authorizer: up, AuthorizerPath: "/auth"})
		r := httpDo(t, "GET", s.URL("/auth/x"), nil, 0)
		require.Equal(t, 401, r.status, r.body)
		req, _ := http.NewRequest("GET", s.URL("/auth/x"), nil)
		req.SetBasicAuth("user", "pw")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, string(b))
		var roles []fcgi.Role
		for _, r := range app.requests() {
			roles = append(roles, r.Role)
		}
		require.Contains(t, roles, fcgi.RoleAuthorizer)
		record(t, rec, "apache-authorizer")
	})
}

func TestInteropLighttpd(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			app := &echoApp{}
			rec := serveEcho(t, listen(t, network), app)
			s := peers.StartLighttpd(t, peers.LighttpdConfig{FastCGI: peers.UpstreamOf(rec.Addr())})
			basicExchange(t, s, app)
			connsAndKeep(t, rec, 4, false)
			record(t, rec, "lighttpd-"+network)
		})
	}
}

func TestInteropHAProxy(t *testing.T) {
	app := &echoApp{}
	rec := serveEcho(t, listen(t, "tcp"), app)
	s := peers.StartHAProxy(t, peers.HAProxyConfig{FastCGI: peers.UpstreamOf(rec.Addr()), MpxsConns: true, GetValues: true,
		BackendExtra: "    http-reuse always\n"})
	// One request first so the connection exists and its GET_VALUES is done.
	r := httpDo(t, "GET", s.URL("/echo?first"), nil, 0)
	require.Equal(t, 200, r.status, r.body)

	const n = 10
	var wg sync.WaitGroup
	results := make([]httpResult, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = httpDo(t, "GET", s.URL(fmt.Sprintf("/slow?ms=500&i=%d", i)), nil, 0)
		}()
	}
	wg.Wait()
	for i, r := range results {
		require.Equal(t, 200, r.status, r.body)
		require.Contains(t, r.body, fmt.Sprintf("i=%d", i))
	}
	conns := rec.transcript()
	var getValues, ids int
	idSet := map[uint16]bool{}
	for _, c := range conns {
		reqs, mgmt, _ := analyzeTranscript(c)
		for _, m := range mgmt {
			if strings.HasPrefix(m, "GET_VALUES") {
				getValues++
			}
		}
		for _, r := range reqs {
			idSet[r.ID] = true
		}
	}
	ids = len(idSet)
	t.Logf("haproxy: %d connections, %d GET_VALUES, %d distinct ids, max %d requests in flight", len(conns), getValues, ids, app.maxFlight.Load())
	require.Positive(t, getValues, "option get-values sends FCGI_GET_VALUES")
	require.Greater(t, app.maxFlight.Load(), int32(1), "requests in flight at once")
	require.Less(t, len(conns), n, "requests share connections")
	record(t, rec, "haproxy-mpxs")
}

func TestInteropCGIFCGI(t *testing.T) {
	app := &echoApp{}
	rec := serveEcho(t, listen(t, "tcp"), app)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := peers.CGIFCGI(t, ctx, peers.UpstreamOf(rec.Addr()), []string{
		"REQUEST_METHOD=POST", "REQUEST_URI=/echo", "SCRIPT_NAME=/echo", "QUERY_STRING=", "CONTENT_LENGTH=11",
		"SERVER_PROTOCOL=HTTP/1.1", "SERVER_NAME=localhost", "SERVER_PORT=80", "GATEWAY_INTERFACE=CGI/1.1",
	}, []byte("hello world"))
	require.NoError(t, err)
	resp, err := fcgi.ReadCGIResponse(bytes.NewReader(out))
	require.NoError(t, err, "%q", out)
	require.Equal(t, 200, resp.Status)
	body, _ := io.ReadAll(resp.Body)
	require.Contains(t, string(body), "body-bytes=11\n")
	require.Contains(t, string(body), "param REQUEST_URI=/echo\n")
	record(t, rec, "cgi-fcgi-post")
}

// Our own client is full duplex: the application echoes 10 MB as it reads
// them, through a unix socket, with no web server in between.
func TestClientServerEchoDuplex(t *testing.T) {
	app := &echoApp{}
	rec := serveEcho(t, listen(t, "unix"), app)
	c := &fcgi.Client{Network: "unix", Address: rec.Addr().String(), KeepConn: true}
	defer c.Close()
	const size = 10 << 20
	body := bytes.Repeat([]byte("abcdefghij"), size/10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, &fcgi.ClientRequest{
		Params: []fcgi.Pair{{Name: "REQUEST_URI", Value: "/stream"}, {Name: "CONTENT_LENGTH", Value: fmt.Sprint(size)}},
		Stdin:  io.MultiReader(bytes.NewReader(body)),
	})
	require.NoError(t, err)
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	require.NoError(t, err)
	require.Equal(t, 200, cgi.Status)
	h := sha256.New()
	n, err := io.Copy(h, cgi.Body)
	require.NoError(t, err)
	require.Equal(t, int64(size), n)
	require.Equal(t, sha256.Sum256(body), [32]byte(h.Sum(nil)))
	require.NoError(t, resp.Stdout.Close())
}

// A client leaving HAProxy mid-response: the handler's context must be
// cancelled (by FCGI_ABORT_REQUEST or by the connection closing) and the
// multiplexed connection must stay usable.
func TestInteropHAProxyAbort(t *testing.T) {
	app := &echoApp{}
	rec := serveEcho(t, listen(t, "tcp"), app)
	s := peers.StartHAProxy(t, peers.HAProxyConfig{FastCGI: peers.UpstreamOf(rec.Addr()), MpxsConns: true, GetValues: true,
		BackendExtra: "    http-reuse always\n"})
	// Warm the connection (GET_VALUES), then keep another request in flight
	// on it: alone on its connection an aborted stream makes HAProxy close
	// the connection instead.
	r := httpDo(t, "GET", s.URL("/echo?first"), nil, 0)
	require.Equal(t, 200, r.status, r.body)
	slow := make(chan httpResult, 1)
	go func() { slow <- httpDo(t, "GET", s.URL("/slow?ms=1500"), nil, 0) }()
	require.Eventually(t, func() bool { return app.inFlight.Load() == 1 }, 5*time.Second, time.Millisecond)
	conn, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	fmt.Fprintf(conn, "GET /drip HTTP/1.1\r\nHost: localhost\r\n\r\n")
	_, err = io.ReadFull(conn, make([]byte, 4096))
	require.NoError(t, err)
	conn.Close()
	require.Eventually(t, func() bool { return app.cancelled.Load() == 1 }, 15*time.Second, 10*time.Millisecond,
		"the handler's context was not cancelled after the client left")
	r = <-slow
	require.Equal(t, 200, r.status, r.body)
	r = httpDo(t, "GET", s.URL("/echo?after-abort"), nil, 0)
	require.Equal(t, 200, r.status, r.body)
	aborts := 0
	for _, c := range rec.transcript() {
		reqs, _, _ := analyzeTranscript(c)
		for _, r := range reqs {
			if r.Aborted {
				aborts++
			}
		}
	}
	t.Logf("haproxy sent %d ABORT_REQUEST, %d connections", aborts, len(rec.transcript()))
	// Measured with HAProxy 2.6: the dripping stream got a connection of its
	// own and HAProxy closed that connection rather than send an ABORT, so
	// the cancellation came from the connection loss. Either way the handler
	// must stop and the other connection carry on.
	record(t, rec, "haproxy-abort")
}

// lighttpd in authorizer mode asks the application in the AUTHORIZER role
// and serves the document root itself when the answer is 200.
func TestInteropLighttpdAuthorizer(t *testing.T) {
	app := &echoApp{}
	rec := serveEcho(t, listen(t, "tcp"), app)
	s := peers.StartLighttpd(t, peers.LighttpdConfig{FastCGI: peers.UpstreamOf(rec.Addr()), Authorizer: true})
	r := httpDo(t, "GET", s.URL("/index.html"), nil, 0)
	require.Equal(t, 401, r.status, r.body)
	r = httpDo(t, "GET", s.URL("/index.html"), nil, 0, "Authorization", "Basic dXNlcjpwdw==")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "static\n", r.body)
	for _, seen := range app.requests() {
		require.Equal(t, fcgi.RoleAuthorizer, seen.Role)
	}
	record(t, rec, "lighttpd-authorizer")
}
