package peers

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// LighttpdConfig describes a lighttpd instance whose mod_fastcgi passes
// requests to a FastCGI application.
type LighttpdConfig struct {
	// FastCGI is the application: "tcp:HOST:PORT", "unix:PATH" or "HOST:PORT".
	FastCGI Upstream
	// Authorizer sets "mode" => "authorizer": lighttpd asks the application in
	// the AUTHORIZER role and serves the document root itself when allowed.
	Authorizer bool
	// Extra is raw configuration appended.
	Extra string
}

// StartLighttpd starts lighttpd on a free port with cfg.
func StartLighttpd(t testing.TB, cfg LighttpdConfig) *Server {
	t.Helper()
	bin := requireBinary(t, "lighttpd")
	dir := newDir(t, "lighttpd")
	port := testenv.FreePort(t)

	var b strings.Builder
	fmt.Fprintf(&b, `server.modules = ("mod_fastcgi", "mod_accesslog")
server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
server.pid-file = %q
server.upload-dirs = (%q)
accesslog.filename = %q
server.max-request-size = 0
mimetype.assign = (".html" => "text/html")
`, filepath.Join(dir, "htdocs"), port, filepath.Join(dir, "error.log"), filepath.Join(dir, "lighttpd.pid"),
		dir, filepath.Join(dir, "access.log"))
	if isRoot() {
		u, g := unprivileged()
		fmt.Fprintf(&b, "server.username = %q\nserver.groupname = %q\n", u, g)
	}
	network, addr := cfg.FastCGI.Split()
	var target string
	if network == "unix" {
		target = fmt.Sprintf(`"socket" => %q`, addr)
	} else {
		host, p, _ := strings.Cut(addr, ":")
		target = fmt.Sprintf(`"host" => %q, "port" => %s`, host, p)
	}
	mode := ""
	if cfg.Authorizer {
		mode = `, "mode" => "authorizer", "docroot" => ` + fmt.Sprintf("%q", filepath.Join(dir, "htdocs"))
	}
	fmt.Fprintf(&b, `fastcgi.server = ( "/" => (( %s, "check-local" => "disable"%s )) )
`, target, mode)
	b.WriteString(cfg.Extra)

	conf := filepath.Join(dir, "lighttpd.conf")
	writeFile(t, conf, b.String())
	writeFile(t, filepath.Join(dir, "htdocs", "index.html"), "static\n")
	return start(t, "lighttpd", port, dir, []string{bin, "-D", "-f", conf}, nil,
		filepath.Join(dir, "error.log"))
}
