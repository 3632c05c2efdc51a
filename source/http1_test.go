package source

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

// rawUpstream is an HTTP upstream written byte by byte, for the framings
// and failures a well-behaved server never produces. serve runs once per
// request with the request already read (head and any Content-Length body).
type rawUpstream struct {
	l       net.Listener
	accepts atomic.Int32
	wg      sync.WaitGroup
	mu      sync.Mutex
	heads   []string
	bodies  []string
}

func newRawUpstream(t *testing.T, serve func(n int, head string, c net.Conn) (keep bool)) *rawUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u := &rawUpstream{l: l}
	var served atomic.Int32
	u.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			u.wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					head, body, err := readRawRequest(br)
					if err != nil {
						return
					}
					u.mu.Lock()
					u.heads, u.bodies = append(u.heads, head), append(u.bodies, body)
					u.mu.Unlock()
					if !serve(int(served.Add(1)), head, c) {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { l.Close(); u.wg.Wait() })
	return u
}

func (u *rawUpstream) url() string { return "http://" + u.l.Addr().String() + "/" }

func (u *rawUpstream) head(i int) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.heads[i]
}

// readRawRequest reads a head and a Content-Length body (chunked bodies are
// not read: tests that send one answer without reading it).
func readRawRequest(br *bufio.Reader) (string, string, error) {
	var head strings.Builder
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			for _, c := range strings.TrimSpace(v) {
				length = length*10 + int(c-'0')
			}
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", "", err
	}
	return head.String(), string(body), nil
}

func h1Source(t *testing.T, url string, tune func(*conf.Upstream)) *httpSource {
	t.Helper()
	u := httpUpstream(url)
	if tune != nil {
		tune(u)
	}
	src, err := NewHTTP(u)
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	s := src.(*httpSource)
	require.NotNil(t, s.h1, "plain http upstreams use the HTTP/1.1 client")
	return s
}

func get(uri string) *Request {
	return &Request{Params: map[string]string{"REQUEST_METHOD": "GET", "REQUEST_URI": uri}, ContentLength: -1}
}

func TestH1KeepAliveAndFramings(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		switch {
		case strings.HasPrefix(head, "GET /length "):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
		case strings.HasPrefix(head, "GET /chunked "):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
		case strings.HasPrefix(head, "GET /early "):
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		case strings.HasPrefix(head, "GET /folded "):
			io.WriteString(c, "HTTP/1.1 299 Custom Reason\r\nX-Long: one\r\n two\r\nConnection: keep-alive, X-Hop\r\nX-Hop: no\r\nContent-Length: 0\r\n\r\n")
		case strings.HasPrefix(head, "HEAD /"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
		case strings.HasPrefix(head, "GET /nocontent "):
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		case strings.HasPrefix(head, "GET /eof "):
			// No length: the body runs to the connection's end.
			io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close")
			return false
		}
		return true
	})
	s := h1Source(t, up.url(), nil)
	ctx := context.Background()

	m, err := s.Fetch(ctx, get("/length"))
	require.NoError(t, err)
	assert.Equal(t, int64(5), m.Length)
	assert.Equal(t, "text/plain", m.Header.Get("Content-Type"))
	assert.Equal(t, "hello", readAll(t, m))

	m, err = s.Fetch(ctx, get("/chunked"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), m.Length)
	assert.False(t, m.Header.Has("Transfer-Encoding"))
	assert.Equal(t, "abcde", readAll(t, m))

	m, err = s.Fetch(ctx, get("/early"))
	require.NoError(t, err)
	assert.Equal(t, 200, m.Status, "interim 1xx answers are skipped")
	assert.False(t, m.Header.Has("Link"))
	assert.Equal(t, "ok", readAll(t, m))

	m, err = s.Fetch(ctx, get("/folded"))
	require.NoError(t, err)
	assert.Equal(t, 299, m.Status)
	assert.Equal(t, "Custom Reason", m.Reason)
	assert.Equal(t, "one two", m.Header.Get("X-Long"))
	assert.False(t, m.Header.Has("X-Hop"), "fields the Connection header names are hop-by-hop")
	assert.Equal(t, "", readAll(t, m))

	head := get("/h")
	head.Params["REQUEST_METHOD"] = "HEAD"
	m, err = s.Fetch(ctx, head)
	require.NoError(t, err)
	assert.Nil(t, m.Body)
	assert.Equal(t, int64(1234), m.Length, "HEAD keeps the length a GET would have")

	m, err = s.Fetch(ctx, get("/nocontent"))
	require.NoError(t, err)
	assert.Equal(t, 204, m.Status)
	assert.Nil(t, m.Body)

	assert.Equal(t, int32(1), up.accepts.Load(), "one kept connection served every framing")

	m, err = s.Fetch(ctx, get("/eof"))
	require.NoError(t, err)
	assert.Equal(t, "until close", readAll(t, m))
	m, err = s.Fetch(ctx, get("/length"))
	require.NoError(t, err)
	assert.Equal(t, "hello", readAll(t, m))
	assert.Equal(t, int32(2), up.accepts.Load(), "a body delimited by the close costs its connection")
}

