package examples_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// statusRoutes are the routes the status examples' comments ask for; the
// test checks that each example still shows them.
const statusRoutes = `
[[route]]
name = "status"
path = "/fcgi-bridge/status"     # ?format=prometheus, json or text
kind = "status"

[[route]]
name = "ping"
path = "/fcgi-bridge/ping"
kind = "ping"

[[route]]
name = "ready"
path = "/fcgi-bridge/ready"
kind = "ready"
`

func TestStatusExamplesShowTheirRoutes(t *testing.T) {
	for _, f := range []string{"status-nginx.conf", "status-apache.conf"} {
		text := read(t, f)
		var commented strings.Builder
		for _, line := range strings.Split(text, "\n") {
			if rest, ok := strings.CutPrefix(line, "#     "); ok {
				commented.WriteString(rest + "\n")
			}
		}
		want := strings.ReplaceAll(strings.TrimPrefix(statusRoutes, "\n"), "\n\n", "\n")
		if !strings.Contains(commented.String(), want) {
			t.Errorf("%s does not show the bridge routes it needs:\n%s", f, commented.String())
		}
		if !strings.Contains(text, "127.0.0.1") || !strings.Contains(text, "::1") {
			t.Errorf("%s is not restricted to localhost", f)
		}
	}
}

// startStatusBridge runs the bridge on examples/fcgi-bridge.toml with the
// status routes added, as docs/operations.md tells a user to, on a 0660
// socket in the web server's group.
func startStatusBridge(t *testing.T) *runningBridge {
	t.Helper()
	requireRoot(t, "the web server runs as www-data against the bridge's 0660 socket")
	return startBridge(t, runDir(t), "www-data", statusRoutes)
}

// fetchFrom GETs url with the client's address set to from.
func fetchFrom(t *testing.T, from, url string) (int, string, string) {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, from, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// checkStatusSite asks the web server in front of the bridge for each
// answer from localhost, and for the status from another address, which
// must be refused.
func checkStatusSite(t *testing.T, base string) {
	t.Helper()
	if code, _, body := fetchFrom(t, "127.0.0.1", base+"/fcgi-bridge/ping"); code != 200 || body != "pong\n" {
		t.Fatalf("ping: %d %q", code, body)
	}
	if code, _, body := fetchFrom(t, "127.0.0.1", base+"/fcgi-bridge/ready"); code != 200 {
		t.Fatalf("ready: %d %q", code, body)
	}
	code, ctype, body := fetchFrom(t, "127.0.0.1", base+"/fcgi-bridge/status?format=prometheus")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("metrics: %d %q\n%s", code, ctype, body)
	}
	m, err := metrics.ParseText(body)
	if err != nil {
		t.Fatalf("metrics through the web server: %v\n%s", err, body)
	}
	if m[`fcgi_bridge_route_requests_total{class="2xx",route="ping"}`] != 1 {
		t.Errorf("the ping went through the web server but the bridge counted %v", m[`fcgi_bridge_route_requests_total{class="2xx",route="ping"}`])
	}
	if code, _, body := fetchFrom(t, "127.0.0.1", base+"/fcgi-bridge/status"); code != 200 || !strings.Contains(body, "routes") {
		t.Fatalf("status page: %d\n%s", code, body)
	}
	// 127.0.0.2 is this host too, but not an address the example allows:
	// it stands for any other client.
	if code, _, body := fetchFrom(t, "127.0.0.2", base+"/fcgi-bridge/status"); code != http.StatusForbidden {
		t.Fatalf("status from 127.0.0.2: %d, want 403\n%s", code, body)
	}
}

func TestStatusNginxLive(t *testing.T) {
	nginx := testenv.Require(t, "nginx")
	params := "/etc/nginx/fastcgi_params"
	if !fileExists(params) {
		testenv.Missing(t, params+" is missing (Debian: nginx-common)")
	}
	b := startStatusBridge(t)
	dir := instanceDir(t, "nginx-status")
	port := testenv.FreePort(t)
	writeFile(t, filepath.Join(dir, "fastcgi_params"), read(t, params))
	writeFile(t, filepath.Join(dir, "status.conf"), read(t, "status-nginx.conf"))
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, fmt.Sprintf(`user www-data www-data;
pid nginx.pid;
events {}
http {
    access_log off;
    upstream fcgi_bridge {
        server unix:%s;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:%d;
        include status.conf;
    }
}
`, b.sock, port))
	s := peers.StartProcess(t, peers.Process{Name: "nginx", Port: port, Dir: dir,
		Argv:     []string{nginx, "-p", dir, "-e", "error.log", "-c", conf, "-g", "daemon off;"},
		LogFiles: []string{filepath.Join(dir, "error.log")}})
	checkStatusSite(t, s.URL())
}

func TestStatusApacheLive(t *testing.T) {
	apache := testenv.Require(t, "apache2")
	b := startStatusBridge(t)
	dir := instanceDir(t, "apache-status")
	port := testenv.FreePort(t)
	inc := filepath.Join(dir, "status.conf")
	var mods strings.Builder
	for _, m := range []string{"authz_host", "proxy", "proxy_fcgi"} {
		fmt.Fprintf(&mods, "LoadModule %s_module modules/mod_%s.so\n", m, m)
	}
	writeFile(t, inc, mods.String()+strings.ReplaceAll(read(t, "status-apache.conf"), socketPath, b.sock))
	conf := apacheStandalone(t, dir, port, inc)
	runOK(t, nil, apache, "-t", "-f", conf)
	s := peers.StartProcess(t, peers.Process{Name: "apache2", Port: port, Dir: dir,
		Argv: []string{apache, "-f", conf, "-DFOREGROUND"}, LogFiles: []string{filepath.Join(dir, "error.log")}})
	checkStatusSite(t, s.URL())
}
