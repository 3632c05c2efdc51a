package bridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/fcgi-bridge/fcgi-bridge/sample"
)

func TestMain(m *testing.M) {
	testtransform.Run()
	// The embedded default runs "@self transform NAME"; in these tests
	// "@self" is the test binary, which answers like fcgi-bridge does.
	if len(os.Args) == 3 && os.Args[1] == "transform" {
		if err := sample.Run(os.Args[2], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// recorder is a fcgi.ResponseWriter that keeps what was written.
type recorder struct {
	mu     sync.Mutex
	header http.Header
	status int
	body   bytes.Buffer
	stderr bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(200)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.body.Write(p)
}
func (r *recorder) Stderr() io.Writer { return &r.stderr }
func (r *recorder) Flush() error      { return nil }

// tt writes a transform table running the test transform in mode.
func tt(name, mode string, extra string) string {
	cmd := testtransform.Command()
	q := make([]string, len(cmd))
	for i, c := range cmd {
		q[i] = strconv.Quote(c)
	}
	return fmt.Sprintf("[transform.%s]\ncommand = [%s]\nenv = { %s = %q }\nmin = 0\n%s\n", name,
		strings.Join(q, ", "), testtransform.EnvMode, mode, extra)
}

type fixture struct {
	b       *Bridge
	root    string
	app     *httptest.Server
	logs    *bytes.Buffer
	logMu   *sync.Mutex
	cleanup func()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	// Like nginx's root: the request path is looked up under the root as is.
	root := t.TempDir()
	dir := filepath.Join(root, "static")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "page.txt"), []byte("static text"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pic.png"), []byte("\x89PNG\r\n\x1a\nxx"), 0o644))
	mod := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "page.txt"), mod, mod))
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		switch r.URL.Path {
		case "/up/json":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"x":"y"}`)
		case "/up/missing":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			io.WriteString(w, `{"error":"nope"}`)
		case "/up/html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<p>html</p>`)
		case "/up/empty":
			w.WriteHeader(204)
		case "/up/gz":
			// An upstream that compresses whatever it is asked.
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("X-Got-Accept-Encoding", r.Header.Get("Accept-Encoding"))
			io.WriteString(w, "\x1f\x8bcompressed")
		}
	}))
	phpSock := filepath.Join(t.TempDir(), "php.sock")
	phpL, err := net.Listen("unix", phpSock)
	require.NoError(t, err)
	php := &fcgi.Server{Handler: fcgi.HandlerFunc(func(w fcgi.ResponseWriter, r *fcgi.Request) {
		// Stands in for php-fpm: answers with the script it was asked to run.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "PHPSESSID=1")
		w.WriteHeader(200)
		fmt.Fprintf(w, `{"script":%q}`, r.Params["SCRIPT_FILENAME"])
	})}
	go php.Serve(phpL)
	t.Cleanup(func() { php.Close() })
	catPath, err := exec.LookPath("cat")
	require.NoError(t, err)
	cfgText := tt("upper", testtransform.Upper, "max = 2") +
		tt("status", testtransform.Status, "") +
		tt("echo", testtransform.Cat, "") +
		tt("headers", testtransform.EchoHeaders, "") +
		tt("crash", testtransform.CrashAfterRead, "") +
		tt("garbage", testtransform.Garbage, "") +
		tt("hang", testtransform.Hang, "timeout = \"300ms\"\nkill_grace = \"100ms\"") +
		tt("busy", testtransform.Hang, "max = 1\nqueue = 0\nqueue_timeout = \"100ms\"\ntimeout = \"1s\"\nkill_grace = \"100ms\"") +
		fmt.Sprintf("[transform.cat]\ncommand = [%q]\nmin = 0\n", catPath) +
		"[transform.head]\nkind = \"oneshot\"\ncommand = [\"head\"]\nargs = [\"-c\", \"{n}\"]\nvars = { n = \"[0-9]{1,3}\" }\ncontent_type = \"text/x-head\"\n" +
		fmt.Sprintf(`
[upstream.static]
kind = "file"
root = %q

[upstream.app]
kind = "http"
url = %q

[upstream.php]
kind = "fastcgi"
address = "unix:%s"
params = { SCRIPT_FILENAME = "/srv/app/index.php" }

[[route]]
name = "php"
path = "/php/"
source = "php"
transform = ["upper"]

[[route]]
name = "auth"
role = "authorizer"
path = "/deny"
transform = ["status"]

[[route]]
name = "auth-allow"
role = "authorizer"
transform = ["echo"]
pass_params = ["REMOTE_USER"]

[[route]]
name = "filter"
role = "filter"
transform = ["upper"]

[[route]]
name = "json-bypass"
query = [{ name = "format", match = "^json$" }]

[[route]]
name = "accept-bypass"
header = [{ name = "Accept", match = "text/html", not = true }, { name = "Accept" }]

[[route]]
name = "static"
path = "/static"
source = "static"
transform = ["upper"]
source_content_type = ["text/*"]

[[route]]
name = "app"
path = "/up/"
source = "app"
transform = ["upper"]
source_status = [200]
source_content_type = ["application/json"]
content_type = "text/html; charset=utf-8"

[[route]]
name = "crash"
path = "/crash"
transform = ["crash"]

[[route]]
name = "crash-open"
path = "/open"
transform = ["crash"]
fail = "open"
content_type = "text/html; charset=utf-8"

[[route]]
name = "head"
path = "/head"
transform = ["head"]
send_request_headers = false

[[route]]
name = "garbage"
path = "/garbage"
transform = ["garbage"]

[[route]]
name = "hang"
path = "/hang"
transform = ["hang"]

[[route]]
name = "busy"
path = "/busy"
transform = ["busy"]

[[route]]
name = "chain"
path = "/chain"
transform = ["cat", "upper", "headers"]

[[route]]
name = "default"
transform = ["upper"]
`, root, app.URL, phpSock)
	cfg, err := conf.Parse("test.toml", []byte(cfgText))
	require.NoError(t, err, cfgText)
	logs := &bytes.Buffer{}
	mu := &sync.Mutex{}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: logs, mu: mu}, nil))
	b, err := New(cfg, WithLogger(logger))
	require.NoError(t, err)
	f := &fixture{b: b, root: root, app: app, logs: logs, logMu: mu}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, b.Close(ctx))
		app.Close()
	})
	return f
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (f *fixture) logText() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logs.String()
}

