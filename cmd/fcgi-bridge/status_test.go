package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

const statusConfig = `
[[listen]]
addr = "unix:%s"

[[listen]]
addr = "tcp:127.0.0.1:%d"
allow = ["10.0.0.0/8"]

[transform.note]
command = ["@self", "transform", "annotate"]
min = 1
max = 2

[[route]]
name = "metrics"
path = "/metrics"
kind = "status"
format = "prometheus"

[[route]]
name = "all"
source = "body"
transform = ["note"]
`

// TestDaemonMetrics checks what only the daemon knows: listener counts
// (one connection refused by the allow list), the version, the
// configuration hash, and the result of a refused reload.
func TestDaemonMetrics(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bridge.sock")
	port := testenv.FreePort(t)
	cfgPath := filepath.Join(dir, "bridge.toml")
	good := fmt.Sprintf(statusConfig, sock, port)
	os.WriteFile(cfgPath, []byte(good), 0o644)
	d := start(t, "-c", cfgPath)
	c := unixClient(sock)
	defer c.Close()

	const n = 3
	for range n {
		if resp, err := do(ctxTimeout(t, 10*time.Second), c, request{body: "x", ctype: "text/plain"}); err != nil || resp.status != 200 {
			t.Fatalf("request: %v %v", resp, err)
		}
	}
	// 127.0.0.1 is outside the allow list: the bridge closes at once.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(fmt.Sprint(err), "reset") {
		t.Fatalf("refused connection: %v", err)
	}
	conn.Close()

	os.WriteFile(cfgPath, []byte(good+"\n[server]\nno_such_key = 1\n"), 0o644)
	d.signal(syscall.SIGHUP)
	if _, ok := d.log.WaitFor("reload failed", 10*time.Second); !ok {
		t.Fatal("no reload failure logged")
	}

	scrape := func() map[string]float64 {
		t.Helper()
		resp, err := do(ctxTimeout(t, 10*time.Second), c, request{method: "GET", uri: "/metrics"})
		if err != nil || resp.status != 200 {
			t.Fatalf("scrape: %v %v", resp, err)
		}
		m, err := metrics.ParseText(resp.body)
		if err != nil {
			t.Fatalf("%v\n%s", err, resp.body)
		}
		return m
	}
	m := scrape()
	unixL, tcpL := fmt.Sprintf(`{listener="unix:%s"}`, sock), fmt.Sprintf(`{listener="tcp:127.0.0.1:%d"}`, port)
	for series, want := range map[string]float64{
		`fcgi_bridge_route_requests_total{class="2xx",route="all"}`: n,
		`fcgi_bridge_listener_connections_refused_total` + tcpL:     1,
		`fcgi_bridge_listener_connections_accepted_total` + tcpL:    0,
		`fcgi_bridge_reloads_total{result="failed"}`:                1,
		`fcgi_bridge_reloads_total{result="ok"}`:                    0,
		`fcgi_bridge_last_reload_success`:                           0,
		`fcgi_bridge_pool_processes{pool="note",state="idle"}`:      1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	if m[`fcgi_bridge_listener_connections_accepted_total`+unixL] < n+1 {
		t.Errorf("accepted connections on the unix listener: %v, want at least %d", m[`fcgi_bridge_listener_connections_accepted_total`+unixL], n+1)
	}
	// The scrape's own connection is open while the answer is made; the
	// earlier ones may still be closing.
	if m[`fcgi_bridge_listener_connections_open`+unixL] < 1 {
		t.Errorf("no open connection counted on the unix listener")
	}
	hash := ""
	for k := range m {
		if strings.HasPrefix(k, "fcgi_bridge_config_info{") {
			hash = k
		}
	}
	if !strings.Contains(hash, `hash="sha256:`) || !strings.Contains(hash, cfgPath) {
		t.Errorf("config info %q", hash)
	}

	// A reload that takes changes the hash and the result.
	os.WriteFile(cfgPath, []byte(strings.Replace(good, "max = 2", "max = 3", 1)), 0o644)
	d.signal(syscall.SIGHUP)
	if _, ok := d.log.WaitFor("configuration reloaded", 10*time.Second); !ok {
		t.Fatal("no reload")
	}
	m = scrape()
	if m[`fcgi_bridge_reloads_total{result="ok"}`] != 1 || m[`fcgi_bridge_last_reload_success`] != 1 {
		t.Errorf("after a good reload: ok %v, success %v", m[`fcgi_bridge_reloads_total{result="ok"}`], m[`fcgi_bridge_last_reload_success`])
	}
	if _, same := m[hash]; same {
		t.Errorf("the configuration hash did not change with the configuration")
	}
	if m[`fcgi_bridge_route_requests_total{class="2xx",route="all"}`] != n {
		t.Errorf("route counters did not survive the reload")
	}
}
