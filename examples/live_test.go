package examples_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// The live tests deploy each example the two ways docs/deploy.md gives: the
// file on its own, and the Debian route into a copy of the server's packaged
// /etc tree. The server runs as its packaged user (its own configuration
// says so, or it is started as that user, like Caddy under systemd) in
// front of a real fcgi-bridge on examples/fcgi-bridge.toml, whose socket is
// mode 0660 in the group the docs name for that server. The only changes
// made to the files are those the docs tell a user to make (ports, the
// socket's directory and group) and, in the copies of /etc, the places the
// packaged server writes to (pid, logs, run directories), so that tests can
// run side by side.

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
		os.Chmod(dir, 0o755) // the web servers' users need to reach nothing here, but ls helps
		bridgeBin = filepath.Join(dir, "fcgi-bridge")
		buildOutput, buildErr = exec.Command("go", "build", "-o", bridgeBin, "../cmd/fcgi-bridge").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build fcgi-bridge: %v\n%s", buildErr, buildOutput)
	}
	return bridgeBin
}

// cleanups run once every test has finished (shared temporary trees).
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	if bridgeBin != "" {
		os.RemoveAll(filepath.Dir(bridgeBin))
	}
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// requireRoot skips (or fails under CI) a test that needs root, saying why.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "not root: "+why)
	}
}

// serversAsRoot is why the live tests need root.
const serversAsRoot = "the web servers are started as root, as their packages do, so that they run as their packaged users"

// packaged looks up a server's packaged user and its group.
func packaged(t *testing.T, userName, groupName string) (uid int) {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("no user %s (it comes with the server's Debian package)", userName))
	}
	if _, err := user.LookupGroup(groupName); err != nil {
		testenv.Missing(t, fmt.Sprintf("no group %s (it comes with the server's Debian package)", groupName))
	}
	uid, _ = strconv.Atoi(u.Uid)
	return uid
}

// runningBridge is a running fcgi-bridge on examples/fcgi-bridge.toml.
type runningBridge struct {
	sock string         // its unix socket
	log  *testenv.Lines // what it logs
	stop func()         // TERM, then wait for the exit; also run at cleanup
}

// startBridge runs the bridge on examples/fcgi-bridge.toml with the socket
// moved to sock and given group, the two settings docs/deploy.md tells a
// user to adapt. sock's directory must exist: it stands for /run/fcgi-bridge.
// extra is appended to the configuration (more listeners).
func startBridge(t *testing.T, sock, group, extra string) *runningBridge {
	t.Helper()
	return startBridgeAs(t, nil, sock, group, extra)
}

// startBridgeAs is startBridge with the bridge running as cred (nil: as
// the test).
func startBridgeAs(t *testing.T, cred *syscall.Credential, sock, group, extra string) *runningBridge {
	t.Helper()
	cfg := strings.NewReplacer(
		"unix:"+socketPath, "unix:"+sock,
		`group = "www-data"`, fmt.Sprintf("group = %q", group),
	).Replace(read(t, "fcgi-bridge.toml")) + extra
	file := filepath.Join(instanceDir(t, "bridge"), "fcgi-bridge.toml")
	writeFile(t, file, cfg)
	cmd := exec.Command(bridgeBinary(t), "-c", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	log := testenv.NewLines(stderr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("bridge log:\n%s", log)
		}
	})
	if _, ok := log.WaitFor("fcgi-bridge started", 20*time.Second); !ok {
		t.Fatalf("the bridge did not start on %s:\n%s", file, log)
	}
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := user.LookupGroup(group)
	if st.Mode().Perm() != 0o660 || strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Gid)) != g.Gid {
		t.Fatalf("socket %s: mode %v gid %d, want 0660 in group %s", sock, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, group)
	}
	return &runningBridge{sock: sock, log: log, stop: stop}
}

// runDir makes a directory standing for /run/fcgi-bridge: root's, 0755, as
// docs/deploy.md creates it.
func runDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(peers.SocketDir(t), "fcgi.sock")
}

// instanceDir is where a server's copied configuration and its files go.
// The packaged users must be able to read it.
func instanceDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "examples-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// marked returns the lines of an example between its "NAME: from here" and
// "NAME: to here" markers: the part docs/deploy.md tells Debian users to copy.
func marked(t *testing.T, text, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, name+": from here ---\n")
	if !ok {
		t.Fatalf("no %q start marker", name)
	}
	part, _, ok := strings.Cut(rest, "# --- "+name+": to here")
	if !ok {
		t.Fatalf("no %q end marker", name)
	}
	return part
}

