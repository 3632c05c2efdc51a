package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

const statusRoutes = `
[[route]]
name = "status"
path = "/fcgi-status"
kind = "status"

[[route]]
name = "metrics"
path = "/metrics"
kind = "status"
format = "prometheus"

[[route]]
name = "ping"
path = "/ping"
kind = "ping"

[[route]]
name = "ready"
path = "/ready"
kind = "ready"
`

// statusBridge serves cfgText (plus the status routes) behind a real fcgi
// server and returns the bridge and a client.
func statusBridge(t *testing.T, cfgText string) (*Bridge, *fcgi.Client) {
	t.Helper()
	return statusBridgeLog(t, cfgText, slog.New(slog.DiscardHandler))
}

func statusBridgeLog(t *testing.T, cfgText string, logger *slog.Logger) (*Bridge, *fcgi.Client) {
	t.Helper()
	cfg, err := conf.Parse("test.toml", []byte(cfgText+statusRoutes))
	require.NoError(t, err)
	b, err := New(cfg, WithLogger(logger), WithMetrics(metrics.NewRegistry("test")))
	require.NoError(t, err)
	sock := filepath.Join(t.TempDir(), "bridge.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := &fcgi.Server{Handler: b, Limits: ServerLimits(cfg.Server)}
	go srv.Serve(l)
	c := &fcgi.Client{Network: "unix", Address: sock, KeepConn: true, MaxIdleConns: 4}
	t.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close()
		b.Close(ctx)
	})
	return b, c
}

type answer struct {
	status int
	ctype  string
	body   string
}

// get sends a GET; usable from any goroutine.
func get(ctx context.Context, c *fcgi.Client, uri string) (answer, error) {
	path, query, _ := strings.Cut(uri, "?")
	resp, err := c.Do(ctx, &fcgi.ClientRequest{Role: fcgi.RoleResponder, Params: []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: "GET"}, {Name: "REQUEST_URI", Value: uri}, {Name: "SCRIPT_NAME", Value: path},
		{Name: "QUERY_STRING", Value: query}, {Name: "CONTENT_LENGTH", Value: "0"},
	}, Stdin: strings.NewReader("")})
	if err != nil {
		return answer{}, err
	}
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		return answer{}, err
	}
	body, err := io.ReadAll(cgi.Body)
	return answer{status: cgi.Status, ctype: cgi.Get("Content-Type"), body: string(body)}, err
}

func mustGet(t *testing.T, c *fcgi.Client, uri string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := get(ctx, c, uri)
	require.NoError(t, err, uri)
	return a
}

func scrape(t *testing.T, c *fcgi.Client) map[string]float64 {
	t.Helper()
	m, err := tryScrape(c)
	require.NoError(t, err)
	return m
}

// tryScrape is scrape for other goroutines than the test's (Eventually).
func tryScrape(c *fcgi.Client) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := get(ctx, c, "/metrics")
	if err != nil {
		return nil, err
	}
	if a.status != 200 || a.ctype != "text/plain; version=0.0.4; charset=utf-8" {
		return nil, fmt.Errorf("metrics answer %d %q", a.status, a.ctype)
	}
	m, err := metrics.ParseText(a.body)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, a.body)
	}
	return m, nil
}

