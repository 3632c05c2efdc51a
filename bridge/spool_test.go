package bridge

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// spoolBridge builds a bridge whose "/buffered" route spools the body (the
// built-in body source) and whose "/streamed" route does not, both into the
// echo-headers transform, which answers with the head it received.
func spoolBridge(t *testing.T, dir string) *fixture {
	t.Helper()
	cfg, err := conf.Parse("spool.toml", []byte(`
[server]
spool_dir = "`+dir+`"
spool_memory = "1KiB"
max_body = "64KiB"

`+tt("headers", testtransform.EchoHeaders, "")+tt("cat", testtransform.Cat, "")+`
[upstream.live]
kind = "body"
request_buffering = false

[[route]]
name = "streamed"
path = "/streamed"
source = "live"
transform = ["headers"]

[[route]]
name = "cat"
path = "/cat"
transform = ["cat"]

[[route]]
name = "buffered"
transform = ["headers"]
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close(t.Context()) })
	return &fixture{b: b}
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

func TestRequestBuffering(t *testing.T) {
	dir := t.TempDir()
	f := spoolBridge(t, dir)
	chunked := map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}

	// A chunked body reaches the transform with its true length when it
	// is buffered, in memory or through a file, and chunked when streamed.
	for _, size := range []int{10, 40 << 10} {
		body := strings.Repeat("b", size)
		w := f.doChunked(t, "/buffered", body, chunked)
		require.Equal(t, 200, w.status, w.body.String())
		assert.Contains(t, w.body.String(), "Content-Length: "+strconv.Itoa(size))
		w = f.doChunked(t, "/streamed", body, chunked)
		require.Equal(t, 200, w.status, w.body.String())
		assert.Contains(t, w.body.String(), "Transfer-Encoding: chunked")
	}
	// The body itself arrives whole through a spool file.
	body := strings.Repeat("0123456789", 5<<10)
	w := f.doChunked(t, "/cat", body, chunked)
	require.Equal(t, 200, w.status)
	assert.Equal(t, body, w.body.String())

	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing is left in spool_dir")
}

func TestRequestBufferingFailures(t *testing.T) {
	dir := t.TempDir()
	f := spoolBridge(t, dir)
	fds := fdCount(t)

	// Over max_body, declared or chunked: 413, no transform runs.
	big := strings.Repeat("x", 100<<10)
	w := f.do(t, req{method: "POST", uri: "/", body: big})
	assert.Equal(t, 413, w.status)
	w = f.doChunked(t, "/", big, map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"})
	assert.Equal(t, 413, w.status)

	// Shorter than CONTENT_LENGTH, as the fcgi server reports it: 400.
	r := &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, ContentLength: 5000, DataLength: -1,
		Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/", "CONTENT_LENGTH": "5000"},
		Stdin:  io.MultiReader(strings.NewReader(strings.Repeat("s", 2000)), errReader{&fcgi.LengthError{Stream: "FCGI_STDIN", Param: "CONTENT_LENGTH", Declared: 5000, Received: 2000}}),
		Data:   strings.NewReader("")}
	w = newRecorder()
	f.b.ServeFCGI(w, r)
	assert.Equal(t, 400, w.status)

	// A body that ends short of CONTENT_LENGTH without an error: 400.
	r = &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, ContentLength: 5000, DataLength: -1,
		Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/", "CONTENT_LENGTH": "5000"},
		Stdin:  bytes.NewReader(make([]byte, 3000)), Data: strings.NewReader("")}
	w = newRecorder()
	f.b.ServeFCGI(w, r)
	assert.Equal(t, 400, w.status)

	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing is left in spool_dir")
	assert.Equal(t, fds, fdCount(t), "no spool file left open")
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// doChunked sends body without CONTENT_LENGTH, as nginx passes a chunked
// request.
func (f *fixture) doChunked(t *testing.T, uri, body string, params map[string]string) *recorder {
	t.Helper()
	p := map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": uri, "SCRIPT_NAME": uri, "CONTENT_LENGTH": ""}
	for k, v := range params {
		p[k] = v
	}
	r := &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, Params: p, ContentLength: -1, DataLength: -1,
		Stdin: strings.NewReader(body), Data: strings.NewReader("")}
	w := newRecorder()
	f.b.ServeFCGI(w, r)
	return w
}

// spoolFiles lists this process's descriptors open on files in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			out = append(out, target)
		}
	}
	return out
}

// TestRequestBufferingClientAbort: the web server aborts while the body is
// being spooled to a file: the request ends at once and leaves no file,
// neither open nor in the directory.
func TestRequestBufferingClientAbort(t *testing.T) {
	dir := t.TempDir()
	f := spoolBridge(t, dir)
	c := served(t, f)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(ctx, &fcgi.ClientRequest{Params: []fcgi.Pair{{Name: "REQUEST_METHOD", Value: "POST"},
			{Name: "REQUEST_URI", Value: "/"}, {Name: "CONTENT_LENGTH", Value: "60000"}}, Stdin: pr})
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Stdout)
			resp.Stdout.Close()
		}
		done <- err
	}()
	_, err := pw.Write(make([]byte, 20000))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(spoolFiles(t, dir)) == 1 }, 10*time.Second, time.Millisecond,
		"the body goes to a spool file")
	cancel()
	pw.CloseWithError(context.Canceled)
	<-done
	require.Eventually(t, func() bool { return f.b.active.Load() == 0 }, 10*time.Second, time.Millisecond)
	assert.Empty(t, spoolFiles(t, dir), "spool file still open")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents)
}
