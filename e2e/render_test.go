package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// requireRenderer returns the node binary and the renderer's directory,
// checking that npm ci has installed subprocess-middleware.
func requireRenderer(t testing.TB) (node, dir string) {
	t.Helper()
	node = testenv.Require(t, "node")
	dir = filepath.Join(repoRoot, "testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "subprocess-middleware")); err != nil {
		testenv.Missing(t, "testdata/node/node_modules lacks subprocess-middleware (run npm ci in testdata/node)")
	}
	return node, dir
}

// jsonApp is the upstream HTTP application: it answers JSON with the
// status the path asks for and several cookies, the way an API behind a
// renderer does.
func jsonApp(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		switch {
		case strings.HasPrefix(r.URL.Path, "/missing"):
			status = http.StatusNotFound
		case strings.HasPrefix(r.URL.Path, "/created"):
			status = http.StatusCreated
		case strings.HasPrefix(r.URL.Path, "/moved"):
			w.Header().Set("Location", "/page/new")
			w.WriteHeader(http.StatusFound)
			return
		}
		w.Header().Add("Set-Cookie", "session=s3cr3t; Path=/; HttpOnly")
		// Two, not three: subprocess-middleware 0.2.0 (http-stream.js,
		// "value = existing.push(value)") turns a third header of one name
		// into the array's length, e.g. "Set-Cookie: 3". The bridge keeps
		// any number; the renderer library does not.
		w.Header().Add("Set-Cookie", "theme=dark; Path=/")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-App", "json-app")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{
			"title":  "Page " + r.URL.Path,
			"path":   r.URL.Path,
			"query":  r.URL.RawQuery,
			"host":   r.Host,
			"fwd":    r.Header.Get("X-Forwarded-For"),
			"items":  []string{"<one>", "two"},
			"status": status,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// renderConfig is the subprocess_middleware-style site: JSON answers of
// the app rendered to HTML by the node renderer, unless the client asks
// for JSON.
func renderConfig(appURL, nodeDir string, min, max int) func(string) string {
	return func(string) string {
		return fmt.Sprintf(`
[upstream.app]
kind = "http"
url = %q

[transform.render]
command = ["node", "render.js"]
dir = %q
pass_env = ["PATH"]
min = %d
max = %d

[[route]]
name = "json-by-accept"
source = "app"
header = [{ name = "Accept", match = "text/html", not = true }, { name = "Accept" }]

[[route]]
name = "render"
source = "app"
transform = ["render"]
source_content_type = ["application/json"]
content_type = "text/html; charset=utf-8"
`, appURL+"/", nodeDir, min, max)
	}
}

// TestNginxHTTPUpstreamNodeRenderer: nginx -> bridge -> HTTP app -> node
// renderer (npm subprocess-middleware) -> HTML.
func TestNginxHTTPUpstreamNodeRenderer(t *testing.T) {
	_, nodeDir := requireRenderer(t)
	app := jsonApp(t)
	d := startBridge(t, renderConfig(app.URL, nodeDir, 2, 2))
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true})

	html := map[string]string{"Accept": "text/html,application/xhtml+xml", "Host": "www.example.test"}

	// The first request pays nothing for node's start-up: min = 2 started
	// the pool with the daemon.
	r := mustFetch(t, "GET", ngx.URL("/page/one?x=1&y=%3Cz%3E"), html, nil)
	t.Logf("first rendered page: %v", r.took)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("rendered page: %d %q\n%s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if !strings.Contains(r.body, "<dt>title</dt><dd>Page /page/one</dd>") ||
		!strings.Contains(r.body, "&lt;one&gt;") {
		t.Errorf("body is not the JSON rendered to HTML:\n%s", r.body)
	}
	// The renderer reads the absolute URL the client asked for.
	if want := `data-url="http://www.example.test/page/one?x=1&amp;y=%3Cz%3E"`; !strings.Contains(r.body, want) {
		t.Errorf("renderer saw the wrong X-Request-URL; want %s in\n%s", want, r.body)
	}
	// The app saw the client's Host and the forwarding headers.
	if !strings.Contains(r.body, "<dt>host</dt><dd>www.example.test</dd>") || !strings.Contains(r.body, "<dt>fwd</dt><dd>127.0.0.1</dd>") {
		t.Errorf("upstream request lacked Host or X-Forwarded-For:\n%s", r.body)
	}
	if got := r.header.Values("Set-Cookie"); len(got) != 2 || got[0] != "session=s3cr3t; Path=/; HttpOnly" || got[1] != "theme=dark; Path=/" {
		t.Errorf("Set-Cookie headers through the renderer: %q, want the app's two in order", got)
	}
	if r.header.Get("X-App") != "json-app" {
		t.Errorf("app header lost: %v", r.header)
	}
	for name := range r.header {
		if strings.HasPrefix(name, "X-Bridge-") || name == "X-Request-Url" {
			t.Errorf("reserved header %s reached the client", name)
		}
	}

	// Accept: application/json bypasses the renderer: the app's bytes.
	direct := mustFetch(t, "GET", app.URL+"/page/one?x=1", map[string]string{"Host": "www.example.test"}, nil)
	j := mustFetch(t, "GET", ngx.URL("/page/one?x=1"), map[string]string{"Accept": "application/json", "Host": "www.example.test"}, nil)
	if j.status != 200 || j.header.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON bypass: %d %q\n%s", j.status, j.header.Get("Content-Type"), j.body)
	}
	var got, want map[string]any
	if err := json.Unmarshal([]byte(j.body), &got); err != nil {
		t.Fatalf("bypass body is not JSON: %v\n%s", err, j.body)
	}
	json.Unmarshal([]byte(direct.body), &want)
	want["fwd"] = got["fwd"] // only the forwarding chain differs
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bypassed JSON differs from the app's:\n got %s\nwant %s", j.body, direct.body)
	}
	if len(j.header.Values("Set-Cookie")) != 2 {
		t.Errorf("bypass lost cookies: %q", j.header.Values("Set-Cookie"))
	}

	// The app's status codes survive the renderer.
	for path, status := range map[string]int{"/missing/x": 404, "/created/y": 201} {
		r := mustFetch(t, "GET", ngx.URL(path), html, nil)
		if r.status != status || !strings.Contains(r.body, "<dt>status</dt><dd>"+fmt.Sprint(status)+"</dd>") {
			t.Errorf("%s: %d, want %d rendered\n%s", path, r.status, status, r.body)
		}
		if len(r.header.Values("Set-Cookie")) != 2 {
			t.Errorf("%s: cookies %q", path, r.header.Values("Set-Cookie"))
		}
	}
	r = mustFetch(t, "GET", ngx.URL("/moved"), html, nil)
	if r.status != 302 || r.header.Get("Location") != "/page/new" {
		t.Errorf("redirect: %d Location %q", r.status, r.header.Get("Location"))
	}

	// Long-lived renderers: 40 concurrent pages are served by the pool's
	// two node processes, not by new ones.
	start := time.Now()
	var mu sync.Mutex
	pids := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := 0; k < 10; k++ {
				r, err := fetch(t, "GET", ngx.URL(fmt.Sprintf("/page/%d-%d", i, k)), html, nil)
				if err != nil || r.status != 200 || !strings.Contains(r.body, fmt.Sprintf("Page /page/%d-%d", i, k)) {
					t.Errorf("page %d-%d: %v %+v", i, k, err, r)
					return
				}
				mu.Lock()
				pids[r.header.Get("X-Rendered-By")]++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	t.Logf("40 pages over 4 connections in %v, rendered by %v", time.Since(start), pids)
	if len(pids) > 2 {
		t.Errorf("pages rendered by %d processes, want the pool's 2: %v", len(pids), pids)
	}
	// An access line is written after its response, and the four
	// connections finish in any order: wait for the lines to come.
	if !testenv.Poll(10*time.Second, func() bool { return d.log.Count("msg=access") >= 44 }) {
		t.Errorf("%d access lines for 45 requests", d.log.Count("msg=access"))
	}
}