// TestStatusAnswersWhileSaturated fills the only process of the only pool
// with a request that hangs, then keeps four clients sending requests that
// the pool refuses with 503, and meanwhile asks for the status page, the
// metrics and ping: each answers, fast. Afterwards the counters say exactly
// how many requests were sent and refused.
func TestStatusAnswersWhileSaturated(t *testing.T) {
	b, c := statusBridge(t, tt("busy", testtransform.Hang, "max = 1\nqueue = 0\ntimeout = \"60s\"\nkill_grace = \"100ms\"")+`
[[route]]
name = "app"
path = "/app"
transform = ["busy"]
`)
	hangCtx, release := context.WithCancel(context.Background())
	defer release()
	hung := make(chan error, 1)
	go func() {
		_, err := get(hangCtx, c, "/app/hang")
		hung <- err
	}()
	require.Eventually(t, func() bool { return b.Stats()["busy"].Busy == 1 }, 20*time.Second, 5*time.Millisecond,
		"the hanging request never got the pool's process")

	var (
		stop         atomic.Bool
		refused, bad atomic.Int64
		firstBad     atomic.Value
		wg           sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			lc := &fcgi.Client{Network: c.Network, Address: c.Address, KeepConn: true, MaxIdleConns: 1}
			defer lc.Close()
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				a, err := get(ctx, lc, "/app/page")
				cancel()
				if err == nil && a.status == 503 {
					refused.Add(1)
					continue
				}
				bad.Add(1)
				firstBad.CompareAndSwap(nil, fmt.Sprintf("%v %+v", err, a))
			}
		})
	}
	require.Eventually(t, func() bool { return refused.Load() >= 20 }, 20*time.Second, 5*time.Millisecond,
		"the load never got 503s")

	const rounds = 15
	var took []time.Duration
	for range rounds {
		for _, uri := range []string{"/ping", "/fcgi-status", "/metrics", "/fcgi-status?format=json", "/ready"} {
			t0 := time.Now()
			a := mustGet(t, c, uri)
			took = append(took, time.Since(t0))
			require.Equal(t, 200, a.status, "%s under saturation: %s", uri, a.body)
		}
	}
	stop.Store(true)
	wg.Wait()
	slices.Sort(took)
	median, worst := took[len(took)/2], took[len(took)-1]
	t.Logf("status, metrics, ping, ready under saturation: %d answers, median %v, worst %v; %d requests refused meanwhile",
		len(took), median, worst, refused.Load())
	// The bound is the 50 ms; the median keeps one scheduling
	// hiccup of a busy machine from failing the test.
	require.Less(t, median, 50*time.Millisecond)
	require.Zero(t, bad.Load(), "a request of the load got something else than 503: %v", firstBad.Load())

	release()
	<-hung
	// The hanging request is counted once its handler returns.
	require.Eventually(t, func() bool {
		m, err := tryScrape(c)
		return err == nil && m[`fcgi_bridge_route_request_duration_seconds_count{route="app"}`] == float64(refused.Load()+1)
	}, 10*time.Second, 10*time.Millisecond)
	m := scrape(t, c)
	n := float64(refused.Load())
	for series, want := range map[string]float64{
		`fcgi_bridge_route_requests_total{class="5xx",route="app"}`:  n,
		`fcgi_bridge_route_requests_total{class="4xx",route="app"}`:  1, // the client that gave up: 499
		`fcgi_bridge_route_requests_total{class="2xx",route="app"}`:  0,
		`fcgi_bridge_pool_saturated_total{pool="busy"}`:              n,
		`fcgi_bridge_pool_acquires_total{pool="busy"}`:               n + 1,
		`fcgi_bridge_route_requests_total{class="2xx",route="ping"}`: rounds,
	} {
		require.Equal(t, want, m[series], series)
	}
	require.Equal(t, float64(rounds*2), m[`fcgi_bridge_route_requests_total{class="2xx",route="status"}`])
}

func TestPingReadyAndFormats(t *testing.T) {
	_, c := statusBridge(t, tt("up", testtransform.Upper, "")+`
[transform.broken]
command = ["/nonexistent/transform"]
min = 0

[[route]]
name = "up"
path = "/up"
transform = ["up"]
`)
	a := mustGet(t, c, "/ping")
	require.Equal(t, answer{200, "text/plain; charset=utf-8", "pong\n"}, a)
	a = mustGet(t, c, "/ready")
	require.Equal(t, 200, a.status, a.body)

	a = mustGet(t, c, "/fcgi-status")
	require.Equal(t, 200, a.status)
	require.Contains(t, a.body, "fcgi-bridge test")
	require.Contains(t, a.body, "up ")
	a = mustGet(t, c, "/fcgi-status?format=json")
	require.Equal(t, "application/json", a.ctype)
	require.Contains(t, a.body, `"routes"`)
	a = mustGet(t, c, "/fcgi-status?format=xml")
	require.Equal(t, 400, a.status)
	a = mustGet(t, c, "/metrics?format=text")
	require.Equal(t, "text/plain; charset=utf-8", a.ctype, "?format= overrides the route's format")
}

// TestReadyFailsWhenNoPoolCanStart: the only pool's program is missing, so
// after its first start failure it backs off and ready answers 503.
func TestReadyFailsWhenNoPoolCanStart(t *testing.T) {
	b, c := statusBridge(t, `
[transform.broken]
command = ["/nonexistent/transform"]
min = 0

[[route]]
name = "app"
path = "/app"
transform = ["broken"]
`)
	a := mustGet(t, c, "/ready")
	require.Equal(t, 200, a.status, "before any start was tried: %s", a.body)
	a = mustGet(t, c, "/app/x")
	require.Equal(t, 503, a.status, a.body)
	require.NotZero(t, b.Stats()["broken"].StartFailures)
	a = mustGet(t, c, "/ready")
	require.Equal(t, 503, a.status)
	require.Contains(t, a.body, "broken")
	require.Equal(t, 200, mustGet(t, c, "/ping").status, "ping stays up while no pool can start")
}

// TestFallbacksAndRetriesCounted: a transform that crashes after reading,
// on a route that retries and fails open, is retried once and then the
// input is served untransformed: one retry, one fallback.
func TestFallbacksAndRetriesCounted(t *testing.T) {
	_, c := statusBridge(t, tt("crash", testtransform.CrashAfterRead, "")+`
[[route]]
name = "crashy"
path = "/crashy"
transform = ["crash"]
fail = "open"
retry = true
`)
	a := mustGet(t, c, "/crashy/x")
	require.Equal(t, 200, a.status, a.body)
	m := scrape(t, c)
	require.Equal(t, 1.0, m[`fcgi_bridge_route_retries_total{route="crashy"}`])
	require.Equal(t, 1.0, m[`fcgi_bridge_route_fallbacks_total{route="crashy"}`])
	require.Equal(t, 1.0, m[`fcgi_bridge_route_requests_total{class="2xx",route="crashy"}`])
}
