package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// ApacheModuleDir is where Debian installs Apache's modules.
var ApacheModuleDir = "/usr/lib/apache2/modules"

// ApacheConfig describes an Apache 2.4 instance whose mod_proxy_fcgi passes
// requests to a FastCGI application.
type ApacheConfig struct {
	// FastCGI is the application: "tcp:HOST:PORT", "unix:PATH" or "HOST:PORT".
	// Empty: no proxy (e.g. only an authorizer).
	FastCGI Upstream
	// Path is the URL prefix proxied (default "/").
	Path string
	// EnableReuse sets enablereuse=on: Apache then sends FCGI_KEEP_CONN and
	// keeps connections to the application. Off (default) it opens a
	// connection per request.
	EnableReuse bool
	// Generic sets ProxyFCGIBackendType GENERIC, which stops Apache sending
	// SCRIPT_FILENAME=proxy:fcgi://... (it is meant for php-fpm).
	Generic bool
	// Authorizer, when set, protects AuthorizerPath with mod_authnz_fcgi:
	// the application at this address is asked in the AUTHORIZER role.
	Authorizer Upstream
	// AuthorizerPath is the protected prefix (default "/auth").
	AuthorizerPath string
	// Extra is raw configuration appended to the server configuration.
	Extra string
}

// apacheModules are what the generated configuration needs; mod_unixd, mod_so
// and mod_log_config are compiled into Debian's apache2.
var apacheModules = [][2]string{
	{"mpm_event_module", "mod_mpm_event.so"},
	{"authz_core_module", "mod_authz_core.so"},
	{"authz_user_module", "mod_authz_user.so"},
	{"authn_core_module", "mod_authn_core.so"},
	{"auth_basic_module", "mod_auth_basic.so"},
	{"proxy_module", "mod_proxy.so"},
	{"proxy_fcgi_module", "mod_proxy_fcgi.so"},
	{"authnz_fcgi_module", "mod_authnz_fcgi.so"},
}

// StartApache starts apache2 on a free port with cfg.
func StartApache(t testing.TB, cfg ApacheConfig) *Server {
	t.Helper()
	bin := requireBinary(t, "apache2")
	for _, m := range apacheModules {
		if _, err := os.Stat(filepath.Join(ApacheModuleDir, m[1])); err != nil {
			testenv.Missing(t, fmt.Sprintf("%v: %s in %s (install apache2)", errNoModule, m[1], ApacheModuleDir))
		}
	}
	dir := newDir(t, "apache2")
	port := testenv.FreePort(t)

	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %q\nServerName localhost\nListen 127.0.0.1:%d\n", dir, port)
	fmt.Fprintf(&b, "PidFile %q\nDefaultRuntimeDir %q\nErrorLog %q\nLogLevel info\n",
		filepath.Join(dir, "httpd.pid"), dir, filepath.Join(dir, "error.log"))
	for _, m := range apacheModules {
		fmt.Fprintf(&b, "LoadModule %s %s\n", m[0], filepath.Join(ApacheModuleDir, m[1]))
	}
	if isRoot() {
		// Apache refuses to serve as root.
		u, g := unprivileged()
		fmt.Fprintf(&b, "User %s\nGroup %s\n", u, g)
	}
	fmt.Fprintf(&b, `LogFormat "%%h %%l %%u %%t \"%%r\" %%>s %%b" common
CustomLog %q common
StartServers 1
ServerLimit 2
ThreadsPerChild 25
MaxRequestWorkers 50
Timeout 60
DocumentRoot %q
<Directory />
    Require all granted
</Directory>
`, filepath.Join(dir, "access.log"), filepath.Join(dir, "htdocs"))
	if cfg.Generic {
		b.WriteString("ProxyFCGIBackendType GENERIC\n")
	}
	if cfg.FastCGI != "" {
		path := cfg.Path
		if path == "" {
			path = "/"
		}
		network, addr := cfg.FastCGI.Split()
		target := "fcgi://" + addr + "/"
		if network == "unix" {
			target = "unix:" + addr + "|fcgi://localhost/"
		}
		reuse := "off"
		if cfg.EnableReuse {
			reuse = "on"
		}
		if cfg.Authorizer != "" {
			ap := cfg.AuthorizerPath
			if ap == "" {
				ap = "/auth"
			}
			// More specific first: ProxyPass rules match in order.
			fmt.Fprintf(&b, "ProxyPass %q %q enablereuse=%s\n", ap, strings.TrimSuffix(target, "/")+ap, reuse)
		}
		fmt.Fprintf(&b, "ProxyPass %q %q enablereuse=%s\n", path, target, reuse)
	}
	if cfg.Authorizer != "" {
		ap := cfg.AuthorizerPath
		if ap == "" {
			ap = "/auth"
		}
		_, aaddr := cfg.Authorizer.Split()
		// mod_authnz_fcgi speaks TCP only.
		// The "authnz" provider type: Apache asks the application in the
		// AUTHORIZER role to check the Basic credentials and the access.
		fmt.Fprintf(&b, `AuthnzFcgiDefineProvider authnz FcgiAuthz fcgi://%s/
<Location %q>
    AuthType Basic
    AuthName "fcgi"
    AuthBasicProvider FcgiAuthz
    Require FcgiAuthz
</Location>
`, aaddr, ap)
	}
	b.WriteString(cfg.Extra)

	conf := filepath.Join(dir, "apache2.conf")
	writeFile(t, conf, b.String())
	writeFile(t, filepath.Join(dir, "htdocs", "index.html"), "static\n")
	env := []string{
		"APACHE_RUN_DIR=" + dir, "APACHE_LOCK_DIR=" + dir, "APACHE_LOG_DIR=" + dir,
		"APACHE_PID_FILE=" + filepath.Join(dir, "httpd.pid"),
	}
	return start(t, "apache2", port, dir, []string{bin, "-f", conf, "-DFOREGROUND"}, env,
		filepath.Join(dir, "error.log"))
}
