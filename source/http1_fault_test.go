package source

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Fault tests for the HTTP/1.1 upstream client. Where it helps, the same
// request also goes through net/http's Transport (what https:// upstreams
// use), and both must agree.

// slowReader hands out one byte per tick, as a client uploading slowly
// through a full-duplex web server would.
type slowReader struct {
	data string
	tick time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, io.EOF
	}
	time.Sleep(r.tick) // the slow upload is what the test is about
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}

// waitIdleClosed waits until each connection s keeps has seen its upstream
// close it (or send bytes past its answer), as the next request will.
func waitIdleClosed(t *testing.T, s *httpSource) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.h1.mu.Lock()
		defer s.h1.mu.Unlock()
		for _, cn := range s.h1.idle {
			if cn.quiet() {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "the upstream's close never reached the kept connection")
}

// watchTransportCloses makes s's net/http Transport report each connection
// it closes. The Transport marks a connection broken before closing it, so
// after a report the next request takes another connection.
func watchTransportCloses(s *httpSource) <-chan struct{} {
	closed := make(chan struct{}, 16)
	dial := s.transport.DialContext
	s.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &reportingConn{Conn: c, closed: closed}, nil
	}
	return closed
}

type reportingConn struct {
	net.Conn
	once   sync.Once
	closed chan<- struct{}
}

func (c *reportingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed <- struct{}{} })
	return err
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen within 10s", what)
	}
}

// transportFetch sends r through the httpSource's net/http Transport (the
// previous path for http:// upstreams), for comparison.
func transportFetch(t *testing.T, s *httpSource, r *Request) (int, error) {
	t.Helper()
	req, err := s.newRequest(context.Background(), r)
	require.NoError(t, err)
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return 0, classify(context.Background(), s.name, "request", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// An upstream whose keep-alive timeout is shorter than idle_conn_timeout
// (Node's default is 5 s, the bridge's 90 s) closes idle connections. The
// close is noticed before reuse, so a POST (not replayable) after it goes out
// on a new connection instead of failing with 502.
func TestH1PostAfterUpstreamClosedIdleConn(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false // keep-alive timeout on the upstream: closes while idle
	})
	s := h1Source(t, up.url(), nil)
	post := func() *Request {
		return &Request{Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/"}, ContentLength: 3, Stdin: strings.NewReader("abc")}
	}

	// net/http, for comparison.
	closed := watchTransportCloses(s)
	_, err := transportFetch(t, s, get("/"))
	require.NoError(t, err)
	waitFor(t, closed, "net/http closing the connection the upstream closed")
	status, err := transportFetch(t, s, post())
	require.NoError(t, err, "net/http drops the connection the upstream closed while idle")
	assert.Equal(t, 200, status)

	m, err := s.Fetch(context.Background(), get("/"))
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, m))
	waitIdleClosed(t, s)
	m, err = s.Fetch(context.Background(), post())
	require.NoError(t, err, "a POST after the upstream closed an idle connection")
	assert.Equal(t, "ok", readAll(t, m))
}

// After an upstream restart every idle connection is dead; a GET still
// succeeds, on a new connection.
func TestH1GetAfterSeveralIdleConnsDied(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	s := h1Source(t, up.url(), nil)
	ctx := context.Background()
	// Two requests at once: two connections, both kept afterwards.
	a, err := s.Fetch(ctx, get("/a"))
	require.NoError(t, err)
	b, err := s.Fetch(ctx, get("/b"))
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, a))
	assert.Equal(t, "ok", readAll(t, b))
	s.h1.mu.Lock()
	require.Len(t, s.h1.idle, 2)
	s.h1.mu.Unlock()
	waitIdleClosed(t, s)

	m, err := s.Fetch(ctx, get("/c"))
	require.NoError(t, err, "a GET when two kept connections are dead")
	assert.Equal(t, "ok", readAll(t, m))
}

// Bytes an upstream sends after a complete response (a Content-Length too
// small, a body on HEAD/204/304 written separately) must never be read as
// the answer to the next request, which may be another client's, even when
// they arrive a moment after the connection went back to the pool.
func TestH1LateBytesAnswerNextRequest(t *testing.T) {
	const forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
	for _, tc := range []struct{ name, method, first string }{
		{"length too small", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"body on HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pooled, lateSent := make(chan struct{}), make(chan struct{})
			up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
				if n == 1 {
					io.WriteString(c, tc.first)
					<-pooled // the late bytes come once the connection is kept
					io.WriteString(c, forged)
					close(lateSent)
					return true
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
				return true
			})
			s := h1Source(t, up.url(), nil)
			r := get("/first")
			r.Params["REQUEST_METHOD"] = tc.method
			m, err := s.Fetch(context.Background(), r)
			require.NoError(t, err)
			readAll(t, m)
			close(pooled)
			waitFor(t, lateSent, "the late bytes")
			waitIdleClosed(t, s)
			m, err = s.Fetch(context.Background(), get("/second"))
			require.NoError(t, err)
			assert.Equal(t, "real", readAll(t, m), "the second request got bytes the upstream sent after the first answer")
		})
	}
}

