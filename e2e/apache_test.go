package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
)

// fileSite makes a document root with a text file, an HTML page, a secret
// beside (not under) the root, and a symlink pointing at the secret.
func fileSite(t *testing.T) (root string) {
	t.Helper()
	dir := peers.SocketDir(t) // world-readable: the bridge reads it, Apache never does
	root = filepath.Join(dir, "site")
	for name, content := range map[string]string{
		"site/hello.txt":     "hello from a file\n",
		"site/sub/page.html": "<p>a page</p>\n",
		"secret.txt":         "the secret outside the root\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../secret.txt", filepath.Join(root, "link.txt")); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestApacheFileSource: Apache mod_proxy_fcgi over a unix socket -> the
// bridge's file source -> the upper transform. 304 and 404 come from the
// file source; escapes out of the root are refused.
func TestApacheFileSource(t *testing.T) {
	root := fileSite(t)
	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[upstream.files]
kind = "file"
root = %q

[transform.upper]
command = ["@self", "transform", "upper"]

[[route]]
name = "files"
source = "files"
transform = ["upper"]
source_content_type = ["text/plain"]
`, root)
	})
	ap := peers.StartApache(t, peers.ApacheConfig{FastCGI: d.upstream(), EnableReuse: true})

	r := mustFetch(t, "GET", ap.URL("/hello.txt"), nil, nil)
	t.Logf("Apache -> bridge -> file -> upper: %d in %v", r.status, r.took)
	if r.status != 200 || r.body != "HELLO FROM A FILE\n" {
		t.Fatalf("transformed file: %d %q", r.status, r.body)
	}
	lm := r.header.Get("Last-Modified")
	if lm == "" {
		t.Fatalf("no Last-Modified from the file source: %v", r.header)
	}

	// Not text/plain: passes untouched with its true length.
	r = mustFetch(t, "GET", ap.URL("/sub/page.html"), nil, nil)
	if r.status != 200 || r.body != "<p>a page</p>\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("untransformed HTML: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}

	// If-Modified-Since: the file source answers 304 itself, no body.
	r = mustFetch(t, "GET", ap.URL("/hello.txt"), map[string]string{"If-Modified-Since": lm}, nil)
	if r.status != 304 || r.body != "" {
		t.Errorf("If-Modified-Since %s: %d %q, want 304 without a body", lm, r.status, r.body)
	}
	old := time.Now().Add(-24 * time.Hour).UTC().Format(http.TimeFormat)
	r = mustFetch(t, "GET", ap.URL("/hello.txt"), map[string]string{"If-Modified-Since": old}, nil)
	if r.status != 200 || r.body != "HELLO FROM A FILE\n" {
		t.Errorf("modified since %s: %d %q, want the transformed file", old, r.status, r.body)
	}

	r = mustFetch(t, "GET", ap.URL("/nope.txt"), nil, nil)
	if r.status != 404 {
		t.Errorf("missing file: %d, want 404", r.status)
	}

	// Escapes: whichever layer refuses them, the secret never comes back.
	for _, p := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt", "/link.txt"} {
		r, err := fetch(t, "GET", ap.URL(p), nil, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		t.Logf("GET %s through Apache: %d", p, r.status)
		if r.status < 400 || strings.Contains(strings.ToLower(r.body), "secret outside") {
			t.Errorf("GET %s: %d %q, want a refusal", p, r.status, r.body)
		}
	}
	// Apache normalises most of those itself, so ask the bridge directly
	// with the paths a careless or hostile FastCGI client could send.
	c := &fcgi.Client{Network: "unix", Address: d.socket, DialTimeout: 5 * time.Second}
	defer c.Close()
	for _, p := range []string{"/../secret.txt", "/sub/../../secret.txt", "/link.txt"} {
		status, body := fcgiGet(t, c, p)
		t.Logf("FastCGI SCRIPT_NAME=%s straight to the bridge: %d", p, status)
		if status != 403 || strings.Contains(strings.ToLower(body), "secret outside") {
			t.Errorf("FastCGI SCRIPT_NAME=%s: %d %q, want 403", p, status, body)
		}
	}
}

// fcgiGet sends a RESPONDER GET for path straight to the bridge.
func fcgiGet(t *testing.T, c *fcgi.Client, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, &fcgi.ClientRequest{Params: []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: "GET"}, {Name: "REQUEST_URI", Value: path},
		{Name: "SCRIPT_NAME", Value: path}, {Name: "DOCUMENT_URI", Value: path},
		{Name: "SERVER_NAME", Value: "localhost"}, {Name: "SERVER_PORT", Value: "80"},
		{Name: "HTTP_HOST", Value: "localhost"}, {Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "REMOTE_ADDR", Value: "127.0.0.1"},
	}})
	if err != nil {
		t.Fatalf("FastCGI GET %s: %v", path, err)
	}
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		t.Fatalf("FastCGI GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(cgi.Body)
	return cgi.Status, string(body)
}