// copyTree copies a packaged configuration directory (files, directories
// and symbolic links as they are) to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if _, err := os.Stat(src); err != nil {
		testenv.Missing(t, src+" is missing (it comes with the server's Debian package)")
	}
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", src, err, out)
	}
}

// packagedCopy makes an instance directory holding a copy of a server's
// packaged configuration directory src, and returns both.
func packagedCopy(t *testing.T, name, src string) (dir, etc string) {
	t.Helper()
	dir = instanceDir(t, name)
	etc = filepath.Join(dir, filepath.Base(src))
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, src, etc)
	return dir, etc
}

// edit replaces in a copied file; each old string must be there.
func edit(t *testing.T, path string, oldNew ...string) {
	t.Helper()
	s := read(t, path)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("%s: %q not found", path, oldNew[i])
		}
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	writeFile(t, path, s)
}

func runOK(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

const appJSON = `{"name":"<b>bridge</b>"}`

// checkServed asks the server for a page under /app/ (transformed), the same
// with ?format=json (the bridge's untransformed bypass) and one outside
// /app/ (404 from the server), and checks that the server runs as uid.
func checkServed(t *testing.T, s *peers.Server, uid int, b *runningBridge) {
	t.Helper()
	checkServedRoute(t, s, uid, b)
}

// checkStandalone is checkServed plus what a standalone example promises
// besides: it serves on loopback only.
func checkStandalone(t *testing.T, s *peers.Server, uid int, b *runningBridge) {
	t.Helper()
	checkServedRoute(t, s, uid, b)
	checkLoopbackOnly(t, s.Port)
}

func checkServedRoute(t *testing.T, s *peers.Server, uid int, b *runningBridge) {
	t.Helper()
	url := s.URL("/app/a/b?q=1")
	code, ctype, body := post(t, url, "text/html")
	if code != 200 || !strings.HasPrefix(ctype, "text/html") ||
		!strings.Contains(body, "<dt>name</dt><dd>&lt;b&gt;bridge&lt;/b&gt;</dd>") {
		t.Fatalf("POST %s: %d %q, want the rendered page:\n%s", url, code, ctype, body)
	}
	// The transform saw the URL the client asked for, whichever server it was.
	if want := "Rendered by fcgi-bridge for <code>" + html.EscapeString(url) + "</code>"; !strings.Contains(body, want) {
		t.Errorf("POST %s: the page does not say %q:\n%s", url, want, body)
	}
	url = s.URL("/app/a/b?format=json")
	if code, _, body := post(t, url, "application/json"); code != 200 || body != appJSON {
		t.Errorf("POST %s: %d %q, want 200 and the body untransformed", url, code, body)
	}
	url = s.URL("/elsewhere/a")
	if code, _, body := post(t, url, "text/html"); code != 404 {
		t.Errorf("POST %s: %d, want 404 from the web server:\n%s", url, code, body)
	}
	if n := b.log.Count("/elsewhere"); n != 0 {
		t.Errorf("a request outside /app/ reached the bridge:\n%s", b.log)
	}
	if uids := s.UIDs(); !slices.Contains(uids, uid) {
		t.Errorf("%s runs as uids %v, none of them its packaged user's (%d)", s.Name, uids, uid)
	}
}

func post(t *testing.T, url, accept string) (int, string, string) {
	t.Helper()
	code, ctype, body, err := postErr(url, accept)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return code, ctype, body
}

// postErr POSTs the app's JSON to url, for callers that poll and must not
// fail on a refused connection.
func postErr(url, accept string) (int, string, string, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(appJSON))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body), err
}

// ---- nginx ----

