package source

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

func readAll(t *testing.T, m *httpmsg.Message) string {
	t.Helper()
	if m.Body == nil {
		return ""
	}
	b, err := io.ReadAll(m.Body)
	require.NoError(t, err)
	require.NoError(t, m.Body.Close())
	return string(b)
}

func TestData(t *testing.T) {
	stdin := strings.NewReader("ignored")
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	r := &Request{Role: fcgi.RoleFilter, Params: map[string]string{"SCRIPT_FILENAME": "/srv/a.json"},
		Stdin: stdin, Data: strings.NewReader("{\"a\":1}"), DataLength: 7, DataLastMod: mod}
	m, err := NewData("application/octet-stream").Fetch(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, 0, stdin.Len(), "stdin drained before data")
	assert.Equal(t, int64(7), m.Length)
	assert.Equal(t, "application/json", m.Header.Get("Content-Type"))
	assert.Equal(t, "Mon, 06 May 2024 07:08:09 GMT", m.Header.Get("Last-Modified"))
	assert.Equal(t, `{"a":1}`, readAll(t, m))

	// A data stream shorter than FCGI_DATA_LENGTH is an error, not a short body.
	r = &Request{Role: fcgi.RoleFilter, Params: map[string]string{"FCGI_DATA_CONTENT_TYPE": "text/x-a"},
		Data: strings.NewReader("abc"), DataLength: 10}
	m, err = NewData("application/octet-stream").Fetch(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, "text/x-a", m.Header.Get("Content-Type"))
	_, err = io.ReadAll(m.Body)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	// The client's copy is current: 304 from FCGI_DATA_LAST_MOD, data unread.
	data := strings.NewReader("unread")
	r = &Request{Role: fcgi.RoleFilter, Params: map[string]string{"HTTP_IF_MODIFIED_SINCE": "Mon, 06 May 2024 07:08:09 GMT"},
		Data: data, DataLength: 6, DataLastMod: mod}
	m, err = NewData("text/plain").Fetch(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, 304, m.Status)
	assert.Nil(t, m.Body)
	assert.Equal(t, 6, data.Len())
	r.Params["HTTP_IF_MODIFIED_SINCE"] = "Mon, 06 May 2024 07:08:08 GMT"
	m, err = NewData("text/plain").Fetch(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, 200, m.Status)
	assert.Equal(t, "unread", readAll(t, m))

	r = &Request{Role: fcgi.RoleFilter, Params: map[string]string{}, Data: strings.NewReader("xyz"), DataLength: -1}
	m, err = NewData("text/plain").Fetch(context.Background(), r)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), m.Length)
	assert.Equal(t, "text/plain", m.Header.Get("Content-Type"))
	assert.Equal(t, "xyz", readAll(t, m))
}

func TestBody(t *testing.T) {
	tests := []struct {
		name    string
		params  map[string]string
		length  int64
		body    string
		wantLen int64
		want    string
		wantCT  string
	}{
		{"with length", map[string]string{"CONTENT_TYPE": "application/json"}, 4, "abcdEXTRA", 4, "abcd", "application/json"},
		{"no length", map[string]string{}, -1, "abc", -1, "abc", "application/octet-stream"},
		{"nginx chunked keeps CONTENT_LENGTH", map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}, 3, "abcdef", -1, "abcdef", "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewBody("body", "application/octet-stream").Fetch(context.Background(),
				&Request{Params: tt.params, ContentLength: tt.length, Stdin: strings.NewReader(tt.body)})
			require.NoError(t, err)
			assert.Equal(t, tt.wantLen, m.Length)
			assert.Equal(t, tt.wantCT, m.Header.Get("Content-Type"))
			assert.Equal(t, tt.want, readAll(t, m))
		})
	}
}

func TestRequestDescription(t *testing.T) {
	m, err := NewRequestDescription().Fetch(context.Background(), &Request{Role: fcgi.RoleAuthorizer, Params: map[string]string{
		"HTTP_AUTHORIZATION": "Basic eA==", "HTTP_CONNECTION": "close", "REQUEST_METHOD": "GET", "HTTP_PROXY": "evil"}})
	require.NoError(t, err)
	assert.Equal(t, 200, m.Status)
	assert.Equal(t, httpmsg.Header{{Name: "Authorization", Value: "Basic eA=="}}, m.Header)
	assert.Equal(t, "", readAll(t, m))
}

