package examples_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// socketPath and tcpAddr are where every example expects the bridge; they
// must agree with each other and with docs/deploy.md.
const (
	socketPath = "/run/fcgi-bridge/fcgi.sock"
	tcpAddr    = "127.0.0.1:9000"
	// HAProxy's socket lives in Debian's chroot for it.
	haproxyChrootDir = "/var/lib/haproxy"
	haproxySocket    = haproxyChrootDir + "/fcgi-bridge/fcgi.sock"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// run runs a syntax check and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mustFail runs a check on a deliberately broken copy: it proves the check
// reads the file at all, so a pass above means something.
func mustFail(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err == nil {
		t.Fatalf("%s accepted a broken file, so its check proves nothing:\n%s", name, out)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExamplesAgreeOnAddresses(t *testing.T) {
	for _, f := range []string{"../apache-example.conf", "nginx.conf", "lighttpd.conf", "haproxy.cfg", "Caddyfile", "fcgi-bridge.socket", "fcgi-bridge.toml", "../docs/deploy.md"} {
		s := read(t, f)
		sock := socketPath
		if f == "haproxy.cfg" {
			// HAProxy connects from inside its chroot.
			sock = haproxySocket
			if !strings.Contains(s, "chroot "+haproxyChrootDir+"\n") || !strings.Contains(s, "server bridge "+strings.TrimPrefix(sock, haproxyChrootDir)+" proto fcgi") {
				t.Errorf("%s: the server line must name %s as seen from chroot %s", f, sock, haproxyChrootDir)
			}
		}
		if !strings.Contains(s, sock) {
			t.Errorf("%s does not use the socket %s", f, sock)
		}
		switch f {
		case "fcgi-bridge.socket", "fcgi-bridge.toml":
		default:
			if !strings.Contains(s, tcpAddr) && !strings.Contains(s, `"127.0.0.1", "port" => 9000`) {
				t.Errorf("%s does not show the TCP address %s", f, tcpAddr)
			}
		}
	}
}

// TestNginx checks the file as written with the command its header gives.
func TestNginx(t *testing.T) {
	nginx := testenv.Require(t, "nginx")
	dir := t.TempDir()
	conf, err := filepath.Abs("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	run(t, nginx, "-t", "-q", "-p", dir, "-e", "error.log", "-c", conf)

	writeFile(t, filepath.Join(dir, "broken.conf"), strings.Replace(read(t, conf), "fastcgi_keep_conn on;", "fastcgi_keep_conn maybe;", 1))
	mustFail(t, nginx, "-t", "-q", "-p", dir, "-e", "error.log", "-c", filepath.Join(dir, "broken.conf"))
}

// TestApache checks apache-example.conf, as written, included from the
// httpd.conf of a server built from source.
func TestApache(t *testing.T) {
	apache := testenv.Require(t, "apache2")
	example, err := filepath.Abs("../apache-example.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run(t, apache, "-t", "-f", apacheStandalone(t, dir, testenv.FreePort(t), example))

	broken := filepath.Join(dir, "broken-example.conf")
	writeFile(t, broken, strings.Replace(read(t, example), "Require fcgi-bridge-auth", "Require no-such-provider", 1))
	dir = t.TempDir()
	mustFail(t, apache, "-t", "-f", apacheStandalone(t, dir, testenv.FreePort(t), broken))
}

func TestLighttpd(t *testing.T) {
	lighttpd := testenv.Require(t, "lighttpd")
	run(t, lighttpd, "-tt", "-f", "lighttpd.conf")

	broken := filepath.Join(t.TempDir(), "broken.conf")
	writeFile(t, broken, strings.Replace(read(t, "lighttpd.conf"), `"mod_fastcgi"`, `"mod_no_such_module"`, 1))
	mustFail(t, lighttpd, "-tt", "-f", broken)
}

func TestHAProxy(t *testing.T) {
	haproxy := testenv.Require(t, "haproxy")
	run(t, haproxy, "-c", "-f", "haproxy.cfg")

	broken := filepath.Join(t.TempDir(), "broken.cfg")
	writeFile(t, broken, strings.Replace(read(t, "haproxy.cfg"), "option mpxs-conns", "option mpxs-conn", 1))
	mustFail(t, haproxy, "-c", "-f", broken)
}

// TestCaddyfile validates with caddy (installed by .ci/run); the structure check
// below always runs.
func TestCaddyfile(t *testing.T) {
	s := read(t, "Caddyfile")
	depth := 0
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if depth < 0 {
			t.Fatalf("Caddyfile:%d: unbalanced }", i+1)
		}
	}
	if depth != 0 {
		t.Fatalf("Caddyfile: %d unclosed {", depth)
	}
	if !strings.Contains(s, "transport fastcgi") {
		t.Fatal("Caddyfile: no fastcgi transport")
	}
	caddy := testenv.Require(t, "caddy")
	run(t, caddy, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
}

// TestSystemdUnits runs systemd-analyze verify on the units as make install
// puts them, with the binary at the path their ExecStart= names: the
// installed tree is mounted over /usr/local in a mount namespace of the
// check's own. verify reports unknown keys and bad values as warnings with
// exit status 0, so any line naming one of the units fails the test.
func TestSystemdUnits(t *testing.T) {
	checkUnitSyntax(t, "fcgi-bridge.service")
	checkUnitSyntax(t, "fcgi-bridge.socket")
	if !strings.Contains(read(t, "fcgi-bridge.socket"), "FileDescriptorName=fcgi") ||
		!strings.Contains(read(t, "fcgi-bridge.service"), "--listen systemd:fcgi") {
		t.Error("the socket unit must name its socket fcgi and the service take it with --listen systemd:fcgi")
	}
	analyze := testenv.Require(t, "systemd-analyze")
	unshare := testenv.Require(t, "unshare")
	requireRoot(t, "systemd-analyze verify runs in a mount namespace of its own, with the installed tree mounted at /usr/local")
	root := installed(t)
	units := filepath.Join(root, "usr/local/lib/systemd/system")
	verify := func(files ...string) (string, error) {
		script := `mount --bind "$1/usr/local" /usr/local && shift && exec "$@"`
		args := append([]string{"-m", "sh", "-c", script, "sh", root, analyze, "verify"}, files...)
		out, err := exec.Command(unshare, args...).CombinedOutput()
		return string(out), err
	}
	out, err := verify(filepath.Join("/usr/local/lib/systemd/system", "fcgi-bridge.socket"),
		filepath.Join("/usr/local/lib/systemd/system", "fcgi-bridge.service"))
	if strings.Contains(out, "mount:") || strings.Contains(out, "unshare:") {
		testenv.Missing(t, "no private mount namespace for systemd-analyze verify: "+out)
	}
	if err != nil || strings.Contains(out, "fcgi-bridge.s") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The drop-ins docs/deploy.md gives for the socket unit (the group for
	// Caddy, the path and group for HAProxy), each on the installed unit.
	dropins := iniBlocks(read(t, "../docs/deploy.md"))
	if len(dropins) < 2 {
		t.Fatalf("docs/deploy.md shows %d socket drop-ins, want the Caddy and HAProxy ones", len(dropins))
	}
	dropDir := filepath.Join(units, "fcgi-bridge.socket.d")
	if err := os.Mkdir(dropDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, d := range append(dropins, dropins[0]+"NoSuchKey=1\n") {
		writeFile(t, filepath.Join(dropDir, "doc.conf"), d)
		out, err := verify("/usr/local/lib/systemd/system/fcgi-bridge.socket")
		if i == len(dropins) {
			if !strings.Contains(out, "NoSuchKey") {
				t.Fatalf("systemd-analyze did not read the drop-in, so its check proves nothing:\n%s", out)
			}
			break
		}
		if err != nil || strings.Contains(out, "fcgi-bridge.s") {
			t.Errorf("systemd-analyze verify with the drop-in\n%s: %v\n%s", d, err, out)
		}
	}
	os.RemoveAll(dropDir)

	// The check sees the binary and the keys: a missing ExecStart binary and
	// an unknown key are both reported.
	svc := read(t, filepath.Join(units, "fcgi-bridge.service"))
	writeFile(t, filepath.Join(units, "broken.service"), strings.Replace(svc, "NoNewPrivileges=", "NoNewPrivilege=", 1))
	writeFile(t, filepath.Join(units, "nobinary.service"), strings.ReplaceAll(svc, "/usr/local/bin/fcgi-bridge", "/usr/local/bin/no-such-bridge"))
	if out, _ := verify("/usr/local/lib/systemd/system/broken.service"); !strings.Contains(out, "NoNewPrivilege") {
		t.Fatalf("systemd-analyze did not report an unknown key, so its check proves nothing:\n%s", out)
	}
	if out, _ := verify("/usr/local/lib/systemd/system/nobinary.service"); !strings.Contains(out, "no-such-bridge") {
		t.Fatalf("systemd-analyze did not report a missing binary, so its check proves nothing:\n%s", out)
	}
}

// iniBlocks returns the ```ini blocks of a Markdown text.
func iniBlocks(md string) []string {
	var blocks []string
	for _, part := range strings.Split(md, "```ini\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		blocks = append(blocks, block)
	}
	return blocks
}

// checkUnitSyntax checks what verify cannot be relied on for everywhere:
// every line is a comment, a [Section] or a Key=value.
func checkUnitSyntax(t *testing.T, name string) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
		case strings.Contains(line, "=") && !strings.ContainsAny(strings.SplitN(line, "=", 2)[0], " \t"):
		default:
			t.Errorf("%s:%d: not a section, a key=value or a comment: %q", name, n, line)
		}
	}
}
