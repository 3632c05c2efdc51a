package conf

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/messages.golden from what the check says now")

// messageCases are configurations a newcomer gets wrong, each with what
// `fcgi-bridge -t` should say about it: errors as they come from Parse,
// then, for a file that parses, CheckPrograms' errors and the warnings.
// The answers are kept in testdata/messages.golden; read that file to
// review the wording, and run `go test ./conf -run TestMessages -update`
// after changing a message on purpose.
var messageCases = []struct{ name, toml string }{
	{"misspelt table", `[transfrom.t]
command = ["cat"]

[[route]]
transform = ["t"]
`},
	{"misspelt server table", `[sever]
max_conns = 10

[[route]]
`},
	{"misspelt array of tables", `[[rout]]
name = "a"
`},
	{"unknown table, nothing close", `[frobnicate]
x = 1

[[route]]
`},
	{"misspelt top-level key", `lsten = "tcp:127.0.0.1:9000"

[[route]]
`},
	{"misspelt key", `[transform.t]
command = ["cat"]
kill_grase = "5s"

[[route]]
transform = ["t"]
`},
	{"unknown key, nothing close", `[transform.t]
command = ["cat"]
colour = "blue"

[[route]]
transform = ["t"]
`},
	{"misspelt key in a named route", `[[route]]
name = "api"
pth = "/api"
`},
	{"misspelt key in an unnamed route", `[[route]]
path = "/a"

[[route]]
sorce = "body"
`},
	{"misspelt key in an inline table", `[[route]]
name = "json"
query = [{ nme = "format", match = "^json$" }]
`},
	{"misspelt transform reference", `[transform.render]
command = ["cat"]

[[route]]
name = "page"
transform = ["rendr"]
`},
	{"misspelt upstream reference", `[upstream.site]
kind = "file"
root = "/srv/www"

[[route]]
name = "page"
source = "sight"
`},
	{"string for a whole number", `[transform.t]
command = ["cat"]
min = 1
max = "4"

[[route]]
transform = ["t"]
`},
	{"number for a duration", `[transform.t]
command = ["cat"]
timeout = 30

[[route]]
transform = ["t"]
`},
	{"string for a list", `[transform.t]
command = "node render.js"

[[route]]
transform = ["t"]
`},
	{"wrong item in a list", `[[route]]
name = "ok"
source_status = [200, "304"]
`},
	{"string for true or false", `[log]
access = "yes"

[[route]]
`},
	{"fraction for a whole number", `[server]
max_conns = 1.5

[[route]]
`},
	{"boolean for a size", `[[route]]
name = "big"
keep_input = true
`},
	{"table for a list of tables", `[[route]]
name = "h"
header = { name = "Accept" }
`},
	{"value for a table", `server = 3

[[route]]
`},
	{"string for a table of strings", `[transform.t]
command = ["cat"]
env = "NODE_ENV=production"

[[route]]
transform = ["t"]
`},
	{"number for a table of strings", `[upstream.php]
kind = "fastcgi"
address = "tcp:127.0.0.1:9001"
params = 5

[[route]]
source = "php"
`},
	{"value for a named table", `transform = "cat"

[[route]]
`},
	{"value for an array of tables", `listen = "tcp:127.0.0.1:9000"

[[route]]
`},
	{"missing program", `[transform.t]
command = ["/nonexistent/renderer"]

[[route]]
transform = ["t"]
`},
	{"missing script", `[transform.t]
command = ["/bin/sh", "/nonexistent/script.py"]

[[route]]
transform = ["t"]
`},
	{"missing script relative to dir", `[transform.t]
command = ["/bin/sh", "render.js"]
dir = "/nonexistent"

[[route]]
transform = ["t"]
`},
	{"arguments that are not files", `[transform.t]
command = ["/bin/sh", "-c", "exec cat", "text/html", "png:-", "--conf=/nonexistent/x.py"]

[[route]]
transform = ["t"]
`},
	{"world-writable socket", `[[listen]]
addr = "unix:/run/fcgi-bridge/fcgi.sock"
mode = "0666"

[[route]]
`},
	{"tcp open to every address", `[[listen]]
addr = "tcp:0.0.0.0:9000"
allow = ["0.0.0.0/0", "::/0"]

[[route]]
`},
	{"whole file system", `[upstream.all]
kind = "file"
root = "/"

[[route]]
source = "all"
`},
	{"timeouts longer than the drain", `[transform.slow]
command = ["cat"]
timeout = "60s"

[[route]]
name = "slow"
transform = ["slow"]
timeout = "2m"
`},
	{"route after a catch-all", `[[route]]
name = "everything"

[[route]]
name = "api"
path = "/api"

[[route]]
name = "filter"
role = "filter"
`},
	{"pass_params without request headers", `[[route]]
name = "p"
send_request_headers = false
pass_params = ["REMOTE_USER"]
`},
	{"unused tables", `[transform.spare]
command = ["cat"]

[upstream.app]
kind = "http"
url = "http://127.0.0.1:8080/"

[[route]]
`},
	{"duplicate route names", `[[route]]
name = "a"
path = "/x"

[[route]]
name = "a"
`},
	{"no routes", `[log]
level = "info"
`},
}

func TestMessages(t *testing.T) {
	var b strings.Builder
	for _, tc := range messageCases {
		b.WriteString("== " + tc.name + "\n")
		c, err := Parse("t.toml", []byte(tc.toml))
		if err != nil {
			b.WriteString(err.Error() + "\n")
			continue
		}
		for _, e := range c.CheckPrograms() {
			b.WriteString(e.Error() + "\n")
		}
		for _, w := range c.Warnings() {
			b.WriteString("warning: " + w.Error() + "\n")
		}
	}
	got := b.String()
	golden := filepath.Join("testdata", "messages.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("the messages changed; if on purpose, run go test ./conf -run TestMessages -update\n--- got:\n%s", diffLines(string(want), got))
	}
}

// diffLines shows the lines of got that want does not have, and the
// reverse, enough to see which message moved.
func diffLines(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	return b.String()
}