func TestNginxLive(t *testing.T) {
	nginx := testenv.Require(t, "nginx")
	requireRoot(t, serversAsRoot)
	uid := packaged(t, "www-data", "www-data")
	example := read(t, "nginx.conf")

	t.Run("standalone", func(t *testing.T) {
		b := startBridge(t, runDir(t), "www-data", "")
		checkStandalone(t, nginxStandalone(t, b.sock), uid, b)
	})

	// docs/deploy.md, "Without systemd": the bridge as a user of its own,
	// a member of www-data, in a run directory it owns.
	t.Run("without-systemd", func(t *testing.T) {
		u, err := user.Lookup("nobody")
		if err != nil {
			testenv.Missing(t, "no user nobody to run the bridge as")
		}
		bridgeUID, _ := strconv.Atoi(u.Uid)
		bridgeGID, _ := strconv.Atoi(u.Gid)
		g, _ := user.LookupGroup("www-data")
		wwwData, _ := strconv.Atoi(g.Gid)
		run := filepath.Join(instanceDir(t, "run"), "fcgi-bridge")
		runOK(t, nil, "install", "-d", "-m", "0755", "-o", u.Uid, "-g", u.Gid, run)
		// usermod -aG www-data, as far as the bridge's process is concerned.
		as := &syscall.Credential{Uid: uint32(bridgeUID), Gid: uint32(bridgeGID), Groups: []uint32{uint32(wwwData)}}
		b := startBridgeAs(t, as, filepath.Join(run, "fcgi.sock"), "www-data", "")
		checkServed(t, nginxStandalone(t, b.sock), uid, b)
	})

	t.Run("debian", func(t *testing.T) {
		b := startBridge(t, runDir(t), "www-data", "")
		port, sitePort := testenv.FreePort(t), testenv.FreePort(t)
		dir, etc := packagedCopy(t, "nginx-debian", "/etc/nginx")
		// Where the packaged nginx writes, and its default site's port.
		edit(t, filepath.Join(etc, "nginx.conf"),
			"/run/nginx.pid", filepath.Join(dir, "nginx.pid"),
			"/var/log/nginx/", dir+"/",
			"/etc/nginx/", etc+"/")
		if def := filepath.Join(etc, "sites-available", "default"); fileExists(def) {
			os.Remove(filepath.Join(etc, "sites-enabled", "default"))
			edit(t, def, "listen 80 default_server;", fmt.Sprintf("listen 127.0.0.1:%d default_server;", sitePort),
				"listen [::]:80 default_server;", "")
			os.Symlink("../sites-available/default", filepath.Join(etc, "sites-enabled", "default"))
		}
		// The steps of docs/deploy.md: the marked blocks into
		// sites-available, linked into sites-enabled.
		writeFile(t, filepath.Join(etc, "sites-available", "fcgi-bridge"), strings.NewReplacer(
			socketPath, b.sock,
			"listen 127.0.0.1:8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
		).Replace(marked(t, example, "sites-available/fcgi-bridge")))
		if err := os.Symlink("../sites-available/fcgi-bridge", filepath.Join(etc, "sites-enabled", "fcgi-bridge")); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(etc, "nginx.conf")
		errLog := filepath.Join(dir, "error.log")
		runOK(t, nil, nginx, "-t", "-e", errLog, "-c", conf)
		s := peers.StartProcess(t, peers.Process{Name: "nginx", Port: port, Dir: dir,
			Argv:     []string{nginx, "-e", errLog, "-c", conf, "-g", "daemon off;"},
			LogFiles: []string{errLog}})
		checkServed(t, s, uid, b)
	})
}