// TestNginxFailuresAndHEAD: what nginx's clients get when things go wrong
// behind the bridge, and HEAD on a transformed route.
func TestNginxFailuresAndHEAD(t *testing.T) {
	_, nodeDir := requireRenderer(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/hang"):
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
			return
		case strings.HasPrefix(r.URL.Path, "/throw"):
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"__throw__":"on purpose"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, `{"title":"head test"}`)
	}))
	defer app.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there any more

	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[upstream.app]
kind = "http"
url = %q
response_timeout = "1s"

[upstream.down]
kind = "http"
url = %q
connect_timeout = "1s"

[transform.render]
command = ["node", "render.js"]
dir = %q
pass_env = ["PATH"]
min = 1
max = 1

[[route]]
name = "down"
path = "/down"
source = "down"
transform = ["render"]

[[route]]
name = "render"
source = "app"
transform = ["render"]
source_content_type = ["application/json"]
content_type = "text/html; charset=utf-8"
`, app.URL+"/", downURL+"/", nodeDir)
	})
	// Keep-conn off here: nginx opens a connection per request and waits
	// for the bridge to close it.
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream()})
	html := map[string]string{"Accept": "text/html"}

	r := mustFetch(t, "GET", ngx.URL("/down/x"), html, nil)
	t.Logf("upstream refused: %d in %v", r.status, r.took)
	if r.status != 502 {
		t.Errorf("upstream down: %d %q, want 502", r.status, r.body)
	}
	r = mustFetch(t, "GET", ngx.URL("/hang"), html, nil)
	t.Logf("upstream silent past response_timeout: %d in %v", r.status, r.took)
	if r.status != 504 {
		t.Errorf("upstream silent: %d %q, want 504", r.status, r.body)
	}
	// The renderer's library answers 500 with the stack when the render
	// throws; the bridge passes the transform's answer on, and the
	// process keeps serving.
	r = mustFetch(t, "GET", ngx.URL("/throw"), html, nil)
	if r.status != 500 || !strings.Contains(r.body, "on purpose") {
		t.Errorf("render throws: %d %.200q, want the library's 500", r.status, r.body)
	}
	r = mustFetch(t, "GET", ngx.URL("/page"), html, nil)
	if r.status != 200 || !strings.Contains(r.body, "head test") {
		t.Errorf("after a throw: %d %.200q", r.status, r.body)
	}
	// HEAD runs no transform: the route's type, no length or ETag of the
	// untransformed bytes.
	r = mustFetch(t, "HEAD", ngx.URL("/page"), html, nil)
	if r.status != 200 || r.body != "" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.header.Get("ETag") != "" {
		t.Errorf("HEAD: %d %v %q", r.status, r.header, r.body)
	}
	// The access line is written once the response has ended, so it may
	// reach the log a moment after the client has its answer.
	d.log.WaitFor("method=HEAD", 5*time.Second)
	if n := d.log.Count("method=HEAD"); n != 1 {
		t.Errorf("%d access lines for the HEAD", n)
	}
}

// TestNginxTimeoutAndSaturation: a transform that never answers is killed
// at its timeout (504) and replaced; while it holds the only process, a
// second request finds the pool saturated (503 with Retry-After).
func TestNginxTimeoutAndSaturation(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[transform.hang]
command = [%q]
env = { %s = %q }
min = 1
max = 1
queue = 0
timeout = "4s"
kill_grace = "1s"

[[route]]
name = "hang"
source = "body"
transform = ["hang"]
`, exe, testtransform.EnvMode, testtransform.Hang)
	})
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true})

	first := make(chan *httpResult, 1)
	go func() {
		r, err := fetch(t, "POST", ngx.URL("/slow"), map[string]string{"Content-Type": "text/plain"}, strings.NewReader("x"))
		if err != nil {
			t.Errorf("first request: %v", err)
		}
		first <- r
	}()
	// The hang transform's process is busy once it has read the message
	// (it says so on stderr, which reaches the log); the second request
	// comes well inside the first one's 4 s.
	if _, ok := d.log.WaitFor("hang: not answering", 4*time.Second); !ok {
		t.Fatal("the hang transform never received the first request")
	}
	r := mustFetch(t, "POST", ngx.URL("/second"), map[string]string{"Content-Type": "text/plain"}, strings.NewReader("y"))
	t.Logf("second request while the only process hangs: %d in %v, Retry-After %q", r.status, r.took, r.header.Get("Retry-After"))
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("saturated pool: %d %q Retry-After %q, want 503 with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	r1 := <-first
	if r1 != nil {
		t.Logf("hanging transform: %d after %v", r1.status, r1.took)
		if r1.status != 504 || r1.took > 10*time.Second {
			t.Errorf("hanging transform: %d after %v, want 504 at its 4s timeout", r1.status, r1.took)
		}
	}
	if _, ok := d.log.WaitFor("killed", 5*time.Second); !ok {
		t.Errorf("no log line about the killed transform")
	}

	// A client that leaves: nginx closes its FastCGI connection, and the
	// bridge stops the exchange at once (access status 499) instead of at
	// the 4 s timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", ngx.URL("/leaving"), strings.NewReader("z"))
	left := time.Now()
	if resp, err := httpClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("the leaving client got an answer: %d", resp.StatusCode)
	}
	line, ok := d.log.WaitFor("uri=/leaving", 10*time.Second)
	t.Logf("client gone after 500 ms; bridge access line %v later: %s", time.Since(left), line)
	if !ok || !strings.Contains(line, "status=499") || time.Since(left) > 3500*time.Millisecond {
		t.Errorf("abort not noticed in time: %q", line)
	}
}
