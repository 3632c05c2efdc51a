package peers

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

func requireBinary(t testing.TB, name string) string {
	t.Helper()
	return testenv.Require(t, name)
}

// NginxConfig describes an nginx instance that passes every request to a
// FastCGI application.
type NginxConfig struct {
	// FastCGI is the application: "tcp:HOST:PORT", "unix:PATH" or "HOST:PORT".
	FastCGI Upstream
	// KeepConn sets fastcgi_keep_conn on with an upstream keepalive pool, so
	// nginx sends FCGI_KEEP_CONN and reuses connections. Off (the default)
	// nginx sends KEEP_CONN=0 and waits for the application to close.
	KeepConn bool
	// Keepalive is the upstream keepalive pool size with KeepConn (default 8).
	Keepalive int
	// NoRequestBuffering streams request bodies to the application as they
	// arrive (fastcgi_request_buffering off): CONTENT_LENGTH is then empty for
	// chunked bodies. Default: nginx buffers the whole body first.
	NoRequestBuffering bool
	// NoResponseBuffering passes response bytes to the client as they come
	// (fastcgi_buffering off).
	NoResponseBuffering bool
	// ReadTimeout is fastcgi_read_timeout (default "60s").
	ReadTimeout string
	// ExtraParams are more fastcgi_param lines' arguments, e.g. "FOO bar".
	ExtraParams []string
	// ExtraLocations is raw configuration placed in the server block before
	// the catch-all location (more location blocks).
	ExtraLocations string
	// ExtraHTTP is raw configuration placed in the http block.
	ExtraHTTP string
}

// nginxParams are the CGI/1.1 meta-variables (RFC 3875) with the nginx
// variables that carry them, the set a FastCGI application usually expects.
var nginxParams = [][2]string{
	{"QUERY_STRING", "$query_string"},
	{"REQUEST_METHOD", "$request_method"},
	{"CONTENT_TYPE", "$content_type"},
	{"CONTENT_LENGTH", "$content_length"},
	{"SCRIPT_NAME", "$fastcgi_script_name"},
	{"SCRIPT_FILENAME", "$document_root$fastcgi_script_name"},
	{"REQUEST_URI", "$request_uri"},
	{"DOCUMENT_URI", "$document_uri"},
	{"DOCUMENT_ROOT", "$document_root"},
	{"SERVER_PROTOCOL", "$server_protocol"},
	{"REQUEST_SCHEME", "$scheme"},
	{"GATEWAY_INTERFACE", "CGI/1.1"},
	{"SERVER_SOFTWARE", "nginx/$nginx_version"},
	{"REMOTE_ADDR", "$remote_addr"},
	{"REMOTE_PORT", "$remote_port"},
	{"SERVER_ADDR", "$server_addr"},
	{"SERVER_PORT", "$server_port"},
	{"SERVER_NAME", "$server_name"},
}

// StartNginx starts nginx on a free port with cfg and returns once it
// accepts connections.
func StartNginx(t testing.TB, cfg NginxConfig) *Server {
	t.Helper()
	bin := requireBinary(t, "nginx")
	dir := newDir(t, "nginx")
	port := testenv.FreePort(t)

	network, addr := cfg.FastCGI.Split()
	server := addr
	if network == "unix" {
		server = "unix:" + addr
	}
	var b strings.Builder
	if isRoot() {
		// Workers as root keep the temp files and sockets reachable; this
		// instance lives only for one test.
		b.WriteString("user root root;\n")
	}
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 1024; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    client_max_body_size 0;
    upstream fcgi_app {
        server %[2]s;
`, dir, server)
	if cfg.KeepConn {
		ka := cfg.Keepalive
		if ka <= 0 {
			ka = 8
		}
		fmt.Fprintf(&b, "        keepalive %d;\n", ka)
	}
	b.WriteString("    }\n")
	b.WriteString(cfg.ExtraHTTP)
	fmt.Fprintf(&b, `
    server {
        listen 127.0.0.1:%d;
        server_name localhost;
        root %s/htdocs;
%s
        location / {
            fastcgi_pass fcgi_app;
`, port, dir, cfg.ExtraLocations)
	for _, p := range nginxParams {
		fmt.Fprintf(&b, "            fastcgi_param %s %s;\n", p[0], p[1])
	}
	for _, p := range cfg.ExtraParams {
		fmt.Fprintf(&b, "            fastcgi_param %s;\n", p)
	}
	onOff := func(on bool) string {
		if on {
			return "on"
		}
		return "off"
	}
	fmt.Fprintf(&b, "            fastcgi_keep_conn %s;\n", onOff(cfg.KeepConn))
	fmt.Fprintf(&b, "            fastcgi_request_buffering %s;\n", onOff(!cfg.NoRequestBuffering))
	fmt.Fprintf(&b, "            fastcgi_buffering %s;\n", onOff(!cfg.NoResponseBuffering))
	rt := cfg.ReadTimeout
	if rt == "" {
		rt = "60s"
	}
	fmt.Fprintf(&b, "            fastcgi_read_timeout %s;\n        }\n    }\n}\n", rt)

	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, b.String())
	writeFile(t, filepath.Join(dir, "htdocs", "index.html"), "static\n")
	// -e keeps nginx from opening /var/log/nginx/error.log before it has read
	// the configuration.
	return start(t, "nginx", port, dir,
		[]string{bin, "-p", dir + "/", "-c", conf, "-e", filepath.Join(dir, "error.log")}, nil,
		filepath.Join(dir, "error.log"))
}