type req struct {
	role   fcgi.Role
	method string
	uri    string
	params map[string]string
	body   string
	data   string
}

func (f *fixture) do(t *testing.T, q req) *recorder {
	t.Helper()
	if q.role == 0 {
		q.role = fcgi.RoleResponder
	}
	if q.method == "" {
		q.method = "GET"
	}
	params := map[string]string{"REQUEST_METHOD": q.method, "REQUEST_URI": q.uri, "HTTP_HOST": "site.test",
		"SERVER_NAME": "site.test", "SERVER_PORT": "80", "REMOTE_ADDR": "192.0.2.1"}
	path, query, _ := strings.Cut(q.uri, "?")
	params["QUERY_STRING"] = query
	params["SCRIPT_NAME"] = path
	for k, v := range q.params {
		params[k] = v
	}
	r := &fcgi.Request{ID: 1, Role: q.role, Params: params, ContentLength: -1, DataLength: -1,
		Stdin: strings.NewReader(q.body), Data: strings.NewReader(q.data)}
	if q.body != "" {
		r.ContentLength = int64(len(q.body))
		params["CONTENT_LENGTH"] = strconv.Itoa(len(q.body))
	}
	if q.role == fcgi.RoleFilter {
		r.DataLength = int64(len(q.data))
	}
	w := newRecorder()
	f.b.ServeFCGI(w, r)
	return w
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		q      req
		status int
		body   string
		check  func(t *testing.T, w *recorder)
	}{
		{"default transforms the body", req{method: "POST", uri: "/x", body: "hello", params: map[string]string{"CONTENT_TYPE": "text/plain"}}, 200, "HELLO",
			func(t *testing.T, w *recorder) {
				assert.Equal(t, "text/plain", w.header.Get("Content-Type"))
				assert.Equal(t, "5", w.header.Get("Content-Length"))
			}},
		{"format=json bypasses", req{method: "POST", uri: "/x?format=json", body: `{"a":1}`}, 200, `{"a":1}`, nil},
		{"format=jsonp does not", req{method: "POST", uri: "/x?format=jsonp", body: `abc`}, 200, `ABC`, nil},
		{"Accept without html bypasses", req{method: "POST", uri: "/x", body: "abc", params: map[string]string{"HTTP_ACCEPT": "application/json"}}, 200, "abc", nil},
		{"Accept with html transforms", req{method: "POST", uri: "/x", body: "abc", params: map[string]string{"HTTP_ACCEPT": "text/html,*/*"}}, 200, "ABC", nil},
		{"filter role", req{role: fcgi.RoleFilter, uri: "/f.txt", data: "filtered", params: map[string]string{"SCRIPT_FILENAME": "/srv/f.txt"}}, 200, "FILTERED",
			func(t *testing.T, w *recorder) {
				assert.Equal(t, "text/plain; charset=utf-8", w.header.Get("Content-Type"))
			}},
		{"static text transformed", req{uri: "/static/page.txt"}, 200, "STATIC TEXT",
			func(t *testing.T, w *recorder) {
				assert.Equal(t, "Tue, 02 Jan 2024 03:04:05 GMT", w.header.Get("Last-Modified"))
			}},
		{"static png passes (content type condition)", req{uri: "/static/pic.png"}, 200, "\x89PNG\r\n\x1a\nxx",
			func(t *testing.T, w *recorder) { assert.Equal(t, "image/png", w.header.Get("Content-Type")) }},
		{"static 404 is content too (no status condition)", req{uri: "/static/none.txt"}, 404, "NOT FOUND\n", nil},
		{"dot segments leave the static route (default route, empty body)", req{uri: "/static/../etc/passwd"}, 200, "",
			func(t *testing.T, w *recorder) { assert.Empty(t, w.body.String()) }},
		{"upstream json transformed", req{uri: "/up/json"}, 200, `{"X":"Y"}`,
			func(t *testing.T, w *recorder) {
				assert.Equal(t, "text/html; charset=utf-8", w.header.Get("Content-Type"))
				assert.Equal(t, []string{"a=1", "b=2"}, w.header.Values("Set-Cookie"))
			}},
		{"upstream 404 passes (status condition)", req{uri: "/up/missing"}, 404, `{"error":"nope"}`,
			func(t *testing.T, w *recorder) {
				assert.Equal(t, "application/json", w.header.Get("Content-Type"))
				assert.Equal(t, []string{"a=1", "b=2"}, w.header.Values("Set-Cookie"))
			}},
		{"upstream not offered compression, compressed answer passes", req{uri: "/up/gz", params: map[string]string{"HTTP_ACCEPT_ENCODING": "gzip"}}, 200, "\x1f\x8bcompressed",
			func(t *testing.T, w *recorder) {
				assert.Empty(t, w.header.Get("X-Got-Accept-Encoding"))
				assert.Equal(t, "gzip", w.header.Get("Content-Encoding"))
				assert.Equal(t, "application/json", w.header.Get("Content-Type"))
			}},
		{"fastcgi upstream transformed", req{uri: "/php/x"}, 200, `{"SCRIPT":"/SRV/APP/INDEX.PHP"}`,
			func(t *testing.T, w *recorder) { assert.Equal(t, "PHPSESSID=1", w.header.Get("Set-Cookie")) }},
		{"upstream html passes (content type condition)", req{uri: "/up/html"}, 200, `<p>html</p>`, nil},
		{"upstream 204 has no body", req{uri: "/up/empty"}, 204, "",
			func(t *testing.T, w *recorder) { assert.Empty(t, w.header.Get("Content-Length")) }},
		{"one-shot with a query placeholder", req{method: "POST", uri: "/head?n=3", body: "abcdef"}, 200, "abc",
			func(t *testing.T, w *recorder) { assert.Equal(t, "text/x-head", w.header.Get("Content-Type")) }},
		{"chain", req{method: "POST", uri: "/chain", body: "abc"}, 200, "",
			func(t *testing.T, w *recorder) {
				assert.Contains(t, w.body.String(), "HTTP/1.1 200 OK")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, tc.q)
			assert.Equal(t, tc.status, w.status, w.body.String())
			if tc.body != "" {
				assert.Equal(t, tc.body, w.body.String())
			}
			if tc.check != nil {
				tc.check(t, w)
			}
		})
	}
	logs := f.logText()
	assert.Contains(t, logs, "route=static")
	assert.Contains(t, logs, "bytes_in=")
	assert.Contains(t, logs, "transform_time=")
}