func TestParams(t *testing.T) {
	p := map[string]string{"HTTPS": "on", "HTTP_HOST": "example.org", "REQUEST_URI": "/a%20b?x=1", "QUERY_STRING": "x=1"}
	assert.Equal(t, Target{Method: "GET", Scheme: "https", Host: "example.org", URI: "/a%20b?x=1", Path: "/a b", Query: "x=1"}, NewTarget(p))
	assert.Equal(t, "https://example.org/a%20b?x=1", NewTarget(p).URL())
	p = map[string]string{"SERVER_NAME": "h", "SERVER_PORT": "8080", "SCRIPT_NAME": "/s", "PATH_INFO": "/p", "QUERY_STRING": "q"}
	assert.Equal(t, "http://h:8080/s/p?q", NewTarget(p).URL())
	p = map[string]string{"SERVER_NAME": "h", "SERVER_PORT": "443", "REQUEST_SCHEME": "https"}
	assert.Equal(t, "https://h/", NewTarget(p).URL())
	// nginx's DOCUMENT_URI is decoded; the URI rebuilt from it is escaped again.
	p = map[string]string{"REQUEST_METHOD": "HEAD", "DOCUMENT_URI": "/a b", "QUERY_STRING": "y=2"}
	assert.Equal(t, Target{Method: "HEAD", Scheme: "http", Host: "localhost", URI: "/a%20b?y=2", Path: "/a b", Query: "y=2"}, NewTarget(p))
	// Without QUERY_STRING the query is the URI's; with it, even empty, it
	// is QUERY_STRING. A path that does not decode stays as it came.
	p = map[string]string{"REQUEST_URI": "/%zz?a=1"}
	assert.Equal(t, "a=1", NewTarget(p).Query)
	assert.Equal(t, "/%zz", NewTarget(p).Path)
	p["QUERY_STRING"] = ""
	assert.Equal(t, "", NewTarget(p).Query)
	n, ok := HeaderName("HTTP_ACCEPT_LANGUAGE")
	assert.True(t, ok)
	assert.Equal(t, "Accept-Language", n)
	assert.Equal(t, "HTTP_ACCEPT_LANGUAGE", ParamName("accept-language"))
}

