//go:build soak

package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// The saturation soak and TERM-under-load parts of the reliability suite:
//
//	go test -tags soak -run 'SoakNginx' -timeout 30m ./e2e/ -args -soak.duration=10m
//
// (or SOAK_DURATION=10m). Clients keep nginx -> bridge -> node renderer
// saturated while the bridge reloads every 10 s.

var soakDuration = flag.Duration("soak.duration", 0, "length of the saturation soak (default $SOAK_DURATION, else 10m)")

const (
	soakClients        = 16
	soakReloadEvery    = 10 * time.Second
	soakSampleEvery    = time.Minute
	soakRSSFlatPercent = 10
)

func soakLength(t *testing.T) time.Duration {
	if *soakDuration > 0 {
		return *soakDuration
	}
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		return d
	}
	return 10 * time.Minute
}

// soakSite runs the JSON app, the bridge with the node renderer, and nginx
// with kept FastCGI connections in front. access turns the bridge's access
// lines on (the long soak leaves them off: millions of them would only fill
// the test's memory).
func soakSite(t *testing.T, access bool) (*daemon, *peers.Server) {
	t.Helper()
	_, nodeDir := requireRenderer(t)
	app := jsonApp(t)
	dir := peers.SocketDir(t)
	sock := filepath.Join(dir, "bridge.sock")
	config := filepath.Join(dir, "bridge.toml")
	text := fmt.Sprintf("[[listen]]\naddr = \"unix:%s\"\nmode = \"0666\"\n\n[log]\nlevel = \"info\"\naccess = %v\n", sock, access) +
		lifecycleConfig(app.URL, nodeDir, "node")(sock)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, bridgeBin, "-c", config)
	d.dir, d.socket, d.config = dir, sock, config
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true, Keepalive: soakClients})
	return d, ngx
}

