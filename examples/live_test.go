package examples_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// The live tests run each example file as it is, with only its paths and
// ports moved into a test directory, in front of a real fcgi-bridge on the
// embedded default configuration, and fetch a page through it. The syntax
// checks prove the files load; these prove they work (a <Proxy> string that
// does not match its SetHandler, say, passes apache2 -t).

var (
	buildOnce   sync.Once
	bridgeBin   string
	buildErr    error
	buildOutput []byte
)

// bridgeBinary builds the command once for all live tests.
func bridgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "examples-bridge-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // workers of the web servers run as another user
		bridgeBin = filepath.Join(dir, "fcgi-bridge")
		buildOutput, buildErr = exec.Command("go", "build", "-o", bridgeBin, "../cmd/fcgi-bridge").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build fcgi-bridge: %v\n%s", buildErr, buildOutput)
	}
	return bridgeBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bridgeBin != "" {
		os.RemoveAll(filepath.Dir(bridgeBin))
	}
	os.Exit(code)
}

func freePort(t *testing.T) string { return strconv.Itoa(testenv.FreePort(t)) }

// site is the test directory: reachable by the web servers' workers, with
// run/ for the bridge's socket and www/ as a document root.
type site struct {
	dir, sock, tcpPort string
}

func newSite(t *testing.T) *site {
	t.Helper()
	dir, err := os.MkdirTemp("", "examples-live-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, d := range []string{"run", "www", "logs"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	os.Chmod(filepath.Join(dir, "logs"), 0o777)
	return &site{dir: dir, sock: filepath.Join(dir, "run", "fcgi.sock"), tcpPort: freePort(t)}
}

// rewrite moves an example's socket, TCP port and document root into the site.
func (s *site) rewrite(text string) string {
	r := strings.NewReplacer(
		socketPath, s.sock,
		tcpAddr, "127.0.0.1:"+s.tcpPort,
		`"port" => 9000`, `"port" => `+s.tcpPort,
		"/var/www/html", filepath.Join(s.dir, "www"),
	)
	return r.Replace(text)
}

// workerGroup is the group the web servers' workers run in when the tests
// run as root; the bridge's socket is given that group, as docs/deploy.md says.
func workerGroup() (userName, groupName string, gid int) {
	for _, c := range [][2]string{{"www-data", "www-data"}, {"nobody", "nogroup"}} {
		if _, err := user.Lookup(c[0]); err != nil {
			continue
		}
		g, err := user.LookupGroup(c[1])
		if err != nil {
			continue
		}
		id, _ := strconv.Atoi(g.Gid)
		return c[0], c[1], id
	}
	return "", "", -1
}

// startBridge runs fcgi-bridge on the embedded default with the site's unix
// socket and TCP port, and gives the socket the workers' group.
func (s *site) startBridge(t *testing.T) *lockedLog {
	t.Helper()
	cmd := exec.Command(bridgeBinary(t), "--listen", "unix:"+s.sock, "--listen", "tcp:127.0.0.1:"+s.tcpPort)
	log := &lockedLog{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("bridge log:\n%s", log)
		}
	})
	waitDial(t, "unix", s.sock)
	if _, _, gid := workerGroup(); gid >= 0 && os.Geteuid() == 0 {
		os.Chown(s.sock, -1, gid)
	}
	return log
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitDial(t *testing.T, network, addr string) {
	t.Helper()
	if err := testenv.WaitListening(network, addr, nil, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// startServer runs a web server in the foreground and stops it at the end.
func startServer(t *testing.T, port string, logs []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out := &lockedLog{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out)
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	waitDial(t, "tcp", "127.0.0.1:"+port)
}

// fetchRendered posts JSON to url and checks that the bridge rendered it to
// HTML with its sample transform.
func fetchRendered(t *testing.T, url string) {
	t.Helper()
	if err := rendered(url); err != nil {
		t.Fatal(err)
	}
}

func rendered(url string) error {
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"name":"<b>bridge</b>"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "<dt>name</dt><dd>&lt;b&gt;bridge&lt;/b&gt;</dd>") {
		return fmt.Errorf("POST %s: %d %q\n%s", url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return nil
}

func TestNginxLive(t *testing.T) {
	nginx := testenv.Require(t, "nginx")
	s := newSite(t)
	bridgeLog := s.startBridge(t)
	port := freePort(t)
	conf := strings.Replace(s.rewrite(read(t, "nginx.conf")), "listen 127.0.0.1:8080;", "listen 127.0.0.1:"+port+";", 1)
	if u, g, _ := workerGroup(); u != "" && os.Geteuid() == 0 {
		conf = "user " + u + " " + g + ";\n" + conf
	}
	params := "/etc/nginx/fastcgi_params"
	if _, err := os.Stat(params); err != nil {
		testenv.Missing(t, params+" is missing (Debian: nginx-common)")
	}
	writeFile(t, filepath.Join(s.dir, "fastcgi_params"), read(t, params))
	writeFile(t, filepath.Join(s.dir, "nginx.conf"), conf)
	errLog := filepath.Join(s.dir, "logs", "error.log")
	startServer(t, port, []string{errLog}, nginx, "-p", s.dir, "-c", filepath.Join(s.dir, "nginx.conf"),
		"-e", errLog, "-g", "daemon off; pid "+filepath.Join(s.dir, "nginx.pid")+";")
	for range 3 { // keep-alive: the same upstream connection serves them all
		fetchRendered(t, "http://127.0.0.1:"+port+"/app/page")
	}
	// The access line is written once the response is out, so it may trail.
	if !testenv.Poll(5*time.Second, func() bool { return strings.Count(bridgeLog.String(), "route=render") >= 3 }) {
		t.Fatalf("the bridge logged %d rendered requests, want 3", strings.Count(bridgeLog.String(), "route=render"))
	}
}

func TestApacheLive(t *testing.T) {
	apache := testenv.Require(t, "apache2")
	s := newSite(t)
	s.startBridge(t)
	modDir := ""
	for _, d := range apacheModuleDirs {
		if _, err := os.Stat(filepath.Join(d, "mod_proxy_fcgi.so")); err == nil {
			modDir = d
		}
	}
	if modDir == "" {
		testenv.Missing(t, "mod_proxy_fcgi.so not found")
	}
	port := freePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %s\nServerName localhost\nListen 127.0.0.1:%s\nPidFile %s/httpd.pid\nErrorLog %s/logs/error.log\n", s.dir, port, s.dir, s.dir)
	fmt.Fprintf(&b, "DefaultRuntimeDir %s/logs\n", s.dir)
	for _, m := range []string{"mpm_event", "authz_core", "authz_user", "authn_core", "auth_basic", "proxy", "proxy_fcgi", "authnz_fcgi"} {
		fmt.Fprintf(&b, "LoadModule %s_module %s/mod_%s.so\n", m, modDir, m)
	}
	if u, g, _ := workerGroup(); u != "" && os.Geteuid() == 0 {
		fmt.Fprintf(&b, "User %s\nGroup %s\n", u, g)
	}
	writeFile(t, filepath.Join(s.dir, "example.conf"), s.rewrite(read(t, "../apache-example.conf")))
	fmt.Fprintf(&b, "Include %s/example.conf\n", s.dir)
	writeFile(t, filepath.Join(s.dir, "httpd.conf"), b.String())
	startServer(t, port, []string{filepath.Join(s.dir, "logs", "error.log")}, apache, "-f", filepath.Join(s.dir, "httpd.conf"), "-DFOREGROUND")
	fetchRendered(t, "http://127.0.0.1:"+port+"/app/page")    // unix socket, SetHandler
	fetchRendered(t, "http://127.0.0.1:"+port+"/render/page") // TCP, ProxyPass
}

func TestLighttpdLive(t *testing.T) {
	lighttpd := testenv.Require(t, "lighttpd")
	s := newSite(t)
	s.startBridge(t)
	port := freePort(t)
	conf := strings.Replace(s.rewrite(read(t, "lighttpd.conf")), "server.port          = 8081", "server.port          = "+port, 1)
	writeFile(t, filepath.Join(s.dir, "lighttpd.conf"), conf)
	startServer(t, port, nil, lighttpd, "-D", "-f", filepath.Join(s.dir, "lighttpd.conf"))
	fetchRendered(t, "http://127.0.0.1:"+port+"/app/page")
}

func TestHAProxyLive(t *testing.T) {
	haproxy := testenv.Require(t, "haproxy")
	s := newSite(t)
	s.startBridge(t)
	port := freePort(t)
	conf := strings.Replace(s.rewrite(read(t, "haproxy.cfg")), "bind 127.0.0.1:8082", "bind 127.0.0.1:"+port, 1)
	writeFile(t, filepath.Join(s.dir, "haproxy.cfg"), conf)
	startServer(t, port, nil, haproxy, "-db", "-f", filepath.Join(s.dir, "haproxy.cfg"))
	// Concurrent requests travel multiplexed over the kept connection.
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- rendered("http://127.0.0.1:" + port + "/app/page") }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestCaddyLive runs the Caddyfile in front of the bridge (.ci/run
// installs caddy).
func TestCaddyLive(t *testing.T) {
	caddy := testenv.Require(t, "caddy")
	s := newSite(t)
	s.startBridge(t)
	port := freePort(t)
	// No admin endpoint: it would take port 2019, shared by every caddy.
	conf := "{\n\tadmin off\n}\n" + strings.Replace(s.rewrite(read(t, "Caddyfile")), ":8083 {", ":"+port+" {", 1)
	writeFile(t, filepath.Join(s.dir, "Caddyfile"), conf)
	t.Setenv("XDG_DATA_HOME", s.dir)
	t.Setenv("XDG_CONFIG_HOME", s.dir)
	startServer(t, port, nil, caddy, "run", "--config", filepath.Join(s.dir, "Caddyfile"), "--adapter", "caddyfile")
	fetchRendered(t, "http://127.0.0.1:"+port+"/app/page")
	resp, err := http.Get("http://127.0.0.1:" + port + "/app/page?format=json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Status") != "" {
		t.Errorf("the CGI Status line leaked to the client as a header: %q", resp.Header.Get("Status"))
	}
}
