package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
)

// smokeConfig: request bodies upper-cased; /slow/ is an HTTP app that
// holds each request 150 ms, so concurrent requests overlap in the bridge.
func smokeConfig(t *testing.T) (func(string) string, *atomic.Int32) {
	var peak, cur atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(150 * time.Millisecond) // the slow app whose requests must overlap
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "slow answer for "+r.URL.RequestURI())
	}))
	t.Cleanup(app.Close)
	return func(string) string {
		return fmt.Sprintf(`
[upstream.slow]
kind = "http"
url = %q

[transform.upper]
command = ["@self", "transform", "upper"]
min = 2
max = 8

[[route]]
name = "slow"
path = "/slow"
source = "slow"
transform = ["upper"]

[[route]]
name = "body"
source = "body"
transform = ["upper"]
`, app.URL+"/")
	}, &peak
}

// sampleConns counts, until the returned function is called, the most
// connections open at once on the unix socket sock (server side, from
// /proc/net/unix: accepted sockets carry the listener's path).
func sampleConns(sock string) func() int {
	stop := make(chan struct{})
	res := make(chan int, 1)
	go func() {
		most := 0
		for {
			data, _ := os.ReadFile("/proc/net/unix")
			n := strings.Count(string(data), " "+sock+"\n") - 1 // minus the listener
			if n > most {
				most = n
			}
			select {
			case <-stop:
				res <- most
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() int { close(stop); return <-res }
}

// concurrently sends n GET /slow/i requests, the i-th after i*stagger, and
// checks each answer. They all overlap: the app holds each 150 ms.
func concurrently(t *testing.T, s *peers.Server, n int, stagger time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * stagger) // arrivals spread on purpose: the load pattern under test
			r, err := fetch(t, "GET", s.URL(fmt.Sprintf("/slow/%d?x=y", i)), nil, nil)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if want := fmt.Sprintf("SLOW ANSWER FOR /SLOW/%d?X=Y", i); r.status != 200 || r.body != want {
				t.Errorf("request %d: %d %q, want %q", i, r.status, r.body, want)
			}
		}(i)
	}
	wg.Wait()
	return time.Since(start)
}

func smokeBody(t *testing.T, s *peers.Server) {
	t.Helper()
	r := mustFetch(t, "POST", s.URL("/echo"), map[string]string{"Content-Type": "text/plain"}, strings.NewReader("hello from "+s.Name))
	if r.status != 200 || r.body != strings.ToUpper("hello from "+s.Name) {
		t.Fatalf("%s: POST /echo: %d %q", s.Name, r.status, r.body)
	}
}

// TestLighttpdSmoke: lighttpd mod_fastcgi -> bridge.
func TestLighttpdSmoke(t *testing.T) {
	cfg, peak := smokeConfig(t)
	d := startBridge(t, cfg)
	s := peers.StartLighttpd(t, peers.LighttpdConfig{FastCGI: d.upstream()})
	smokeBody(t, s)
	took := concurrently(t, s, 8, 0)
	t.Logf("lighttpd: 8 concurrent 150 ms requests in %v (peak %d at the app)", took, peak.Load())
	if peak.Load() < 2 {
		t.Errorf("requests did not overlap (peak %d): the bridge serialised them", peak.Load())
	}
}

// TestHAProxyMultiplexedSmoke: HAProxy's FastCGI backend with option
// mpxs-conns and get-values: several requests in flight on one connection.
func TestHAProxyMultiplexedSmoke(t *testing.T) {
	cfg, peak := smokeConfig(t)
	d := startBridge(t, cfg)
	s := peers.StartHAProxy(t, peers.HAProxyConfig{
		FastCGI: d.upstream(), MpxsConns: true, GetValues: true,
		// Without it HAProxy keeps a backend connection private to its
		// client connection, and one HTTP/1.1 client never has two
		// requests in flight: nothing would be multiplexed.
		BackendExtra: "    http-reuse always\n",
	})
	smokeBody(t, s)
	conns := sampleConns(d.socket)
	took := concurrently(t, s, 16, 5*time.Millisecond)
	mostConns := conns()
	t.Logf("HAProxy mpxs-conns: 16 concurrent 150 ms requests in %v (peak %d at the app, at most %d connections to the bridge)", took, peak.Load(), mostConns)
	if peak.Load() < 2 {
		t.Errorf("requests did not overlap (peak %d)", peak.Load())
	}
	// How many connections HAProxy opens for a burst is its choice (its
	// idle-connection pools are per thread): seen 9 to 16 for 16 requests.
	// Sharing is logged, not required; the fcgi package's interop test
	// checks the multiplexed transcript itself.
	if mostConns < 16 {
		t.Logf("multiplexed: 16 requests in flight over %d connections", mostConns)
	}
	// A second round on the connections HAProxy kept.
	if took := concurrently(t, s, 16, 5*time.Millisecond); took > 10*time.Second {
		t.Errorf("second round took %v", took)
	}
}