func TestRequestHeadersReachTransform(t *testing.T) {
	f := newFixture(t)
	// The echo transform (cat mode) returns what it got; the X-Request-URL
	// it received is reserved and stripped from the reply, so look at the
	// chain's echo-headers stage instead.
	w := f.do(t, req{method: "POST", uri: "/chain?q=1", body: "abc", params: map[string]string{"HTTPS": "on"}})
	require.Equal(t, 200, w.status)
	assert.Contains(t, w.body.String(), "X-Request-URL: https://site.test/chain?q=1")
}

func TestFailures(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		q      req
		status int
		body   string
	}{
		{"crash", req{method: "POST", uri: "/crash", body: "abc"}, 502, ""},
		{"crash fail open", req{method: "POST", uri: "/open", body: "abc", params: map[string]string{"CONTENT_TYPE": "application/json"}}, 200, "abc"},
		{"one-shot refuses a bad value", req{method: "POST", uri: "/head?n=1;rm", body: "abcdef"}, 400, ""},
		{"garbage", req{method: "POST", uri: "/garbage", body: "abc"}, 502, ""},
		{"timeout", req{method: "POST", uri: "/hang", body: "abc"}, 504, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, tc.q)
			assert.Equal(t, tc.status, w.status, w.body.String())
			if tc.body != "" {
				assert.Equal(t, tc.body, w.body.String())
			}
			if tc.name == "crash fail open" {
				assert.Equal(t, "application/json", w.header.Get("Content-Type"), "fallback content keeps its own type")
			}
			if tc.status >= 500 {
				assert.Equal(t, "text/plain; charset=utf-8", w.header.Get("Content-Type"))
			}
		})
	}

	t.Run("saturated", func(t *testing.T) {
		first := make(chan *recorder)
		go func() { first <- f.do(t, req{method: "POST", uri: "/busy", body: "a"}) }()
		// Wait until the only process is busy hanging on the first request.
		require.Eventually(t, func() bool { return f.b.Stats()["busy"].Busy == 1 }, 10*time.Second, 10*time.Millisecond)
		w := f.do(t, req{method: "POST", uri: "/busy", body: "b"})
		assert.Equal(t, 503, w.status)
		assert.Equal(t, "1", w.header.Get("Retry-After"))
		assert.Equal(t, 504, (<-first).status)
	})

	t.Run("upstream unreachable", func(t *testing.T) {
		cfg, err := conf.Parse("u.toml", []byte(tt("upper", testtransform.Upper, "")+`
[upstream.down]
kind = "http"
url = "http://127.0.0.1:1/"
[[route]]
source = "down"
transform = ["upper"]
`))
		require.NoError(t, err)
		b, err := New(cfg)
		require.NoError(t, err)
		defer b.Close(context.Background())
		g := &fixture{b: b}
		w := g.do(t, req{uri: "/x"})
		assert.Equal(t, 502, w.status)
	})

	t.Run("short request body", func(t *testing.T) {
		r := &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, ContentLength: 10, DataLength: -1,
			Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/x", "CONTENT_LENGTH": "10"},
			Stdin:  strings.NewReader("short"), Data: strings.NewReader("")}
		w := newRecorder()
		f.b.ServeFCGI(w, r)
		assert.Equal(t, 400, w.status, f.logText())
	})
}