// soakLoad is soakClients clients, each with its own kept connection to
// nginx, asking for rendered pages until stop is closed.
type soakLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string // the first few
	failedURIs map[string]bool
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startSoakLoad(ngx *peers.Server) *soakLoad {
	l := &soakLoad{stop: make(chan struct{}), failedURIs: map[string]bool{}}
	tr := &http.Transport{MaxIdleConnsPerHost: soakClients, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	for c := range soakClients {
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				path := fmt.Sprintf("/page/%d-%d", c, i)
				err := soakGet(client, ngx.URL(path), path)
				if err == nil {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.failedURIs[path] = true
				if len(l.failures) < 10 {
					l.failures = append(l.failures, err.Error())
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

func soakGet(client *http.Client, url, path string) error {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: body: %v", path, err)
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Page "+path) {
		return fmt.Errorf("%s: %d %.200q", path, resp.StatusCode, body)
	}
	return nil
}

func (l *soakLoad) total() int64 { return l.ok.Load() + l.failed.Load() }

func (l *soakLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// TestSoakNginxReloads: saturation through nginx with a HUP every 10 s:
// not one failed request, and an RSS that stays flat (the last minute's
// sample within 10% of the second minute's).
func TestSoakNginxReloads(t *testing.T) {
	length := soakLength(t)
	if length < 2*soakSampleEvery {
		t.Fatalf("a soak of %v has fewer than two RSS samples; give at least 2m", length)
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < length+2*time.Minute {
		t.Fatalf("a %v soak does not fit in the %v left before the test deadline: add -timeout %v",
			length, time.Until(dl).Round(time.Second), (length + 5*time.Minute).Round(time.Minute))
	}
	d, ngx := soakSite(t, false)
	pid := d.cmd.Process.Pid
	accessLog := filepath.Join(ngx.Dir, "access.log")

	load := startSoakLoad(ngx)
	start := time.Now()
	reload := time.NewTicker(soakReloadEvery)
	defer reload.Stop()
	sample := time.NewTicker(soakSampleEvery)
	defer sample.Stop()
	end := time.NewTimer(length)
	defer end.Stop()
	var rss []int64
	var perMinute []int64
	hups, lastTotal := 0, int64(0)
loop:
	for {
		select {
		case <-reload.C:
			d.signal(syscall.SIGHUP)
			hups++
		case <-sample.C:
			_, now := procMemory(pid)
			rss = append(rss, now)
			total := load.total()
			perMinute = append(perMinute, total-lastTotal)
			lastTotal = total
			t.Logf("minute %d: bridge RSS %.1f MiB, %d requests (%.0f/s), %d failed so far",
				len(rss), float64(now)/(1<<20), perMinute[len(perMinute)-1], float64(perMinute[len(perMinute)-1])/soakSampleEvery.Seconds(), load.failed.Load())
			// nginx's access log grows by a line a request; the soak
			// needs none of it.
			_ = os.Truncate(accessLog, 0)
		case <-end.C:
			break loop
		case <-d.done:
			t.Fatalf("the bridge exited during the soak: %v", d.err)
		}
	}
	load.end()
	took := time.Since(start)

	var curve []string
	for _, r := range rss {
		curve = append(curve, fmt.Sprintf("%.1f", float64(r)/(1<<20)))
	}
	t.Logf("soak %v through nginx -> bridge -> node, %d clients, HUP every %v (%d reloads): %d requests, %.0f req/s, %d failed; bridge RSS per minute (MiB): %s",
		took.Round(time.Second), soakClients, soakReloadEvery, hups, load.total(), float64(load.total())/took.Seconds(), load.failed.Load(), strings.Join(curve, " "))
	if n := d.log.Count("reload failed"); n != 0 {
		t.Errorf("%d reloads failed", n)
	}
	if n := d.log.Count("configuration reloaded"); n < hups {
		// The last HUP may still be in progress; one short is fine.
		if n < hups-1 {
			t.Errorf("%d HUPs sent, %d reloads logged", hups, n)
		}
	}
	if load.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed; first: %q", load.failed.Load(), load.total(), load.failures)
	}
	if len(rss) >= 2 {
		second, last := rss[1], rss[len(rss)-1]
		if diff := float64(last-second) / float64(second) * 100; diff > soakRSSFlatPercent || diff < -soakRSSFlatPercent {
			t.Errorf("bridge RSS not flat: %.1f MiB in minute 2, %.1f MiB in the last (%+.1f%%, limit ±%d%%)",
				float64(second)/(1<<20), float64(last)/(1<<20), diff, soakRSSFlatPercent)
		}
	}
}

// TestSoakNginxTermUnderLoad sends TERM while nginx keeps the bridge
// saturated. A request reached the bridge when the bridge read it, and then
// it logs it (an access line, or the error that ended it): of those, none may
// fail. The others failed before the bridge could read them: nginx could
// not connect once the listener was gone, or it wrote the request into a
// kept connection at the moment the bridge closed it after its last
// response (nginx then logs "upstream prematurely closed connection", tries
// once more on a new connection and finds no listener). That race is in
// every FastCGI server that closes kept connections; it is counted and
// reported, not failed.
func TestSoakNginxTermUnderLoad(t *testing.T) {
	d, ngx := soakSite(t, true)
	load := startSoakLoad(ngx)
	// Saturated: every client has had answers on its kept connections.
	if !waitTotal(load, 20*soakClients, 60*time.Second) {
		load.end()
		t.Fatalf("the load never got going: %d requests", load.total())
	}
	before := load.total()
	d.signal(syscall.SIGTERM)
	code := d.wait(60 * time.Second)
	// A few more rounds against the stopped bridge, so the failures of
	// requests sent during the drain are all in.
	waitTotal(load, soakClients, 10*time.Second)
	load.end()

	// Failures nginx logged other than a refused connect, split by whether
	// the bridge logged the request.
	errLog, _ := os.ReadFile(filepath.Join(ngx.Dir, "error.log"))
	bridgeLog := d.log.String()
	var reached, closedUnread []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(errLog), "\n") {
		_, rest, ok := strings.Cut(line, `request: "GET `)
		if !ok || strings.Contains(line, "connect() to unix:") {
			continue
		}
		path, _, _ := strings.Cut(rest, " ")
		if !load.failedURIs[path] || seen[path] {
			continue
		}
		seen[path] = true
		if strings.Contains(bridgeLog, "uri="+path+" ") {
			reached = append(reached, line)
		} else {
			closedUnread = append(closedUnread, line)
		}
	}
	t.Logf("TERM under load (%d clients): exit status %d; %d requests before TERM, %d after; %d failed: %d read by the bridge, %d written into a kept connection as the bridge closed it, the rest refused at connect",
		soakClients, code, before, load.total()-before, load.failed.Load(), len(reached), len(closedUnread))
	if code != 0 {
		t.Errorf("exit status %d after TERM, want 0 (a clean drain)", code)
	}
	if len(reached) > 0 {
		t.Errorf("%d requests the bridge read failed during the drain:\n%s", len(reached), strings.Join(reached, "\n"))
	}
}

// waitTotal waits until load has sent n more requests, or d has passed.
func waitTotal(load *soakLoad, n int64, d time.Duration) bool {
	want := load.total() + n
	return testenv.Poll(d, func() bool { return load.total() >= want })
}
