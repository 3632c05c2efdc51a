package bridge

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// served runs the fixture's bridge behind a real fcgi server and returns a
// client for it.
func served(t *testing.T, f *fixture) *fcgi.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := &fcgi.Server{Handler: f.b, Limits: ServerLimits(f.b.Config().Server)}
	go srv.Serve(l)
	c := &fcgi.Client{Network: "unix", Address: sock, KeepConn: true}
	t.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return c
}

type wireResult struct {
	status int
	header map[string][]string
	body   string
}

func wire(t *testing.T, c *fcgi.Client, role fcgi.Role, method, uri string, extra map[string]string, stdin, data string) wireResult {
	t.Helper()
	path, query, _ := strings.Cut(uri, "?")
	params := []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: method}, {Name: "REQUEST_URI", Value: uri}, {Name: "SCRIPT_NAME", Value: path},
		{Name: "QUERY_STRING", Value: query}, {Name: "HTTP_HOST", Value: "site.test"}, {Name: "SERVER_PORT", Value: "80"},
		{Name: "CONTENT_LENGTH", Value: strconv.Itoa(len(stdin))},
	}
	for k, v := range extra {
		params = append(params, fcgi.Pair{Name: k, Value: v})
	}
	req := &fcgi.ClientRequest{Role: role, Params: params, Stdin: strings.NewReader(stdin)}
	if role == fcgi.RoleFilter {
		req.Params = append(req.Params, fcgi.Pair{Name: "FCGI_DATA_LENGTH", Value: strconv.Itoa(len(data))})
		req.Data = strings.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, req)
	require.NoError(t, err)
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	require.NoError(t, err)
	body, err := io.ReadAll(cgi.Body)
	require.NoError(t, err)
	h := map[string][]string{}
	for _, p := range cgi.Header {
		h[strings.ToLower(p.Name)] = append(h[strings.ToLower(p.Name)], p.Value)
	}
	return wireResult{status: cgi.Status, header: h, body: string(body)}
}

func TestThroughFCGIServer(t *testing.T) {
	f := newFixture(t)
	c := served(t, f)

	r := wire(t, c, fcgi.RoleResponder, "POST", "/x", map[string]string{"CONTENT_TYPE": "text/plain"}, "hello", "")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "HELLO", r.body)
	assert.Equal(t, []string{"5"}, r.header["content-length"])

	r = wire(t, c, fcgi.RoleResponder, "POST", "/x?format=json", nil, `{"a":1}`, "")
	assert.Equal(t, `{"a":1}`, r.body)

	r = wire(t, c, fcgi.RoleFilter, "GET", "/doc.txt", map[string]string{"SCRIPT_FILENAME": "/srv/doc.txt"}, "", "filter me")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "FILTER ME", r.body)

	r = wire(t, c, fcgi.RoleResponder, "GET", "/up/json", nil, "", "")
	assert.Equal(t, `{"X":"Y"}`, r.body)
	assert.Equal(t, []string{"a=1", "b=2"}, r.header["set-cookie"])
	assert.Equal(t, []string{"text/html; charset=utf-8"}, r.header["content-type"])

	r = wire(t, c, fcgi.RoleResponder, "HEAD", "/static/page.txt", nil, "", "")
	assert.Equal(t, 200, r.status)
	assert.Empty(t, r.body)

	r = wire(t, c, fcgi.RoleResponder, "GET", "/static/page.txt", map[string]string{"HTTP_IF_MODIFIED_SINCE": "Tue, 02 Jan 2024 03:04:05 GMT"}, "", "")
	assert.Equal(t, 304, r.status)

	r = wire(t, c, fcgi.RoleResponder, "POST", "/crash", nil, "abc", "")
	assert.Equal(t, 502, r.status)

	r = wire(t, c, fcgi.RoleAuthorizer, "GET", "/private", map[string]string{"HTTP_VARIABLE_USER": "alice"}, "", "")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, []string{"alice"}, r.header["variable-user"])

	r = wire(t, c, fcgi.RoleAuthorizer, "GET", "/deny", map[string]string{"HTTP_X_TEST_STATUS": "403 Forbidden"}, "", "")
	assert.Equal(t, 403, r.status)

	big := strings.Repeat("abcdefgh", 256<<10) // 2 MiB streams through the pooled transform
	r = wire(t, c, fcgi.RoleResponder, "POST", "/x", nil, big, "")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, len(big), len(r.body))
	assert.Equal(t, strings.ToUpper(big[:64]), r.body[:64])
}
