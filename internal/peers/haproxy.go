package peers

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// HAProxyConfig describes an HAProxy instance whose fcgi-app backend passes
// requests to a FastCGI application.
type HAProxyConfig struct {
	// FastCGI is the application: "tcp:HOST:PORT", "unix:PATH" or "HOST:PORT".
	FastCGI Upstream
	// MpxsConns sets "option mpxs-conns": HAProxy multiplexes requests (odd
	// ids) on one connection when the application allows it.
	MpxsConns bool
	// GetValues sets "option get-values": HAProxy asks FCGI_GET_VALUES on
	// each new connection to learn FCGI_MPXS_CONNS and FCGI_MAX_REQS.
	GetValues bool
	// NoKeepConn sets "no option keep-conn" (keep-conn is on by default).
	NoKeepConn bool
	// MaxReqs is "max-reqs" on the server line (0: HAProxy's default).
	MaxReqs int
	// Extra is raw configuration appended to the fcgi-app section.
	Extra string
	// BackendExtra is raw configuration appended to the backend section,
	// e.g. "http-reuse always" to share connections between clients.
	BackendExtra string
}

// StartHAProxy starts haproxy on a free port with cfg.
func StartHAProxy(t testing.TB, cfg HAProxyConfig) *Server {
	t.Helper()
	bin := requireBinary(t, "haproxy")
	dir := newDir(t, "haproxy")
	port := testenv.FreePort(t)

	network, addr := cfg.FastCGI.Split()
	target := addr
	if network == "unix" {
		target = "unix@" + addr
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    log stderr format short local0 info
    pidfile %q
defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:%d
    default_backend be
fcgi-app app
    docroot %q
    index index.php
    log-stderr global
`, filepath.Join(dir, "haproxy.pid"), port, filepath.Join(dir, "htdocs"))
	if cfg.MpxsConns {
		b.WriteString("    option mpxs-conns\n")
	} else {
		b.WriteString("    no option mpxs-conns\n")
	}
	if cfg.GetValues {
		b.WriteString("    option get-values\n")
	} else {
		b.WriteString("    no option get-values\n")
	}
	if cfg.NoKeepConn {
		b.WriteString("    no option keep-conn\n")
	}
	b.WriteString(cfg.Extra)
	fmt.Fprintf(&b, `backend be
    use-fcgi-app app
    server app %s proto fcgi`, target)
	if cfg.MaxReqs > 0 {
		fmt.Fprintf(&b, " max-reqs %d", cfg.MaxReqs)
	}
	b.WriteString("\n")
	b.WriteString(cfg.BackendExtra)

	conf := filepath.Join(dir, "haproxy.conf")
	writeFile(t, conf, b.String())
	return start(t, "haproxy", port, dir, []string{bin, "-db", "-f", conf}, nil)
}
