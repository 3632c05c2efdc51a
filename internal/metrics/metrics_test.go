package metrics

import (
	"bytes"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// filled is a registry with known counts: route "page" answered n requests
// (half 200, a quarter 404, a quarter 503), one listener whose address
// needs escaping, a failed reload, and one pool in start backoff.
func filled(n int) (*Snapshot, time.Time) {
	r := NewRegistry("v1.2.3")
	r.SetConfig(ConfigInfo{File: "/etc/fcgi-bridge.toml", Hash: "sha256:abc"})
	page := r.Route("page")
	for i := range n {
		status := 200
		switch i % 4 {
		case 1:
			status = 404
		case 3:
			status = 503
		}
		page.Observe(status, time.Duration(i)*time.Millisecond, 10, 100)
	}
	page.Retry()
	page.Fallback()
	r.Route("status")
	l := r.Listener("unix:/run/a \"b\"\\c\nd.sock")
	l.accepted.Add(3)
	l.open.Add(1)
	l.Refused()
	r.Reloaded(nil)
	r.Reloaded(errTest("no_such_key"))
	now := time.Now()
	pools := map[string]pool.Stats{
		"render": {Idle: 1, Busy: 2, Queue: 3, Spawned: 4, RecycledRequests: 5, Crashed: 6, StartFailures: 7,
			Acquires: 8, Waits: 9, WaitTime: 1500 * time.Millisecond, Saturated: 10, BackoffUntil: now.Add(2 * time.Second)},
		"thumb": {},
	}
	return r.Snapshot(pools, now), now
}

type errTest string

func (e errTest) Error() string { return string(e) }

func TestPrometheusCountsWhatWasSent(t *testing.T) {
	const n = 40
	s, _ := filled(n)
	var b bytes.Buffer
	if err := s.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	got, err := ParseText(b.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	want := map[string]float64{
		`fcgi_bridge_info{version="v1.2.3"}`:                                                       1,
		`fcgi_bridge_config_info{file="/etc/fcgi-bridge.toml",hash="sha256:abc"}`:                  1,
		`fcgi_bridge_reloads_total{result="ok"}`:                                                   1,
		`fcgi_bridge_reloads_total{result="failed"}`:                                               1,
		`fcgi_bridge_last_reload_success`:                                                          0,
		`fcgi_bridge_route_requests_total{class="2xx",route="page"}`:                               n / 2,
		`fcgi_bridge_route_requests_total{class="4xx",route="page"}`:                               n / 4,
		`fcgi_bridge_route_requests_total{class="5xx",route="page"}`:                               n / 4,
		`fcgi_bridge_route_requests_total{class="2xx",route="status"}`:                             0,
		`fcgi_bridge_route_request_duration_seconds_count{route="page"}`:                           n,
		`fcgi_bridge_route_request_duration_seconds_bucket{le="+Inf",route="page"}`:                n,
		`fcgi_bridge_route_request_duration_seconds_bucket{le="0.01",route="page"}`:                11, // 0..10 ms
		`fcgi_bridge_route_request_duration_seconds_bucket{le="0.001",route="page"}`:               2,  // 0 and 1 ms
		`fcgi_bridge_route_received_bytes_total{route="page"}`:                                     10 * n,
		`fcgi_bridge_route_sent_bytes_total{route="page"}`:                                         100 * n,
		`fcgi_bridge_route_retries_total{route="page"}`:                                            1,
		`fcgi_bridge_route_fallbacks_total{route="page"}`:                                          1,
		`fcgi_bridge_pool_processes{pool="render",state="busy"}`:                                   2,
		`fcgi_bridge_pool_queue_length{pool="render"}`:                                             3,
		`fcgi_bridge_pool_recycled_total{pool="render",reason="requests"}`:                         5,
		`fcgi_bridge_pool_crashed_total{pool="render"}`:                                            6,
		`fcgi_bridge_pool_wait_seconds_total{pool="render"}`:                                       1.5,
		`fcgi_bridge_pool_saturated_total{pool="render"}`:                                          10,
		`fcgi_bridge_pool_start_backoff_seconds{pool="render"}`:                                    2,
		`fcgi_bridge_pool_start_backoff_seconds{pool="thumb"}`:                                     0,
		`fcgi_bridge_listener_connections_accepted_total{listener="unix:/run/a \"b\"\\c\nd.sock"}`: 3,
		`fcgi_bridge_listener_connections_refused_total{listener="unix:/run/a \"b\"\\c\nd.sock"}`:  1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", b.String())
	}
	if ct := ContentType(FormatPrometheus); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
}

// TestPromtoolAcceptsExposition runs Prometheus's own checker on the output.
func TestPromtoolAcceptsExposition(t *testing.T) {
	promtool := testenv.Require(t, "promtool")
	s, _ := filled(8)
	var b bytes.Buffer
	s.WritePrometheus(&b)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		// promtool also prints lint findings (naming, units) with status 0.
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	cmd = exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader("# TYPE x counter\nx{a=b} 1\n")
	if err := cmd.Run(); err == nil {
		t.Fatal("promtool accepted a broken exposition, so its check proves nothing")
	}
}

func TestParseTextRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"no final line feed":  "# TYPE a gauge\na 1",
		"split family":        "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n",
		"repeated series":     "a{x=\"1\"} 1\na{x=\"1\"} 2\n",
		"type after samples":  "a 1\n# TYPE a gauge\n",
		"second type":         "# TYPE a gauge\n# TYPE a gauge\na 1\n",
		"unknown type":        "# TYPE a meter\na 1\n",
		"bad label escape":    "a{x=\"\\t\"} 1\n",
		"unquoted label":      "a{x=1} 1\n",
		"bad label name":      "a{1x=\"1\"} 1\n",
		"bad value":           "a one\n",
		"hex value":           "a 0x1\n",
		"bad metric name":     "1a 1\n",
		"negative counter":    "# TYPE a_total counter\na_total -1\n",
		"bad help escape":     "# HELP a x\\ty\na 1\n",
		"no +Inf bucket":      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
		"count mismatch":      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
		"not cumulative":      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"bucket without le":   "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
		"two values and more": "a 1 2 3\n",
	} {
		if _, err := ParseText(text); err == nil {
			t.Errorf("%s: accepted %q", name, text)
		}
	}
	if _, err := ParseText("# a comment\n# HELP a x \\\\ y\n# TYPE a gauge\na{x=\"q\\\"\\n\"} +Inf 1700000000000\n"); err != nil {
		t.Errorf("a valid exposition refused: %v", err)
	}
}