func TestH1RequestHead(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	s := h1Source(t, up.url()+"base/", nil)
	ctx := context.Background()
	r := &Request{Params: map[string]string{
		"REQUEST_METHOD": "POST", "REQUEST_URI": "/p/q%2Fr?x=1&y=%20", "HTTP_HOST": "site.example",
		"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5", "REMOTE_ADDR": "192.0.2.7", "HTTP_TE": "trailers",
	}, ContentLength: 5, Stdin: strings.NewReader("hello")}
	m, err := s.Fetch(ctx, r)
	require.NoError(t, err)
	readAll(t, m)
	h := up.head(0)
	assert.True(t, strings.HasPrefix(h, "POST /base/p/q%2Fr?x=1&y=%20 HTTP/1.1\r\nHost: site.example\r\n"), h)
	for _, f := range []string{"Content-Type: text/plain", "Content-Length: 5", "X-Forwarded-For: 192.0.2.7", "X-Forwarded-Host: site.example", "X-Forwarded-Proto: http"} {
		assert.Contains(t, h, "\r\n"+f+"\r\n")
	}
	assert.NotContains(t, h, "Te:")
	assert.NotContains(t, h, "User-Agent")
	assert.Equal(t, "hello", up.bodies[0])

	// An empty POST still says so; a GET says nothing.
	r = &Request{Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/e"}, ContentLength: 0, Stdin: strings.NewReader("")}
	m, err = s.Fetch(ctx, r)
	require.NoError(t, err)
	readAll(t, m)
	assert.Contains(t, up.head(1), "\r\nContent-Length: 0\r\n")
	m, err = s.Fetch(ctx, get("/g"))
	require.NoError(t, err)
	readAll(t, m)
	assert.NotContains(t, up.head(2), "Content-Length")
	assert.NotContains(t, up.head(2), "Transfer-Encoding")

	// What would split the request is refused before anything is sent.
	for _, bad := range []map[string]string{
		{"REQUEST_URI": "/x", "HTTP_X_EVIL": "a\r\nInjected: yes"},
		{"REQUEST_URI": "/x", "HTTP_HOST": "h\r\nInjected: yes"},
		{"REQUEST_URI": "/x", "REQUEST_METHOD": "GET /other HTTP/1.1\r\n"},
		{"REQUEST_URI": "x y\r\nInjected: yes"},
		{"REQUEST_URI": "/x", "HTTP_BAD NAME": "v"},
	} {
		_, err := s.Fetch(ctx, &Request{Params: bad, ContentLength: -1})
		var se *Error
		require.True(t, errors.As(err, &se), "%v: %v", bad, err)
		assert.Equal(t, http.StatusBadRequest, se.Status, "%v", bad)
	}
	assert.Len(t, up.heads, 3)

	// The Target the bridge read is what goes upstream; the params are not
	// read for it again.
	p := map[string]string{"REQUEST_URI": "/params", "HTTP_HOST": "site.example"}
	tg := NewTarget(map[string]string{"REQUEST_METHOD": "DELETE", "REQUEST_URI": "/target?t=1", "HTTPS": "on"})
	m, err = s.Fetch(ctx, &Request{Params: p, Target: tg, ContentLength: -1})
	require.NoError(t, err)
	readAll(t, m)
	h = up.head(3)
	assert.True(t, strings.HasPrefix(h, "DELETE /base/target?t=1 HTTP/1.1\r\n"), h)
	assert.Contains(t, h, "\r\nX-Forwarded-Proto: https\r\n")
}

// A kept connection the upstream closed while idle is noticed before it is
// used, so even a POST with a body, which could not be sent twice, goes out
// on a new connection.
func TestH1StaleConnection(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false // closes right after answering, without Connection: close
	})
	s := h1Source(t, up.url(), nil)
	ctx := context.Background()
	for range 3 {
		m, err := s.Fetch(ctx, get("/"))
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, m))
		waitIdleClosed(t, s)
	}
	post := &Request{Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/"}, ContentLength: 3, Stdin: strings.NewReader("abc")}
	m, err := s.Fetch(ctx, post)
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, m))
	assert.Equal(t, int32(4), up.accepts.Load())
}