func fileUpstream(t *testing.T) (*conf.Upstream, string) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "www")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "dir"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "noindex"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, ".git"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, ".well-known"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, ".git", "config"), []byte("secret"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, ".env"), []byte("secret"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, ".well-known", "token"), []byte("tok"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(root, "page.html"), filepath.Join(root, "abs-in")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "page.html"), []byte("<p>hi</p>"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "data.json"), []byte(`{"a":1}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "noext"), []byte("plain words"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "dir", "index.html"), []byte("index"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o644))
	require.NoError(t, os.Symlink("../secret", filepath.Join(root, "out-rel")))
	require.NoError(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(root, "out-abs")))
	require.NoError(t, os.Symlink(base, filepath.Join(root, "outdir")))
	require.NoError(t, os.Symlink("page.html", filepath.Join(root, "in-link")))
	mod := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(root, "page.html"), mod, mod))
	u := &conf.Upstream{Name: "static", Kind: conf.UpstreamFile, Root: root, Index: "index.html"}
	return u, root
}

// TestFile runs the same requests through both ways of opening files: one
// openat2 (Linux 5.6 and later) and os.Root (elsewhere, and where a seccomp
// filter refuses openat2).
func TestFile(t *testing.T) {
	t.Run("openat2", func(t *testing.T) { testFile(t, true) })
	t.Run("os.Root", func(t *testing.T) { testFile(t, false) })
}

func testFile(t *testing.T, openat2 bool) {
	u, _ := fileUpstream(t)
	src, err := NewFile(u)
	require.NoError(t, err)
	defer src.Close()
	fs := src.(*fileSource)
	if openat2 && fs.fast == nil {
		t.Skip("openat2 is not available here")
	}
	if !openat2 && fs.fast != nil {
		fs.fast.close()
		fs.fast = nil
	}
	tests := []struct {
		name   string
		params map[string]string
		status int
		ct     string
		body   string
	}{
		{"html", map[string]string{"SCRIPT_NAME": "/page.html"}, 200, "text/html; charset=utf-8", "<p>hi</p>"},
		{"document uri", map[string]string{"DOCUMENT_URI": "/data.json"}, 200, "application/json", `{"a":1}`},
		{"request uri", map[string]string{"REQUEST_URI": "/data.json?x=1"}, 200, "application/json", `{"a":1}`},
		{"script+path info", map[string]string{"SCRIPT_NAME": "/dir", "PATH_INFO": "/index.html"}, 200, "text/html; charset=utf-8", "index"},
		{"sniffed", map[string]string{"SCRIPT_NAME": "/noext"}, 200, "text/plain; charset=utf-8", "plain words"},
		{"index", map[string]string{"SCRIPT_NAME": "/dir/"}, 200, "text/html; charset=utf-8", "index"},
		{"link inside", map[string]string{"SCRIPT_NAME": "/in-link"}, 200, "", "<p>hi</p>"},
		{"missing", map[string]string{"SCRIPT_NAME": "/nope"}, 404, "", ""},
		{"dir without index", map[string]string{"SCRIPT_NAME": "/noindex/"}, 404, "", ""},
		{"dotdot", map[string]string{"SCRIPT_NAME": "/../secret"}, 403, "", ""},
		{"dotdot inside", map[string]string{"SCRIPT_NAME": "/dir/../page.html"}, 403, "", ""},
		{"encoded dotdot", map[string]string{"REQUEST_URI": "/%2e%2e/secret"}, 403, "", ""},
		{"symlink out relative", map[string]string{"SCRIPT_NAME": "/out-rel"}, 403, "", ""},
		{"symlink out absolute", map[string]string{"SCRIPT_NAME": "/out-abs"}, 403, "", ""},
		{"symlinked dir out", map[string]string{"SCRIPT_NAME": "/outdir/secret"}, 403, "", ""},
		{"hidden file", map[string]string{"SCRIPT_NAME": "/.env"}, 403, "", ""},
		{"hidden dir", map[string]string{"SCRIPT_NAME": "/.git/config"}, 403, "", ""},
		{"well-known", map[string]string{"SCRIPT_NAME": "/.well-known/token"}, 200, "", "tok"},
		{"absolute symlink even inside", map[string]string{"SCRIPT_NAME": "/abs-in"}, 403, "", ""},
		{"post", map[string]string{"SCRIPT_NAME": "/page.html", "REQUEST_METHOD": "POST"}, 405, "", ""},
		{"not modified", map[string]string{"SCRIPT_NAME": "/page.html", "HTTP_IF_MODIFIED_SINCE": "Tue, 02 Jan 2024 03:04:05 GMT"}, 304, "", ""},
		{"modified since", map[string]string{"SCRIPT_NAME": "/page.html", "HTTP_IF_MODIFIED_SINCE": "Tue, 02 Jan 2024 03:04:04 GMT"}, 200, "", "<p>hi</p>"},
		{"head", map[string]string{"SCRIPT_NAME": "/page.html", "REQUEST_METHOD": "HEAD"}, 200, "text/html; charset=utf-8", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := src.Fetch(context.Background(), &Request{Params: tt.params, Stdin: strings.NewReader("")})
			require.NoError(t, err)
			assert.Equal(t, tt.status, m.Status)
			if tt.ct != "" {
				assert.Equal(t, tt.ct, m.Header.Get("Content-Type"))
			}
			body := readAll(t, m)
			if tt.status == 200 || tt.status == 304 {
				assert.Equal(t, tt.body, body)
				assert.NotEmpty(t, m.Header.Get("Last-Modified"))
			}
			assert.NotContains(t, body, "secret")
			if tt.status == 304 {
				assert.Nil(t, m.Body)
			}
			if tt.name == "head" {
				assert.Nil(t, m.Body)
				assert.Equal(t, int64(9), m.Length)
			}
			if tt.name == "html" {
				assert.Equal(t, int64(9), m.Length)
				assert.Equal(t, "Tue, 02 Jan 2024 03:04:05 GMT", m.Header.Get("Last-Modified"))
			}
		})
	}
	_, err = NewFile(&conf.Upstream{Name: "x", Root: "/nonexistent/root"})
	require.Error(t, err)
}

func httpUpstream(url string) *conf.Upstream {
	return &conf.Upstream{Name: "app", Kind: conf.UpstreamHTTP, URL: url, KeepAlive: true, MaxIdleConns: 4,
		ConnectTimeout: conf.Duration(time.Second), ResponseTimeout: conf.Duration(time.Second), IdleConnTimeout: conf.Duration(time.Minute)}
}

func TestHTTP(t *testing.T) {
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "hop")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	src, err := NewHTTP(httpUpstream(srv.URL + "/base/"))
	require.NoError(t, err)
	defer src.Close()
	params := map[string]string{
		"REQUEST_METHOD": "POST", "REQUEST_URI": "/p/q%2Fr?x=1&y=2", "HTTP_HOST": "site.example",
		"HTTP_ACCEPT": "text/html", "HTTP_X_FORWARDED_FOR": "10.0.0.1", "REMOTE_ADDR": "192.0.2.7",
		"HTTPS": "on", "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5", "HTTP_CONNECTION": "keep-alive",
		"HTTP_PROXY": "http://evil/",
	}
	m, err := src.Fetch(context.Background(), &Request{Params: params, ContentLength: 5, Stdin: strings.NewReader("hello")})
	require.NoError(t, err)
	assert.Equal(t, 201, m.Status)
	assert.Equal(t, []string{"a=1", "b=2"}, m.Header.Values("Set-Cookie"))
	assert.False(t, m.Header.Has("Connection"))
	assert.False(t, m.Header.Has("X-Private"), "headers named by Connection are hop-by-hop")
	assert.False(t, m.Header.Has("Content-Length"))
	assert.Equal(t, int64(11), m.Length)
	assert.Equal(t, `{"ok":true}`, readAll(t, m))

	require.NotNil(t, got)
	assert.Equal(t, "POST", got.Method)
	assert.Equal(t, "/base/p/q%2Fr", got.URL.EscapedPath())
	assert.Equal(t, "x=1&y=2", got.URL.RawQuery)
	assert.Equal(t, "site.example", got.Host)
	assert.Equal(t, "text/html", got.Header.Get("Accept"))
	assert.Equal(t, "10.0.0.1, 192.0.2.7", got.Header.Get("X-Forwarded-For"))
	assert.Equal(t, "https", got.Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, "site.example", got.Header.Get("X-Forwarded-Host"))
	assert.Equal(t, "text/plain", got.Header.Get("Content-Type"))
	assert.Empty(t, got.Header.Get("Proxy"))
	assert.Empty(t, got.Header.Get("User-Agent"))
	assert.Equal(t, int64(5), got.ContentLength)
	assert.Equal(t, "hello", gotBody)

	// Chunked request body of unknown length is streamed.
	params = map[string]string{"REQUEST_METHOD": "PUT", "REQUEST_URI": "/c"}
	m, err = src.Fetch(context.Background(), &Request{Params: params, ContentLength: -1, Stdin: strings.NewReader("streamed")})
	require.NoError(t, err)
	readAll(t, m)
	assert.Equal(t, "streamed", gotBody)
	assert.Equal(t, int64(-1), got.ContentLength)

	// A transform will read the body: the upstream is not offered compression.
	params = map[string]string{"REQUEST_URI": "/e", "HTTP_ACCEPT_ENCODING": "gzip"}
	m, err = src.Fetch(context.Background(), &Request{Params: params, ContentLength: -1, Identity: true})
	require.NoError(t, err)
	readAll(t, m)
	assert.Empty(t, got.Header.Get("Accept-Encoding"))
	m, err = src.Fetch(context.Background(), &Request{Params: params, ContentLength: -1})
	require.NoError(t, err)
	readAll(t, m)
	assert.Equal(t, "gzip", got.Header.Get("Accept-Encoding"))

	// HEAD: no body, length kept.
	params = map[string]string{"REQUEST_METHOD": "HEAD", "REQUEST_URI": "/h"}
	m, err = src.Fetch(context.Background(), &Request{Params: params, ContentLength: -1, Stdin: strings.NewReader("")})
	require.NoError(t, err)
	assert.Nil(t, m.Body)
	assert.Equal(t, int64(0), got.ContentLength, "a GET/HEAD without body is not sent chunked")
}

func TestHTTPErrors(t *testing.T) {
	// Unreachable: a port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	src, err := NewHTTP(httpUpstream("http://" + addr + "/"))
	require.NoError(t, err)
	_, err = src.Fetch(context.Background(), &Request{Params: map[string]string{"REQUEST_URI": "/"}})
	var se *Error
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, 502, se.Status)

	// Slow headers: 504.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	u := httpUpstream(slow.URL)
	u.ResponseTimeout = conf.Duration(100 * time.Millisecond)
	src, err = NewHTTP(u)
	require.NoError(t, err)
	_, err = src.Fetch(context.Background(), &Request{Params: map[string]string{"REQUEST_URI": "/"}})
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, 504, se.Status)
	assert.True(t, se.Timeout())

	// The web server went away: the context error, not a status.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = src.Fetch(ctx, &Request{Params: map[string]string{"REQUEST_URI": "/"}})
	require.Error(t, err)
	assert.False(t, errors.As(err, &se), "%v", err)
}

// A FIFO under the root is not content: it is refused at once, not left
// blocking the request until some process opens it for writing.
func TestFileFIFORefused(t *testing.T) {
	u, root := fileUpstream(t)
	fifo := filepath.Join(root, "pipe")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	src, err := NewFile(u)
	require.NoError(t, err)
	defer src.Close()
	done := make(chan int, 1)
	go func() {
		m, err := src.Fetch(context.Background(), &Request{Params: map[string]string{"SCRIPT_NAME": "/pipe"}})
		if err != nil {
			done <- -1
			return
		}
		if m.Body != nil {
			m.Body.Close()
		}
		done <- m.Status
	}()
	select {
	case status := <-done:
		assert.Equal(t, http.StatusForbidden, status)
	case <-time.After(10 * time.Second):
		// Release the blocked open so the goroutine ends with the test.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			w.Close()
		}
		<-done
		t.Fatal("opening a FIFO under the root blocked the request")
	}
}
