package examples_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
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

// startStatusBridge runs the bridge with only the status routes, on the
// site's unix socket.
func (s *site) startStatusBridge(t *testing.T) {
	t.Helper()
	cfg := filepath.Join(s.dir, "bridge.toml")
	writeFile(t, cfg, fmt.Sprintf("[[listen]]\naddr = \"unix:%s\"\n", s.sock)+statusRoutes)
	s.runBridge(t, "-c", cfg)
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
	if _, err := os.Stat(params); err != nil {
		testenv.Missing(t, params+" is missing (Debian: nginx-common)")
	}
	s := newSite(t)
	s.startStatusBridge(t)
	port := freePort(t)
	writeFile(t, filepath.Join(s.dir, "fastcgi_params"), read(t, params))
	writeFile(t, filepath.Join(s.dir, "status.conf"), s.rewrite(read(t, "status-nginx.conf")))
	conf := fmt.Sprintf(`events {}
http {
    upstream fcgi_bridge {
        server unix:%s;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:%s;
        include %s/status.conf;
    }
}
`, s.sock, port, s.dir)
	if u, g, _ := workerGroup(); u != "" && os.Geteuid() == 0 {
		conf = "user " + u + " " + g + ";\n" + conf
	}
	writeFile(t, filepath.Join(s.dir, "nginx.conf"), conf)
	errLog := filepath.Join(s.dir, "logs", "error.log")
	startServer(t, port, []string{errLog}, nginx, "-p", s.dir, "-c", filepath.Join(s.dir, "nginx.conf"),
		"-e", errLog, "-g", "daemon off; pid "+filepath.Join(s.dir, "nginx.pid")+";")
	checkStatusSite(t, "http://127.0.0.1:"+port)
}

func TestStatusApacheLive(t *testing.T) {
	apache := testenv.Require(t, "apache2")
	modDir := ""
	for _, d := range apacheModuleDirs {
		if _, err := os.Stat(filepath.Join(d, "mod_proxy_fcgi.so")); err == nil {
			modDir = d
		}
	}
	if modDir == "" {
		testenv.Missing(t, "mod_proxy_fcgi.so not found")
	}
	s := newSite(t)
	s.startStatusBridge(t)
	port := freePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %s\nServerName localhost\nListen 127.0.0.1:%s\nPidFile %s/httpd.pid\nErrorLog %s/logs/error.log\n", s.dir, port, s.dir, s.dir)
	fmt.Fprintf(&b, "DefaultRuntimeDir %s/logs\n", s.dir)
	for _, m := range []string{"mpm_event", "authz_core", "authz_host", "proxy", "proxy_fcgi"} {
		fmt.Fprintf(&b, "LoadModule %s_module %s/mod_%s.so\n", m, modDir, m)
	}
	if u, g, _ := workerGroup(); u != "" && os.Geteuid() == 0 {
		fmt.Fprintf(&b, "User %s\nGroup %s\n", u, g)
	}
	writeFile(t, filepath.Join(s.dir, "status.conf"), s.rewrite(read(t, "status-apache.conf")))
	fmt.Fprintf(&b, "Include %s/status.conf\n", s.dir)
	writeFile(t, filepath.Join(s.dir, "httpd.conf"), b.String())
	startServer(t, port, []string{filepath.Join(s.dir, "logs", "error.log")}, apache, "-f", filepath.Join(s.dir, "httpd.conf"), "-DFOREGROUND")
	checkStatusSite(t, "http://127.0.0.1:"+port)
}