// response_timeout is the wait for the response headers after the request
// is sent, as net/http's ResponseHeaderTimeout: an upload that takes longer
// than it is not a 504 when the upstream answers at once after reading it.
func TestH1ResponseTimeoutCountsUpload(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	s := h1Source(t, up.url(), func(u *conf.Upstream) { u.ResponseTimeout = conf.Duration(300 * time.Millisecond) })
	upload := func() *Request {
		return &Request{Params: map[string]string{"REQUEST_METHOD": "PUT", "REQUEST_URI": "/up"}, ContentLength: 6,
			Stdin: &slowReader{data: "abcdef", tick: 100 * time.Millisecond}}
	}
	status, err := transportFetch(t, s, upload())
	require.NoError(t, err, "net/http counts response_timeout from the end of the request")
	assert.Equal(t, 200, status)

	m, err := s.Fetch(context.Background(), upload())
	require.NoError(t, err, "a 600 ms upload with response_timeout 300 ms")
	assert.Equal(t, "ok", readAll(t, m))
}

// A request body shorter than its length (or any failed read of the input)
// fails the exchange at once, not at response_timeout (or never, with
// response_timeout = 0) while the upstream waits for the rest.
func TestH1WriterErrorNotPropagated(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	s := h1Source(t, up.url(), func(u *conf.Upstream) { u.ResponseTimeout = conf.Duration(2 * time.Second) })
	short := func() *Request {
		return &Request{Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/"}, ContentLength: 10, Stdin: strings.NewReader("abc")}
	}
	start := time.Now()
	_, err := transportFetch(t, s, short())
	var se *Error
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, http.StatusBadGateway, se.Status, "net/http: %v", err)
	assert.Less(t, time.Since(start), time.Second)

	start = time.Now()
	_, err = s.Fetch(context.Background(), short())
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Less(t, time.Since(start), time.Second, "the failed body write should end the exchange at once")
	// 502 as net/http gave, or 400 as the README promises for a short body.
	assert.Contains(t, []int{http.StatusBadGateway, http.StatusBadRequest}, se.Status, "%v", err)
}

// filter's exchange closes its input (this Body) from a timer or context
// hook while its writer goroutine is inside Read: Close must wake that Read
// and must never touch a connection the Read just gave back to the pool.
// Run with -race.
func TestH1ConcurrentCloseAndRead(t *testing.T) {
	release := make(chan struct{})
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		<-release
		return false
	})
	defer close(release)
	s := h1Source(t, up.url(), nil)
	m, err := s.Fetch(context.Background(), get("/"))
	require.NoError(t, err)
	var wg sync.WaitGroup
	second := make(chan struct{})
	wg.Go(func() {
		// The exchange's writer goroutine: its second Read waits for
		// bytes the upstream never sends.
		io.Copy(io.Discard, &readCounter{r: m.Body, at: 2, reached: second})
	})
	waitFor(t, second, "the second Read")
	m.Body.Close() // the exchange's timeout hook
	wg.Wait()
}

// A folded line continues the field above it, also when that field is one
// the parser consumes without keeping (Content-Length, Transfer-Encoding,
// Connection, a hop-by-hop field).
func TestH1ObsFoldAfterDroppedField(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-A: 1\r\nKeep-Alive: timeout=5,\r\n max=100\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	s := h1Source(t, up.url(), nil)
	m, err := s.Fetch(context.Background(), get("/"))
	require.NoError(t, err)
	assert.Equal(t, "1", m.Header.Get("X-A"), "the continuation belonged to Keep-Alive")
}

// The request target matches what net/url builds for https upstreams: bytes
// not allowed in a request-target (raw 8-bit, "<>{}|) are escaped, the rest
// of REQUEST_URI goes through as the client sent it.
func TestH1TargetMatchesNetHTTP(t *testing.T) {
	s := h1Source(t, "http://127.0.0.1:1/base/", nil)
	for _, uri := range []string{"/plain/a%2Fb?x=1", "/caf\xc3\xa9", "/a\"b<c>", "/a{b}|c"} {
		r := get(uri)
		req, err := s.newRequest(context.Background(), r)
		want := ""
		if err == nil {
			want = req.URL.RequestURI()
		}
		got, err2 := s.appendTarget(nil, uri)
		if err != nil || err2 != nil {
			assert.Equal(t, err != nil, err2 != nil, "%q: net/http %v, h1 %v", uri, err, err2)
			continue
		}
		assert.Equal(t, want, string(got), "%q", uri)
	}
}