// nginxStandalone runs examples/nginx.conf on its own, with the commands
// of its header (/tmp/nginx-try made unique), in front of the socket sock.
func nginxStandalone(t *testing.T, sock string) *peers.Server {
	t.Helper()
	nginx := testenv.Require(t, "nginx")
	port := testenv.FreePort(t)
	conf := filepath.Join(instanceDir(t, "nginx-conf"), "nginx.conf")
	writeFile(t, conf, strings.NewReplacer(
		socketPath, sock,
		"listen 127.0.0.1:8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
	).Replace(read(t, "nginx.conf")))
	prefix := instanceDir(t, "nginx-try")
	runOK(t, nil, nginx, "-t", "-p", prefix, "-e", "error.log", "-c", conf)
	return peers.StartProcess(t, peers.Process{Name: "nginx", Port: port, Dir: prefix,
		Argv:     []string{nginx, "-p", prefix, "-e", "error.log", "-c", conf, "-g", "daemon off;"},
		LogFiles: []string{filepath.Join(prefix, "error.log")}})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ---- Apache ----

// apacheModuleDirs is where Debian (and most distributions) install the modules.
var apacheModuleDirs = []string{"/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules", "/usr/local/apache2/modules"}

func apacheModuleDir(t *testing.T) string {
	t.Helper()
	for _, d := range apacheModuleDirs {
		if fileExists(filepath.Join(d, "mod_proxy_fcgi.so")) {
			return d
		}
	}
	testenv.Missing(t, "mod_proxy_fcgi.so not found in "+strings.Join(apacheModuleDirs, ", "))
	return ""
}

// apacheStandalone is the part of a stock httpd.conf (as built from
// source) that the example relies on, with ServerRoot/modules the module
// directory: the "Elsewhere" route of apache-example.conf.
func apacheStandalone(t *testing.T, dir string, port int, include string) string {
	t.Helper()
	if err := os.Symlink(apacheModuleDir(t), filepath.Join(dir, "modules")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "htdocs"), 0o755)
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %q\nServerName localhost\nListen 127.0.0.1:%d\n", dir, port)
	fmt.Fprintf(&b, "PidFile httpd.pid\nDefaultRuntimeDir %q\nErrorLog error.log\nDocumentRoot %q\n", dir, filepath.Join(dir, "htdocs"))
	for _, m := range []string{"mpm_event", "authz_core", "authz_user", "authn_core", "auth_basic"} {
		fmt.Fprintf(&b, "LoadModule %s_module modules/mod_%s.so\n", m, m)
	}
	b.WriteString("User www-data\nGroup www-data\n")
	fmt.Fprintf(&b, "Include %q\n", include)
	conf := filepath.Join(dir, "httpd.conf")
	writeFile(t, conf, b.String())
	return conf
}

// apacheFromSource runs apache-example.conf included from the httpd.conf
// of a server built from source, in front of the socket sock and, for the
// TCP part, tcpPort.
func apacheFromSource(t *testing.T, sock string, tcpPort int) *peers.Server {
	t.Helper()
	apache := testenv.Require(t, "apache2")
	dir := instanceDir(t, "apache")
	inc := filepath.Join(dir, "fcgi-bridge.conf")
	writeFile(t, inc, strings.NewReplacer(socketPath, sock, tcpAddr, fmt.Sprintf("127.0.0.1:%d", tcpPort)).
		Replace(read(t, "../apache-example.conf")))
	port := testenv.FreePort(t)
	conf := apacheStandalone(t, dir, port, inc)
	runOK(t, nil, apache, "-t", "-f", conf)
	return peers.StartProcess(t, peers.Process{Name: "apache2", Port: port, Dir: dir,
		Argv: []string{apache, "-f", conf, "-DFOREGROUND"}, LogFiles: []string{filepath.Join(dir, "error.log")}})
}

// a2enmodLine is the module line apache-example.conf and docs/deploy.md give.
func a2enmodLine(t *testing.T) []string {
	t.Helper()
	for _, line := range strings.Split(read(t, "../apache-example.conf"), "\n") {
		if _, mods, ok := strings.Cut(line, "#   a2enmod "); ok {
			return strings.Fields(mods)
		}
	}
	t.Fatal("apache-example.conf has no a2enmod line")
	return nil
}

