package source

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// peerParams returns the params of the first request in a transcript that
// fcgi's interop tests recorded from a real web server.
func peerParams(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "fcgi", "testdata", "peers", name+".txt"))
	require.NoError(t, err)
	defer f.Close()
	params := map[string]string{}
	requests := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "request id=") {
			requests++
			continue
		}
		if requests != 1 || !strings.HasPrefix(line, "    ") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		uq, err := strconv.Unquote(v)
		require.NoError(t, err, line)
		params[k] = uq
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, params, name)
	return params
}

// TestURLFromPeers: X-Request-URL carries the port the client used, with
// the params each web server really sends, with and without a Host header.
func TestURLFromPeers(t *testing.T) {
	for _, tc := range []struct {
		peer   string
		want   string // with the client's Host header
		noHost string // the same request without one (HTTP/1.0)
	}{
		{"nginx-tcp", "http://127.0.0.1:44355/echo?i=0", "http://localhost:44355/echo?i=0"},
		{"nginx-unix", "http://127.0.0.1:40625/", "http://localhost:40625/"},
		{"apache-tcp", "http://127.0.0.1:43295/echo?i=0", "http://127.0.0.1:43295/echo?i=0"},
		{"lighttpd-tcp", "http://127.0.0.1:38881/", "http://127.0.0.1:38881/"},
		// HAProxy puts the port into SERVER_NAME itself.
		{"haproxy-mpxs", "http://127.0.0.1:36291/", "http://127.0.0.1:36291/"},
	} {
		t.Run(tc.peer, func(t *testing.T) {
			p := peerParams(t, tc.peer)
			u := NewTarget(p).URL()
			assert.True(t, strings.HasPrefix(u, tc.want), "%s: got %s, want %s…", tc.peer, u, tc.want)
			delete(p, "HTTP_HOST")
			u = NewTarget(p).URL()
			assert.True(t, strings.HasPrefix(u, tc.noHost), "%s without Host: got %s, want %s…", tc.peer, u, tc.noHost)
		})
	}
}

func TestHost(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"HTTP_HOST": "example.org:8443", "HTTPS": "on", "SERVER_PORT": "8443"}, "example.org:8443"},
		// The client's Host is kept as sent, default port or not.
		{map[string]string{"HTTP_HOST": "example.org:80", "SERVER_NAME": "example.org", "SERVER_PORT": "80"}, "example.org:80"},
		{map[string]string{"SERVER_NAME": "example.org", "SERVER_PORT": "80"}, "example.org"},
		{map[string]string{"SERVER_NAME": "example.org", "SERVER_PORT": "443", "HTTPS": "on"}, "example.org"},
		{map[string]string{"SERVER_NAME": "example.org", "SERVER_PORT": "443", "REQUEST_SCHEME": "https"}, "example.org"},
		{map[string]string{"SERVER_NAME": "example.org", "SERVER_PORT": "80", "HTTPS": "on"}, "example.org:80"},
		{map[string]string{"SERVER_NAME": "example.org", "SERVER_PORT": "8080"}, "example.org:8080"},
		{map[string]string{"SERVER_NAME": "example.org:8080", "SERVER_PORT": "8080"}, "example.org:8080"},
		{map[string]string{"SERVER_ADDR": "::1", "SERVER_PORT": "8080"}, "[::1]:8080"},
		{map[string]string{"SERVER_NAME": "[::1]:8080"}, "[::1]:8080"},
		{map[string]string{}, "localhost"},
		// A Host header that would change what the URL means is not used.
		{map[string]string{"HTTP_HOST": "evil.test/x?", "SERVER_NAME": "site.test", "SERVER_PORT": "8080"}, "site.test:8080"},
		{map[string]string{"HTTP_HOST": "user@evil.test", "SERVER_NAME": "site.test", "SERVER_PORT": "80"}, "site.test"},
	} {
		assert.Equal(t, tc.want, NewTarget(tc.params).Host, "%v", tc.params)
	}
}