func TestHeadAnd304(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, req{method: "HEAD", uri: "/static/page.txt"})
	assert.Equal(t, 200, w.status)
	assert.Empty(t, w.body.String())
	assert.Empty(t, w.header.Get("Content-Length"), "a transformed representation has no known length")
	assert.Equal(t, "text/plain; charset=utf-8", w.header.Get("Content-Type"))

	w = f.do(t, req{method: "HEAD", uri: "/static/pic.png"})
	assert.Equal(t, 200, w.status)
	assert.Equal(t, "10", w.header.Get("Content-Length"), "untransformed: the true length")

	w = f.do(t, req{uri: "/static/page.txt", params: map[string]string{"HTTP_IF_MODIFIED_SINCE": "Tue, 02 Jan 2024 03:04:05 GMT"}})
	assert.Equal(t, 304, w.status)
	assert.Empty(t, w.body.String())
	assert.Empty(t, w.header.Get("Content-Length"))
	assert.Equal(t, "Tue, 02 Jan 2024 03:04:05 GMT", w.header.Get("Last-Modified"))
}

func TestAuthorizer(t *testing.T) {
	f := newFixture(t)
	assert.True(t, f.b.ServesRole(fcgi.RoleAuthorizer))
	w := f.do(t, req{role: fcgi.RoleAuthorizer, uri: "/private", params: map[string]string{
		"HTTP_VARIABLE_USER": "alice", "HTTP_ACCEPT": "text/html", "REMOTE_USER": "alice"}})
	assert.Equal(t, 200, w.status)
	assert.Equal(t, "alice", w.header.Get("Variable-User"))
	assert.Empty(t, w.header.Get("Accept"), "only Variable-* headers go back")
	assert.Empty(t, w.body.String())

	w = f.do(t, req{role: fcgi.RoleAuthorizer, uri: "/deny", params: map[string]string{"HTTP_X_TEST_STATUS": "403 Forbidden"}})
	assert.Equal(t, 403, w.status)

	w = f.do(t, req{role: fcgi.RoleAuthorizer, uri: "/deny", params: map[string]string{"HTTP_X_TEST_STATUS": "401 Unauthorized"}})
	assert.Equal(t, 401, w.status)
}