func TestApacheLive(t *testing.T) {
	testenv.Require(t, "apache2")
	requireRoot(t, serversAsRoot)
	uid := packaged(t, "www-data", "www-data")

	// The example with the socket moved and the TCP part on a free port.
	example := func(b *runningBridge, tcpPort int) string {
		return strings.NewReplacer(socketPath, b.sock, tcpAddr, fmt.Sprintf("127.0.0.1:%d", tcpPort)).
			Replace(read(t, "../apache-example.conf"))
	}
	tcpListener := func(port int) string {
		return fmt.Sprintf("\n[[listen]]\naddr = \"tcp:127.0.0.1:%d\"\n", port)
	}

	t.Run("standalone", func(t *testing.T) {
		tcpPort := testenv.FreePort(t)
		b := startBridge(t, runDir(t), "www-data", tcpListener(tcpPort))
		s := apacheFromSource(t, b.sock, tcpPort)
		checkStandalone(t, s, uid, b)
		// The TCP part of the example, through ProxyPass: the bridge
		// answers (examples/fcgi-bridge.toml has no route for /render/).
		post(t, s.URL("/render/page"), "text/html")
		if _, ok := b.log.WaitFor("uri=/render/page", 10*time.Second); !ok {
			t.Errorf("POST /render/page did not reach the bridge over TCP")
		}
	})

	t.Run("debian", func(t *testing.T) {
		apachectl := testenv.Require(t, "apachectl")
		a2enmod := testenv.Require(t, "a2enmod")
		a2enconf := testenv.Require(t, "a2enconf")
		tcpPort := testenv.FreePort(t)
		b := startBridge(t, runDir(t), "www-data", tcpListener(tcpPort))
		dir, etc := packagedCopy(t, "apache-debian", "/etc/apache2")
		for _, d := range []string{"run", "lock", "log", "state"} {
			os.Mkdir(filepath.Join(dir, d), 0o755)
		}
		// Where the packaged Apache writes, and its port.
		edit(t, filepath.Join(etc, "envvars"),
			"/var/run/apache2$SUFFIX", filepath.Join(dir, "run"),
			"/var/lock/apache2$SUFFIX", filepath.Join(dir, "lock"),
			"/var/log/apache2$SUFFIX", filepath.Join(dir, "log"))
		port := testenv.FreePort(t)
		edit(t, filepath.Join(etc, "ports.conf"), "Listen 80\n", fmt.Sprintf("Listen 127.0.0.1:%d\n", port))
		env := []string{"APACHE_CONFDIR=" + etc, "APACHE_STATE_DIRECTORY=" + filepath.Join(dir, "state")}

		// The steps of docs/deploy.md.
		runOK(t, env, a2enmod, append([]string{"-q"}, a2enmodLine(t)...)...)
		writeFile(t, filepath.Join(etc, "conf-available", "fcgi-bridge.conf"), example(b, tcpPort))
		runOK(t, env, a2enconf, "-q", "fcgi-bridge")
		runOK(t, env, apachectl, "configtest")
		s := peers.StartProcess(t, peers.Process{Name: "apache2", Port: port, Dir: dir,
			Argv: []string{apachectl, "-DFOREGROUND"}, Env: env,
			LogFiles: []string{filepath.Join(dir, "log", "error.log")}})
		checkServed(t, s, uid, b)
	})
}

// ---- lighttpd ----

func TestLighttpdLive(t *testing.T) {
	lighttpd := testenv.Require(t, "lighttpd")
	requireRoot(t, serversAsRoot)
	uid := packaged(t, "www-data", "www-data")
	example := read(t, "lighttpd.conf")

	t.Run("standalone", func(t *testing.T) {
		b := startBridge(t, runDir(t), "www-data", "")
		checkStandalone(t, lighttpdStandalone(t, b.sock), uid, b)
	})

	t.Run("debian", func(t *testing.T) {
		b := startBridge(t, runDir(t), "www-data", "")
		dir, etc := packagedCopy(t, "lighttpd-debian", "/etc/lighttpd")
		// Its log and upload directories belong to www-data, as the
		// package makes them.
		logs, uploads := filepath.Join(dir, "log"), filepath.Join(dir, "uploads")
		for _, d := range []string{logs, uploads} {
			os.Mkdir(d, 0o750)
			if err := os.Chown(d, uid, -1); err != nil {
				t.Fatal(err)
			}
		}
		port := testenv.FreePort(t)
		// Where the packaged lighttpd writes, and its port.
		conf := filepath.Join(etc, "lighttpd.conf")
		edit(t, conf,
			"server.port                 = 80", fmt.Sprintf("server.port                 = %d", port),
			"/var/log/lighttpd/", logs+"/",
			"/run/lighttpd.pid", filepath.Join(dir, "lighttpd.pid"),
			"/var/cache/lighttpd/uploads", uploads,
			"/etc/lighttpd/", etc+"/")
		// The steps of docs/deploy.md: the marked part into conf-available,
		// enabled as lighty-enable-mod does (a link in conf-enabled).
		writeFile(t, filepath.Join(etc, "conf-available", "15-fcgi-bridge.conf"),
			strings.ReplaceAll(marked(t, example, "conf-available/15-fcgi-bridge.conf"), socketPath, b.sock))
		if err := os.Symlink("../conf-available/15-fcgi-bridge.conf", filepath.Join(etc, "conf-enabled", "15-fcgi-bridge.conf")); err != nil {
			t.Fatal(err)
		}
		runOK(t, nil, lighttpd, "-tt", "-f", conf)
		s := peers.StartProcess(t, peers.Process{Name: "lighttpd", Port: port, Dir: dir,
			Argv: []string{lighttpd, "-D", "-f", conf}, LogFiles: []string{filepath.Join(logs, "error.log")}})
		checkServed(t, s, uid, b)
	})
}

