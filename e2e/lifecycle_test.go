package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// lifecycleConfig renders the app's JSON with the node renderer (variant
// "node") or with the binary's own html sample transform (variant "html");
// reloads switch between them so a test can see which configuration
// served a request.
func lifecycleConfig(appURL, nodeDir, variant string) func(string) string {
	return func(string) string {
		t := "render"
		if variant == "html" {
			t = "html"
		}
		return fmt.Sprintf(`
[server]
shutdown_timeout = "20s"

[upstream.app]
kind = "http"
url = %q

[transform.render]
command = ["node", "render.js"]
dir = %q
pass_env = ["PATH"]
min = 1
max = 3

[transform.html]
command = ["@self", "transform", "html"]
min = 1
max = 3

[[route]]
name = "page-%s"
source = "app"
transform = [%q]
source_content_type = ["application/json"]
content_type = "text/html; charset=utf-8"
`, appURL+"/", nodeDir, variant, t)
	}
}

// TestNginxReloadAndDrain: HUP under a steady stream of requests through
// nginx fails none of them; TERM lets a slow request in flight finish;
// after exit no transform process is left (a /proc scan).
func TestNginxReloadAndDrain(t *testing.T) {
	_, nodeDir := requireRenderer(t)
	slowStarted := make(chan struct{}, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			select {
			case slowStarted <- struct{}{}:
			default:
			}
			time.Sleep(1500 * time.Millisecond) // the slow request TERM must let finish
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"title": "Page " + r.URL.Path})
	}))
	defer app.Close()

	d := startBridge(t, lifecycleConfig(app.URL, nodeDir, "node"))
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true})

	// Every transform process the daemon ever had, sampled all along.
	var pidMu sync.Mutex
	seen := map[int]bool{}
	sample := func() {
		pidMu.Lock()
		defer pidMu.Unlock()
		for _, p := range descendants(d.cmd.Process.Pid) {
			seen[p] = true
		}
	}
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	go func() {
		defer close(samplingDone)
		for {
			sample()
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	// The steady stream: 4 clients, keep-alive, until told to stop.
	var ok, failed, byNode, byHTML atomic.Int64
	var failures []string
	var failMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path := fmt.Sprintf("/page/%d-%d", c, i)
				r, err := fetch(t, "GET", ngx.URL(path), map[string]string{"Accept": "text/html"}, nil)
				if err != nil || r.status != 200 || !strings.Contains(r.body, "Page "+path) {
					failed.Add(1)
					failMu.Lock()
					if len(failures) < 10 {
						if err != nil {
							failures = append(failures, fmt.Sprintf("%s: %v", path, err))
						} else {
							failures = append(failures, fmt.Sprintf("%s: %d %.300q", path, r.status, r.body))
						}
					}
					failMu.Unlock()
					continue
				}
				ok.Add(1)
				if r.header.Get("X-Rendered-By") != "" {
					byNode.Add(1)
				} else {
					byHTML.Add(1)
				}
			}
		}(c)
	}

	// traffic waits until the clients have had n more answers (or
	// failures), so each reload meets requests in flight.
	traffic := func(n int64) {
		t.Helper()
		want := ok.Load() + failed.Load() + n
		if !testenv.Poll(30*time.Second, func() bool { return ok.Load()+failed.Load() >= want }) {
			t.Fatalf("the clients stalled at %d requests", ok.Load()+failed.Load())
		}
	}

	// Four reloads, each after 20 more requests, alternating the transform.
	start := time.Now()
	const reloads = 4
	for i := 1; i <= reloads; i++ {
		traffic(20)
		variant := "html"
		if i%2 == 0 {
			variant = "node"
		}
		if err := os.WriteFile(d.config, []byte(bridgeListen(d.socket)+lifecycleConfig(app.URL, nodeDir, variant)(d.socket)), 0o644); err != nil {
			t.Fatal(err)
		}
		d.signal(syscall.SIGHUP)
		if !testenv.Poll(20*time.Second, func() bool { return d.log.Count("configuration reloaded") >= i }) {
			t.Fatalf("reload %d not logged", i)
		}
	}
	traffic(20)
	close(stop)
	wg.Wait()
	t.Logf("HUP x%d under load through nginx: %d requests in %v (%d by node, %d by the html sample), %d failed",
		reloads, ok.Load()+failed.Load(), time.Since(start), byNode.Load(), byHTML.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed across reloads; first: %q", failed.Load(), failures)
	}
	if byNode.Load() == 0 || byHTML.Load() == 0 {
		t.Errorf("reloads did not switch the transform (node %d, html %d)", byNode.Load(), byHTML.Load())
	}
	if ok.Load() < 40 {
		t.Errorf("only %d requests in the run: not a steady stream", ok.Load())
	}

	// TERM with a slow request in flight: it finishes, then the daemon
	// exits 0.
	type result struct {
		r   *httpResult
		err error
	}
	slow := make(chan result, 1)
	go func() {
		r, err := fetch(t, "GET", ngx.URL("/slow/drain"), map[string]string{"Accept": "text/html"}, nil)
		slow <- result{r, err}
	}()
	select {
	case <-slowStarted:
	case <-time.After(20 * time.Second):
		t.Fatal("the slow request never reached the app")
	}
	sample()
	termAt := time.Now()
	d.signal(syscall.SIGTERM)
	res := <-slow
	if res.err != nil || res.r.status != 200 || !strings.Contains(res.r.body, "Page /slow/drain") {
		t.Errorf("request in flight at TERM: %v %+v", res.err, res.r)
	} else {
		t.Logf("request in flight at TERM answered 200 %v after the signal", time.Since(termAt))
	}
	if code := d.wait(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after a clean drain, want 0", code)
	}
	t.Logf("daemon exited %v after TERM", time.Since(termAt))
	close(stopSampling)
	<-samplingDone

	pidMu.Lock()
	var pids []int
	for p := range seen {
		pids = append(pids, p)
	}
	pidMu.Unlock()
	sort.Ints(pids)
	if len(pids) < 2 {
		t.Errorf("saw %d transform processes; the scan is not working", len(pids))
	}
	if left := waitGone(pids, 5*time.Second); len(left) > 0 {
		t.Errorf("transform processes left after exit: %v (of %v)", left, pids)
	} else {
		t.Logf("all %d transform processes the daemon ran are gone", len(pids))
	}
}
