package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// findPHPFPM returns Debian's php-fpm binary (php-fpm8.2 on bookworm; any
// version will do).
func findPHPFPM(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("php-fpm8.2"); err == nil {
		return p
	}
	var found []string
	for _, pat := range []string{"/usr/sbin/php-fpm*", "/usr/bin/php-fpm*", "/usr/local/sbin/php-fpm*"} {
		m, _ := filepath.Glob(pat)
		found = append(found, m...)
	}
	sort.Strings(found)
	if len(found) == 0 {
		testenv.Missing(t, "php-fpm is not installed (on Debian: apt-get install php-fpm)")
	}
	return found[len(found)-1]
}

// startPHPFPM runs the test's own php-fpm with its own configuration on a
// unix socket in a temp directory, and returns the socket path.
func startPHPFPM(t *testing.T) string {
	t.Helper()
	bin := findPHPFPM(t)
	dir := peers.SocketDir(t)
	sock := filepath.Join(dir, "php.sock")
	conf := filepath.Join(dir, "php-fpm.conf")
	logFile := filepath.Join(dir, "php-fpm.log")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`[global]
pid = %[1]s/php-fpm.pid
error_log = %[2]s
daemonize = no

[app]
listen = %[3]s
listen.mode = 0666
pm = static
pm.max_children = 2
clear_env = yes
catch_workers_output = yes
`, dir, logFile, sock)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-F", "-y", conf}
	if os.Geteuid() == 0 {
		// Its own instance, for one test: workers as root are allowed here.
		args = append(args, "-R")
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := os.Create(filepath.Join(dir, "php-fpm.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	logs := func() string {
		a, _ := os.ReadFile(logFile)
		b, _ := os.ReadFile(filepath.Join(dir, "php-fpm.out"))
		return string(a) + string(b)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("php-fpm log:\n%s", logs())
		}
	})
	if err := testenv.WaitListening("unix", sock, done, 15*time.Second); err != nil {
		t.Fatalf("php-fpm: %v:\n%s", err, logs())
	}
	return sock
}

// TestNginxPHPFPMUpstream: nginx -> bridge -> php-fpm (fastcgi upstream)
// -> the upper transform.
func TestNginxPHPFPMUpstream(t *testing.T) {
	phpSock := startPHPFPM(t)
	script := filepath.Join(repoRoot, "e2e", "testdata", "php", "index.php")
	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[upstream.php]
kind = "fastcgi"
address = "unix:%s"
params = { SCRIPT_FILENAME = %q }

[transform.upper]
command = ["@self", "transform", "upper"]

[[route]]
name = "php"
source = "php"
transform = ["upper"]
source_content_type = ["text/plain"]
`, phpSock, script)
	})
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true})

	r := mustFetch(t, "POST", ngx.URL("/php/hello?q=abc"), map[string]string{"Content-Type": "text/plain"}, strings.NewReader("posted body"))
	t.Logf("nginx -> bridge -> php-fpm -> upper: %d in %v", r.status, r.took)
	if r.status != 200 || !strings.HasPrefix(r.body, "HELLO FROM PHP ") ||
		!strings.Contains(r.body, "METHOD=POST Q=ABC") || !strings.Contains(r.body, "BODY=POSTED BODY") {
		t.Fatalf("PHP page through upper: %d %q", r.status, r.body)
	}
	if r.header.Get("X-Php") != "yes" || len(r.header.Values("Set-Cookie")) != 2 {
		t.Errorf("PHP headers lost: %v", r.header)
	}

	r = mustFetch(t, "GET", ngx.URL("/php/missing"), nil, nil)
	if r.status != 404 || r.body != "NO SUCH THING\n" {
		t.Errorf("PHP 404: %d %q", r.status, r.body)
	}
	r = mustFetch(t, "GET", ngx.URL("/php/redirect"), nil, nil)
	if r.status != 302 || r.header.Get("Location") != "/php/elsewhere" {
		t.Errorf("PHP redirect: %d Location %q", r.status, r.header.Get("Location"))
	}
	// Keep-alive to php-fpm: a burst is served without errors.
	start := time.Now()
	for i := 0; i < 20; i++ {
		r := mustFetch(t, "GET", ngx.URL(fmt.Sprintf("/php/n?q=%d", i)), nil, nil)
		if r.status != 200 || !strings.Contains(r.body, fmt.Sprintf("Q=%d\n", i)) {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
	}
	t.Logf("20 sequential PHP pages in %v", time.Since(start))
}