// lighttpdStandalone runs examples/lighttpd.conf on its own in front of the
// socket sock.
func lighttpdStandalone(t *testing.T, sock string) *peers.Server {
	t.Helper()
	lighttpd := testenv.Require(t, "lighttpd")
	dir := instanceDir(t, "lighttpd")
	os.Mkdir(filepath.Join(dir, "www"), 0o755)
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "lighttpd.conf")
	writeFile(t, conf, strings.NewReplacer(
		socketPath, sock,
		"server.port          = 8081", fmt.Sprintf("server.port          = %d", port),
		"/var/www/html", filepath.Join(dir, "www"),
	).Replace(read(t, "lighttpd.conf")))
	runOK(t, nil, lighttpd, "-tt", "-f", conf)
	return peers.StartProcess(t, peers.Process{Name: "lighttpd", Port: port, Dir: dir,
		Argv: []string{lighttpd, "-D", "-f", conf}})
}

// ---- HAProxy ----

// haproxyChroot makes a directory standing for /var/lib/haproxy, with the
// bridge's socket directory inside as docs/deploy.md creates it, and
// returns it with the socket's path.
func haproxyChroot(t *testing.T) (chroot, sock string) {
	t.Helper()
	chroot = instanceDir(t, "haproxy-chroot")
	if err := os.Mkdir(filepath.Join(chroot, "fcgi-bridge"), 0o755); err != nil {
		t.Fatal(err)
	}
	return chroot, filepath.Join(chroot, "fcgi-bridge", "fcgi.sock")
}

