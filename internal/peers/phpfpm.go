package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// PHPFPMConfig describes a php-fpm pool: a FastCGI application (the other
// side from the web servers above), for testing FastCGI clients.
type PHPFPMConfig struct {
	// Network is "tcp" (default) or "unix".
	Network string
	// Scripts are PHP files written into the document root, by name.
	Scripts map[string]string
	// Children is pm.max_children of a static pool (default 2).
	Children int
	// MaxRequests is pm.max_requests: a child exits after that many
	// requests (0: never), closing its kept connection.
	MaxRequests int
}

// PHPFPM is a running php-fpm.
type PHPFPM struct {
	*Server
	// FastCGI is where the pool listens.
	FastCGI Upstream
	// DocRoot holds the scripts; SCRIPT_FILENAME is DocRoot + "/" + name.
	DocRoot string
}

// findPHPFPM looks for php-fpm under its Debian name, which carries the
// PHP version (php-fpm8.2).
func findPHPFPM(t testing.TB) string {
	t.Helper()
	for _, pattern := range []string{"/usr/sbin/php-fpm*", "/usr/local/sbin/php-fpm*"} {
		m, _ := filepath.Glob(pattern)
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		if len(m) > 0 {
			return m[0]
		}
	}
	return testenv.Require(t, "php-fpm")
}

// StartPHPFPM starts php-fpm in the foreground with cfg.
func StartPHPFPM(t testing.TB, cfg PHPFPMConfig) *PHPFPM {
	t.Helper()
	bin := findPHPFPM(t)
	dir := newDir(t, "php-fpm")
	docroot := filepath.Join(dir, "htdocs")
	for name, src := range cfg.Scripts {
		writeFile(t, filepath.Join(docroot, name), src)
	}
	if err := os.MkdirAll(docroot, 0o755); err != nil {
		t.Fatalf("peers: %v", err)
	}
	children := cfg.Children
	if children <= 0 {
		children = 2
	}
	var listen string
	var up Upstream
	readyNet, readyAddr := "tcp", ""
	port := 0
	if cfg.Network == "unix" {
		listen = filepath.Join(SocketDir(t), "php-fpm.sock")
		up = Upstream("unix:" + listen)
		readyNet, readyAddr = "unix", listen
	} else {
		port = testenv.FreePort(t)
		listen = fmt.Sprintf("127.0.0.1:%d", port)
		up = Upstream("tcp:" + listen)
		readyAddr = listen
	}
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
pid = %s
error_log = %s
daemonize = no
log_level = notice

[app]
listen = %s
listen.mode = 0666
pm = static
pm.max_children = %d
pm.max_requests = %d
catch_workers_output = yes
clear_env = yes
`, filepath.Join(dir, "php-fpm.pid"), filepath.Join(dir, "php-fpm.log"), listen, children, cfg.MaxRequests)
	argv := []string{bin, "-F", "-n", "-y", filepath.Join(dir, "php-fpm.conf")}
	if isRoot() {
		// php-fpm runs pools as root only when told twice; this instance
		// lives for one test.
		b.WriteString("user = root\ngroup = root\n")
		argv = append(argv, "-R")
	}
	conf := filepath.Join(dir, "php-fpm.conf")
	writeFile(t, conf, b.String())
	s := startReady(t, "php-fpm", port, readyNet, readyAddr, dir, argv, nil, nil, filepath.Join(dir, "php-fpm.log"))
	return &PHPFPM{Server: s, FastCGI: up, DocRoot: docroot}
}