func TestNoRoute(t *testing.T) {
	cfg, err := conf.Parse("n.toml", []byte(`
[[route]]
path = "/only/"
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	defer b.Close(context.Background())
	assert.False(t, b.ServesRole(fcgi.RoleAuthorizer))
	assert.False(t, b.ServesRole(fcgi.RoleFilter))
	assert.True(t, b.ServesRole(fcgi.RoleResponder))
	f := &fixture{b: b}
	assert.Equal(t, 404, f.do(t, req{uri: "/elsewhere"}).status)
	assert.Equal(t, 403, f.do(t, req{role: fcgi.RoleAuthorizer, uri: "/x"}).status)
	w := f.do(t, req{method: "POST", uri: "/only/x", body: "as is"})
	assert.Equal(t, 200, w.status)
	assert.Equal(t, "as is", w.body.String())
}

func TestCloseWaitsForInFlight(t *testing.T) {
	cfg, err := conf.Parse("c.toml", []byte(tt("slow", testtransform.SlowReader, "")+`
[[route]]
transform = ["slow"]
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	f := &fixture{b: b}
	body := strings.Repeat("x", 300<<10) // ~300 ms through the slow reader
	done := make(chan *recorder)
	go func() { done <- f.do(t, req{method: "POST", uri: "/", body: body}) }()
	require.Eventually(t, func() bool { return b.Stats()["slow"].Busy == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Close(ctx))
	w := <-done
	assert.Equal(t, 200, w.status)
	assert.Equal(t, len(body), w.body.Len())

	// A request reaching a closed bridge (a reload race) is refused cleanly.
	w = f.do(t, req{method: "POST", uri: "/", body: "late"})
	assert.Equal(t, 503, w.status)
	assert.NotEmpty(t, w.header.Get("Retry-After"))
}

func TestEmbeddedDefault(t *testing.T) {
	b, err := New(conf.Default())
	require.NoError(t, err)
	f := &fixture{b: b}
	t.Cleanup(func() { b.Close(context.Background()) })
	c := served(t, f)

	r := wire(t, c, fcgi.RoleFilter, "GET", "/doc.txt", nil, "", "hello filter")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "HELLO FILTER", r.body)

	r = wire(t, c, fcgi.RoleResponder, "POST", "/page", map[string]string{"CONTENT_TYPE": "application/json"}, `{"a":1}`, "")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, []string{"text/html; charset=utf-8"}, r.header["content-type"])
	assert.Contains(t, r.body, "<")
	assert.Contains(t, r.body, "http://site.test/page", "the page shows the request URL it was sent")

	r = wire(t, c, fcgi.RoleResponder, "POST", "/page?format=json", map[string]string{"CONTENT_TYPE": "application/json"}, `{"a":1}`, "")
	assert.Equal(t, `{"a":1}`, r.body)
	r = wire(t, c, fcgi.RoleResponder, "POST", "/page", map[string]string{"CONTENT_TYPE": "application/json", "HTTP_ACCEPT": "application/json"}, `{"a":1}`, "")
	assert.Equal(t, `{"a":1}`, r.body)
	r = wire(t, c, fcgi.RoleResponder, "POST", "/page", map[string]string{"HTTP_ACCEPT": "text/html"}, `plain`, "")
	assert.Contains(t, r.body, "<")
}

func TestServerLimits(t *testing.T) {
	l := ServerLimits(conf.Default().Server)
	assert.Equal(t, 1024, l.MaxConns)
	assert.Equal(t, 256<<10, l.MaxParamsBytes)
	assert.Equal(t, 10*time.Second, l.ParamsTimeout)
}