// The response framings net/http refuses are refused here too (RFC 9112
// section 6): a 502 whose error says what was wrong, and a connection that
// is never used again, since where the body ends is in doubt. What net/http
// accepts is read as net/http reads it; Transfer-Encoding on an HTTP/1.0
// answer is ignored, as net/http does. Each case is in FuzzResponseHead's
// seeds as well.
var framingCases = []struct {
	name, answer string
	reason       string // in the error when the answer is refused
}{
	{"gzip then chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", `got "Transfer-Encoding: gzip, chunked"`},
	{"chunked twice in one field", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", `got "Transfer-Encoding: chunked, chunked"`},
	{"two fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", `got "Transfer-Encoding: chunked, chunked"`},
	{"two fields, one empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n5\r\nhello\r\n0\r\n\r\n", `got "Transfer-Encoding: chunked, "`},
	{"identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", `got "Transfer-Encoding: identity"`},
	{"empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello", `got "Transfer-Encoding: "`},
	{"trailing comma", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n", `got "Transfer-Encoding: chunked,"`},
	{"chunked in capitals", "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ""},
	{"chunked over a length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ""},
	{"HTTP/1.0 chunked with a length", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", ""},
	{"HTTP/1.0 chunked to the close", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ""},
	{"HTTP/1.0 gzip, chunked", "HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\nhello", ""},
}

func TestH1FramingMatchesNetHTTP(t *testing.T) {
	for _, tc := range framingCases {
		t.Run(tc.name, func(t *testing.T) {
			// net/http's reading of the same bytes.
			req, _ := http.NewRequest(http.MethodGet, "http://upstream/", nil)
			var want string
			resp, werr := http.ReadResponse(bufio.NewReader(strings.NewReader(tc.answer)), req)
			if werr == nil {
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					werr = err
				}
				want = string(b)
			}
			require.Equal(t, tc.reason != "", werr != nil, "net/http: %v", werr)

			up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
				if strings.HasPrefix(head, "GET /next ") {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
					return true
				}
				io.WriteString(c, tc.answer)
				if strings.HasPrefix(tc.answer, "HTTP/1.0") && !strings.Contains(tc.answer, "Content-Length") {
					return false // the body ends with the connection
				}
				// Hold the connection open: had the client reused it, the
				// next request would be answered here, with the framing's
				// leftovers first.
				return true
			})
			s := h1Source(t, up.url(), nil)
			// A body misread as chunked would wait for a chunk that never
			// comes: the deadline turns that into a failure, not a hang.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m, err := s.Fetch(ctx, get("/"))
			if err == nil && m.Body != nil {
				defer m.Body.Close()
			}
			if tc.reason != "" {
				var se *Error
				require.True(t, errors.As(err, &se), "accepted what net/http refuses (%v)", werr)
				assert.Equal(t, http.StatusBadGateway, se.Status)
				assert.Contains(t, err.Error(), tc.reason)
			} else {
				require.NoError(t, err, "refused what net/http accepts")
				got, err := io.ReadAll(m.Body)
				m.Body.Close()
				require.NoError(t, err, "net/http reads the body as %q", want)
				assert.Equal(t, want, string(got), "the body differs from net/http's")
			}
			m, err = s.Fetch(context.Background(), get("/next"))
			require.NoError(t, err)
			assert.Equal(t, "next", readAll(t, m))
			if tc.reason != "" || strings.HasPrefix(tc.answer, "HTTP/1.0") || strings.Contains(tc.answer, "Content-Length: 3") {
				assert.Equal(t, int32(2), up.accepts.Load(), "a connection whose framing was in doubt was used again")
			}
		})
	}
}

// A header line as long as the read buffer, or longer, is either read
// whole or refused as too large: never is a piece of it taken for the empty
// line that ends the head (which would make the fields after it the body).
func TestH1LongLineEndsAtBufferEdge(t *testing.T) {
	for pad := 8150; pad <= 8200; pad++ {
		answer := "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", pad) + "\r\nX-After: yes\r\nContent-Length: 4\r\n\r\nbody"
		var h httpmsg.Head
		err := readResponseHead(bufio.NewReaderSize(strings.NewReader(answer), 8<<10), http.MethodGet, &h)
		if err != nil {
			require.ErrorIs(t, err, httpmsg.ErrTooLarge, "pad %d", pad)
			continue
		}
		assert.Equal(t, "yes", h.Header.Get("X-After"), "pad %d", pad)
		assert.Equal(t, int64(4), h.Length, "pad %d", pad)
	}
}

// headNames lists a request head's field names in order.
func headNames(head string) []string {
	var names []string
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if name, _, ok := strings.Cut(line, ":"); ok {
			names = append(names, name)
		}
	}
	return names
}

