package examples_test

import (
	"regexp"
	"strings"
	"testing"
)

// TestDeployDocMatchesExamples: the commands docs/deploy.md gives for each
// route are the ones the examples' headers give and the live tests run.
func TestDeployDocMatchesExamples(t *testing.T) {
	doc := read(t, "../docs/deploy.md")
	for _, want := range []string{
		"a2enmod " + strings.Join(a2enmodLine(t), " "),
		"ln -s ../sites-available/fcgi-bridge /etc/nginx/sites-enabled/fcgi-bridge",
		`nginx -p /tmp/nginx-try -e error.log -c
  "$PWD/examples/nginx.conf" -g 'daemon off;'`,
		"lighty-enable-mod fcgi-bridge",
		"/etc/lighttpd/conf-available/15-fcgi-bridge.conf",
		"/etc/nginx/sites-available/fcgi-bridge",
		"haproxy -db -f examples/haproxy.cfg",
		"caddy run --config examples/Caddyfile --adapter caddyfile",
		"lighttpd -D -f examples/lighttpd.conf",
		`addr  = "unix:/var/lib/haproxy/fcgi-bridge/fcgi.sock"`,
		"install -d -m 0755 -o fcgi-bridge -g fcgi-bridge /run/fcgi-bridge",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/deploy.md does not say %q", want)
		}
	}
	for file, marker := range map[string]string{
		"nginx.conf": "sites-available/fcgi-bridge", "lighttpd.conf": "conf-available/15-fcgi-bridge.conf",
		"haproxy.cfg": "haproxy.cfg", "Caddyfile": "Caddyfile",
	} {
		marked(t, read(t, file), marker)
		if !strings.Contains(doc, "`"+marker+"` markers") {
			t.Errorf("docs/deploy.md does not name the %q markers of %s", marker, file)
		}
	}
	// Each server's socket group, as the live tests use them.
	for server, group := range map[string]string{"nginx": "www-data", "Apache 2.4": "www-data", "lighttpd 1.4": "www-data", "HAProxy 2.x": "haproxy", "Caddy 2": "caddy"} {
		row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(server) + ` \|.*\| ` + "`" + group + "`")
		if !row.MatchString(doc) {
			t.Errorf("docs/deploy.md: the table does not give %s the socket group %s", server, group)
		}
	}
}

// TestLogRotationSignalsTheBridgeOnly: a USR1 for the bridge must not reach
// its transforms (Python exits on it, Node starts its debugger), so every
// `systemctl kill` the docs and examples show names the main process.
func TestLogRotationSignalsTheBridgeOnly(t *testing.T) {
	for _, f := range []string{"../docs/deploy.md", "fcgi-bridge.service", "fcgi-bridge.socket", "../README.md"} {
		for i, line := range strings.Split(read(t, f), "\n") {
			if strings.Contains(line, "systemctl kill") && !strings.Contains(line, "--kill-whom=main") {
				t.Errorf("%s:%d: systemctl kill without --kill-whom=main signals the transforms too: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