// A GET that meets a connection closed just as it was sent is sent again on
// another one; a POST with a body is not, since it may have been acted on.
func TestH1RetryReplayableOnly(t *testing.T) {
	q := &h1Request{method: http.MethodGet}
	assert.True(t, q.replayable())
	q = &h1Request{method: http.MethodPost}
	assert.False(t, q.replayable(), "POST is not safe to repeat")
	q = &h1Request{method: http.MethodGet, body: strings.NewReader("x")}
	assert.False(t, q.replayable(), "a streamed body cannot be sent twice")
}

// An upstream that answers before reading a streamed body (413) gets its
// answer through, and the connection is not reused.
func TestH1AnswerBeforeBody(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig")
		return false
	})
	s := h1Source(t, up.url(), nil)
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := &Request{Params: map[string]string{"REQUEST_METHOD": "PUT", "REQUEST_URI": "/up", "HTTP_TRANSFER_ENCODING": "chunked"}, ContentLength: -1, Stdin: pr}
		m, err := s.Fetch(context.Background(), r)
		if !assert.NoError(t, err) {
			return
		}
		assert.Equal(t, 413, m.Status)
		assert.Equal(t, "big", readAll(t, m))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an early answer deadlocked the exchange")
	}
	pr.CloseWithError(errors.New("test over"))
}

func TestH1MalformedResponses(t *testing.T) {
	answers := map[string]string{
		"/status": "HTTP/1.1 OK\r\n\r\n",
		"/proto":  "SPDY/3 200 OK\r\n\r\n",
		"/length": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"/field":  "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
		"/huge":   "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n",
		"/switch": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		// RFC 9112 section 2.2 lets a server skip it; net/http's client refuses it.
		"/blank":   "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"/nothing": "",
	}
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		path := strings.Fields(head)[1]
		io.WriteString(c, answers[path])
		return false
	})
	s := h1Source(t, up.url(), nil)
	for path := range answers {
		_, err := s.Fetch(context.Background(), get(path))
		var se *Error
		require.True(t, errors.As(err, &se), "%s: %v", path, err)
		assert.Equal(t, http.StatusBadGateway, se.Status, "%s: %v", path, err)
	}

	// A body cut short of its length is an error, not a shorter page.
	short := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		return false
	})
	s = h1Source(t, short.url(), nil)
	m, err := s.Fetch(context.Background(), get("/"))
	require.NoError(t, err)
	_, err = io.ReadAll(m.Body)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// A header line longer than the connection's 8 KiB read buffer (a large
// Content-Security-Policy, say) is read whole, as net/http reads it: only the
// head's 1 MiB bounds it.
func TestH1LongHeaderLine(t *testing.T) {
	long := strings.Repeat("a", 20000)
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Long: "+long+"\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	s := h1Source(t, up.url(), nil)
	for range 2 { // and the connection is reused after it
		m, err := s.Fetch(context.Background(), get("/"))
		require.NoError(t, err)
		assert.Equal(t, long, m.Header.Get("X-Long"))
		body, err := io.ReadAll(m.Body)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(body))
		m.Body.Close()
	}
	assert.EqualValues(t, 1, up.accepts.Load(), "one connection for both requests")
}

// Cancelling the request stops a body read that waits on the upstream, and
// the half-read connection is not reused.
func TestH1CancelMidBody(t *testing.T) {
	release := make(chan struct{})
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		<-release
		return false
	})
	defer close(release)
	s := h1Source(t, up.url(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	m, err := s.Fetch(ctx, get("/"))
	require.NoError(t, err)
	buf := make([]byte, 3)
	_, err = io.ReadFull(m.Body, buf)
	require.NoError(t, err)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = m.Body.Read(make([]byte, 10))
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second)
	m.Body.Close()
	assert.Empty(t, s.h1.idle)
}