func TestJSONAndText(t *testing.T) {
	s, _ := filled(8)
	var b bytes.Buffer
	if err := s.Write(&b, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Routes) != 2 || back.Routes[0].Name != "page" || back.Routes[0].Count != 8 || back.Routes[0].Requests["2xx"] != 4 {
		t.Errorf("JSON routes: %+v", back.Routes)
	}
	if len(back.Pools) != 2 || back.Pools[0].Busy != 2 || back.Daemon.LastReload == nil || back.Daemon.LastReload.OK {
		t.Errorf("JSON pools or reload: %+v %+v", back.Pools, back.Daemon.LastReload)
	}
	b.Reset()
	if err := s.Write(&b, FormatText); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fcgi-bridge v1.2.3", "refused: no_such_key", "render", "busy 2", "page", "8 requests (2xx 4, 4xx 2, 5xx 2)", "starts back off"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text page lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCountListener(t *testing.T) {
	r := NewRegistry("test")
	c := r.Listener("tcp:127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = CountListener(ln, c)
	defer ln.Close()
	for range 2 {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := conn.(interface{ CloseWrite() error }); !ok {
			t.Fatal("the counted connection hides CloseWrite")
		}
		if open := c.open.Load(); open != 1 {
			t.Fatalf("open %d with one connection", open)
		}
		conn.Close()
		conn.Close() // counted once
	}
	if c.accepted.Load() != 2 || c.open.Load() != 0 {
		t.Fatalf("accepted %d open %d, want 2 and 0", c.accepted.Load(), c.open.Load())
	}
}

func TestReadyNeedsALivePool(t *testing.T) {
	for _, tc := range []struct {
		p    PoolSnapshot
		live bool
	}{
		{PoolSnapshot{}, true},
		{PoolSnapshot{Idle: 1}, true},
		{PoolSnapshot{BackoffSeconds: 1}, false},
		{PoolSnapshot{Busy: 1, BackoffSeconds: 1}, true},
	} {
		if tc.p.Live() != tc.live {
			t.Errorf("%+v: live %v", tc.p, !tc.live)
		}
	}
}