// Fields go upstream in the order the web server sent them when that order
// is known, and otherwise sorted by name: the same request always gives the
// same head, never Go's map order.
func TestH1RequestFieldOrder(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	s := h1Source(t, up.url(), nil)
	params := map[string]string{"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "HTTP_HOST": "h"}
	clientOrder := []string{"HTTP_ZETA", "HTTP_ACCEPT", "HTTP_MIDDLE", "HTTP_COOKIE", "HTTP_BETA", "HTTP_YANKEE", "HTTP_ALPHA", "HTTP_X_LAST"}
	for _, k := range clientOrder {
		params[k] = strings.ToLower(k)
	}
	sent := func(order []string) []string {
		m, err := s.Fetch(context.Background(), &Request{Params: params, ParamOrder: order, ContentLength: -1})
		require.NoError(t, err)
		readAll(t, m)
		up.mu.Lock()
		defer up.mu.Unlock()
		return headNames(up.heads[len(up.heads)-1])
	}
	bridgeOwn := []string{"X-Forwarded-Host", "X-Forwarded-Proto"}

	order := append([]string{"REQUEST_METHOD", "HTTP_HOST"}, clientOrder...)
	want := []string{"Host", "Zeta", "Accept", "Middle", "Cookie", "Beta", "Yankee", "Alpha", "X-Last"}
	assert.Equal(t, append(want, bridgeOwn...), sent(order), "the client's order")

	first := sent(nil)
	for range 20 {
		require.Equal(t, first, sent(nil), "the same request gave another head")
	}
	assert.Equal(t, append([]string{"Host", "Accept", "Alpha", "Beta", "Cookie", "Middle", "X-Last", "Yankee", "Zeta"}, bridgeOwn...), first)
}

// Fields the client's Connection header names are hop-by-hop (RFC 9110
// section 7.6.1) and stay with the web server, as with net/http's
// ReverseProxy; the bridge's own X-Forwarded-* fields are still sent.
func TestH1ConnectionNamedFieldsMatchReverseProxy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"one named", map[string]string{"Connection": "keep-alive, X-Secret", "X-Secret": "s", "X-Keep": "k"}},
		{"names in any case", map[string]string{"Connection": "x-secret ,  COOKIE", "X-Secret": "s", "Cookie": "a=b", "X-Keep": "k"}},
		{"a forwarded field named", map[string]string{"Connection": "close, X-Forwarded-For", "X-Forwarded-For": "203.0.113.9", "X-Keep": "k"}},
		// ReverseProxy also relays "Te: trailers" and upgrades, which the
		// bridge does not: those two are left out of the comparison.
		{"the usual hop-by-hop list", map[string]string{"Connection": "close", "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive", "Trailer": "X-T", "X-Keep": "k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				return true
			})
			params := map[string]string{"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "HTTP_HOST": "site.example", "REMOTE_ADDR": "192.0.2.7"}
			req := httptest.NewRequest(http.MethodGet, "http://site.example/", nil)
			req.RemoteAddr = "192.0.2.7:1234"
			for k, v := range tc.header {
				params[ParamName(k)] = v
				req.Header.Set(k, v)
			}
			proxy := httputil.NewSingleHostReverseProxy(mustParseURL(t, up.url()))
			transport := &http.Transport{}
			proxy.Transport = transport
			proxy.ServeHTTP(httptest.NewRecorder(), req)
			transport.CloseIdleConnections()

			s := h1Source(t, up.url(), nil)
			m, err := s.Fetch(context.Background(), &Request{Params: params, ContentLength: -1})
			require.NoError(t, err)
			readAll(t, m)

			up.mu.Lock()
			theirs, ours := parseHead(t, up.heads[0]), parseHead(t, up.heads[1])
			up.mu.Unlock()
			for k := range tc.header {
				assert.Equal(t, theirs.Values(k), ours.Values(k), "%s: ReverseProxy sent %q", k, theirs.Values(k))
			}
			assert.Equal(t, []string{"192.0.2.7"}, ours.Values("X-Forwarded-For"))
		})
	}
}

func parseHead(t *testing.T, head string) http.Header {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	require.NoError(t, err)
	return req.Header
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// readCounter closes reached when Read is called for the at-th time, just
// before that call reads.
type readCounter struct {
	r       io.Reader
	n, at   int
	reached chan struct{}
}

func (rc *readCounter) Read(p []byte) (int, error) {
	if rc.n++; rc.n == rc.at {
		close(rc.reached)
	}
	return rc.r.Read(p)
}