// A body closed before its end costs the connection; idle connections are
// closed once idle_conn_timeout passes.
func TestH1EarlyCloseAndIdleReaper(t *testing.T) {
	up := newRawUpstream(t, func(n int, head string, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef")
		return true
	})
	s := h1Source(t, up.url(), func(u *conf.Upstream) { u.IdleConnTimeout = conf.Duration(100 * time.Millisecond) })
	m, err := s.Fetch(context.Background(), get("/"))
	require.NoError(t, err)
	_, err = m.Body.Read(make([]byte, 2))
	require.NoError(t, err)
	m.Body.Close()
	m, err = s.Fetch(context.Background(), get("/"))
	require.NoError(t, err)
	assert.Equal(t, "abcdef", readAll(t, m))
	assert.Equal(t, int32(2), up.accepts.Load())
	s.h1.mu.Lock()
	assert.Len(t, s.h1.idle, 1)
	s.h1.mu.Unlock()
	require.Eventually(t, func() bool {
		s.h1.mu.Lock()
		defer s.h1.mu.Unlock()
		return len(s.h1.idle) == 0
	}, 5*time.Second, 20*time.Millisecond)
}

func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX: a\r\n b\r\n\r\n",
		"\r\nHTTP/1.1 304 Not Modified\r\nConnection: x, close\r\nX: y\r\n\r\n",
	} {
		f.Add(s, false)
	}
	for _, tc := range framingCases {
		f.Add(tc.answer, false)
	}
	f.Fuzz(func(t *testing.T, in string, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		var h httpmsg.Head
		err := readResponseHead(bufio.NewReaderSize(strings.NewReader(in), 8<<10), method, &h)
		if err != nil {
			return
		}
		// Where net/http reads the same head, it must agree on chunked
		// framing, and what it refuses for its transfer coding is refused.
		req, _ := http.NewRequest(method, "http://upstream/", nil)
		resp, nerr := http.ReadResponse(bufio.NewReader(strings.NewReader(in)), req)
		if nerr != nil && strings.Contains(nerr.Error(), "transfer encoding") {
			t.Fatalf("accepted a Transfer-Encoding net/http refuses: %v", nerr)
		}
		chunked := h.Framing == httpmsg.Chunked
		if nerr == nil && h.Framing != httpmsg.None && chunked != (len(resp.TransferEncoding) > 0) {
			t.Fatalf("chunked: %v here, %v in net/http", chunked, resp.TransferEncoding)
		}
		if h.Status < 200 || h.Status > 999 {
			t.Fatalf("status %d accepted", h.Status)
		}
		if chunked && h.Length >= 0 {
			t.Fatalf("both chunked and length %d", h.Length)
		}
		connection := h.Header.Values("Connection")
		for _, fl := range passedOn(h.Header.Clone()) {
			if !httpmsg.ValidName(fl.Name) || notForwarded(fl.Name) || strings.ContainsAny(fl.Value, "\r\n") {
				t.Fatalf("field %q: %q passed on", fl.Name, fl.Value)
			}
			for _, v := range connection {
				if httpmsg.HasToken(v, fl.Name) {
					t.Fatalf("field %q passed on although Connection: %q names it", fl.Name, v)
				}
			}
		}
	})
}

// FuzzRequestHead builds request heads from hostile params: every head
// that is built must parse as one request, carry no hop-by-hop field and
// none that its Connection field names.
func FuzzRequestHead(f *testing.F) {
	for _, s := range [][3]string{
		{"keep-alive, X-Secret", "HTTP_X_SECRET", "s"},
		{"x-secret ,  COOKIE", "HTTP_COOKIE", "a=b"},
		{"close, X-Forwarded-For", "HTTP_X_FORWARDED_FOR", "203.0.113.9"},
		{"Upgrade", "HTTP_UPGRADE", "h2c"},
		{"", "HTTP_TE", "trailers"},
		{"Content-Type", "CONTENT_TYPE", "text/plain"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	s, err := NewHTTP(httpUpstream("http://127.0.0.1:1/"))
	if err != nil {
		f.Fatal(err)
	}
	hs := s.(*httpSource)
	f.Fuzz(func(t *testing.T, connection, param, value string) {
		r := &Request{Params: map[string]string{"REQUEST_URI": "/", "HTTP_CONNECTION": connection, param: value,
			"HTTP_X_OTHER": "o", "REMOTE_ADDR": "192.0.2.1"}, ContentLength: -1}
		bp := new([]byte)
		q, err := hs.newH1Request(r, bp)
		if err != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(q.head))))
		if err != nil {
			t.Fatalf("head does not parse: %v\n%q", err, q.head)
		}
		for name := range req.Header {
			if notForwarded(name) || (httpmsg.HasToken(connection, name) && !strings.HasPrefix(name, "X-Forwarded-")) {
				t.Fatalf("%s forwarded (Connection: %q)", name, connection)
			}
		}
	})
}