func TestHAProxyLive(t *testing.T) {
	haproxy := testenv.Require(t, "haproxy")
	requireRoot(t, serversAsRoot)
	uid := packaged(t, "haproxy", "haproxy")
	example := read(t, "haproxy.cfg")

	t.Run("standalone", func(t *testing.T) {
		_, sock := haproxyChroot(t)
		b := startBridge(t, sock, "haproxy", "")
		s := haproxyStandalone(t, sock)
		checkStandalone(t, s, uid, b)
		// Several requests at once travel multiplexed on the kept connection.
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				code, _, body, err := postErr(s.URL("/app/x"), "text/html")
				if err != nil || code != 200 || !strings.Contains(body, "<dt>name</dt>") {
					errs <- fmt.Errorf("concurrent POST /app/x: %d %v\n%s", code, err, body)
					return
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("debian", func(t *testing.T) {
		stock := "/etc/haproxy/haproxy.cfg"
		if !fileExists(stock) {
			testenv.Missing(t, stock+" is missing (it comes with the haproxy package)")
		}
		chroot, sock := haproxyChroot(t)
		b := startBridge(t, sock, "haproxy", "")
		dir := instanceDir(t, "haproxy-debian")
		port := testenv.FreePort(t)
		// The packaged file with its chroot and stats socket moved; then
		// the marked part appended, as docs/deploy.md says.
		conf := filepath.Join(dir, "haproxy.cfg")
		writeFile(t, conf, read(t, stock))
		edit(t, conf, "chroot /var/lib/haproxy", "chroot "+chroot, "/run/haproxy/admin.sock", filepath.Join(dir, "admin.sock"))
		writeFile(t, conf, read(t, conf)+strings.Replace(marked(t, example, "haproxy.cfg"),
			"bind 127.0.0.1:8082", fmt.Sprintf("bind 127.0.0.1:%d", port), 1))
		runOK(t, nil, haproxy, "-c", "-q", "-f", conf)
		s := peers.StartProcess(t, peers.Process{Name: "haproxy", Port: port, Dir: dir,
			Argv: []string{haproxy, "-db", "-f", conf}})
		checkServed(t, s, uid, b)
	})
}

// haproxyStandalone runs examples/haproxy.cfg on its own in front of the
// socket sock, which is in a chroot made by haproxyChroot.
func haproxyStandalone(t *testing.T, sock string) *peers.Server {
	t.Helper()
	haproxy := testenv.Require(t, "haproxy")
	chroot := filepath.Dir(filepath.Dir(sock))
	dir := instanceDir(t, "haproxy")
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "haproxy.cfg")
	writeFile(t, conf, strings.NewReplacer(
		haproxyChrootDir, chroot,
		"bind 127.0.0.1:8082", fmt.Sprintf("bind 127.0.0.1:%d", port),
	).Replace(read(t, "haproxy.cfg")))
	runOK(t, nil, haproxy, "-c", "-q", "-f", conf)
	return peers.StartProcess(t, peers.Process{Name: "haproxy", Port: port, Dir: dir,
		Argv: []string{haproxy, "-db", "-f", conf}})
}

// ---- Caddy ----

// caddyAdmin keeps each test's Caddy off the admin port every Caddy takes
// by default (localhost:2019), so that instances can run side by side.
func caddyAdmin(dir string) string {
	return "{\n\tadmin unix/" + filepath.Join(dir, "admin.sock") + "\n}\n"
}

// caddyDirs makes the data and config directories Caddy writes to, owned
// by its user as /var/lib/caddy is.
func caddyDirs(t *testing.T, dir string) []string {
	t.Helper()
	u, _ := user.Lookup("caddy")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range []string{"data", "config"} {
		p := filepath.Join(dir, d)
		os.Mkdir(p, 0o700)
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil { // the admin socket
		t.Fatal(err)
	}
	return []string{"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
}

// caddyStandalone runs examples/Caddyfile on its own, as user caddy, in
// front of the socket sock.
func caddyStandalone(t *testing.T, sock string) *peers.Server {
	t.Helper()
	caddy := testenv.Require(t, "caddy")
	dir := instanceDir(t, "caddy")
	env := caddyDirs(t, dir)
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "Caddyfile")
	writeFile(t, conf, caddyAdmin(dir)+strings.NewReplacer(
		socketPath, sock,
		":8083 {", fmt.Sprintf(":%d {", port),
	).Replace(read(t, "Caddyfile")))
	return peers.StartProcess(t, peers.Process{Name: "caddy", Port: port, Dir: dir, User: "caddy", Env: env,
		Argv: []string{caddy, "run", "--config", conf, "--adapter", "caddyfile"}})
}

func TestCaddyLive(t *testing.T) {
	caddy := testenv.Require(t, "caddy")
	requireRoot(t, serversAsRoot)
	uid := packaged(t, "caddy", "caddy")
	example := read(t, "Caddyfile")

	t.Run("standalone", func(t *testing.T) {
		b := startBridge(t, runDir(t), "caddy", "")
		s := caddyStandalone(t, b.sock)
		checkStandalone(t, s, uid, b)
		resp, err := http.Get(s.URL("/app/page?format=json"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Status") != "" {
			t.Errorf("the CGI Status line leaked to the client as a header: %q", resp.Header.Get("Status"))
		}
	})

	t.Run("debian", func(t *testing.T) {
		stock := "/etc/caddy/Caddyfile"
		if !fileExists(stock) {
			testenv.Missing(t, stock+" is missing (it comes with the caddy package)")
		}
		b := startBridge(t, runDir(t), "caddy", "")
		dir := instanceDir(t, "caddy-debian")
		env := caddyDirs(t, dir)
		port, sitePort := testenv.FreePort(t), testenv.FreePort(t)
		conf := filepath.Join(dir, "Caddyfile")
		writeFile(t, conf, caddyAdmin(dir)+read(t, stock))
		edit(t, conf, ":80 {", fmt.Sprintf("http://127.0.0.1:%d {", sitePort))
		writeFile(t, conf, read(t, conf)+strings.NewReplacer(
			socketPath, b.sock,
			":8083 {", fmt.Sprintf(":%d {", port),
		).Replace(marked(t, example, "Caddyfile")))
		// As the packaged unit runs it.
		s := peers.StartProcess(t, peers.Process{Name: "caddy", Port: port, Dir: dir, User: "caddy", Env: env,
			Argv: []string{caddy, "run", "--environ", "--config", conf}})
		checkServed(t, s, uid, b)
	})
}

// checkLoopbackOnly fails when anything listens on port on an address other
// than loopback: the standalone examples serve 127.0.0.1 only.
func checkLoopbackOnly(t *testing.T, port int) {
	t.Helper()
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // LISTEN
				continue
			}
			addr, p, _ := strings.Cut(fields[1], ":")
			if n, _ := strconv.ParseInt(p, 16, 32); int(n) != port {
				continue
			}
			// 127.0.0.1 is 0100007F; ::1 is 00000000000000000000000001000000.
			if addr != "0100007F" && addr != "00000000000000000000000001000000" {
				t.Errorf("port %d is open on a non-loopback address (%s %s)", port, f, fields[1])
			}
		}
	}
}
