package conf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const minimal = `
[transform.t]
command = ["cat"]

[[route]]
transform = ["t"]
`

func TestDefaultValidates(t *testing.T) {
	c := Default()
	require.NotEmpty(t, c.Route)
	require.Equal(t, DefaultListenAddr, c.Listen[0].Addr)
	for _, tr := range c.Transform {
		require.Equal(t, SelfCommand, tr.Command[0], "the default must run with nothing but the binary")
		require.Equal(t, "transform", tr.Command[1])
	}
	assert.ElementsMatch(t, []string{"upper", "html"}, SampleTransforms())
}

func TestDefaultsApplied(t *testing.T) {
	c, err := Parse("m.toml", []byte(minimal))
	require.NoError(t, err)
	tr := c.Transform["t"]
	want := defaultTransform()
	want.Name, want.Command = "t", []string{"cat"}
	require.Equal(t, &want, tr)
	r := c.Route[0]
	assert.Equal(t, RoleResponder, r.Role)
	assert.Equal(t, SourceBody, r.Source)
	assert.Equal(t, FailClosed, r.Fail)
	assert.Equal(t, "route1", r.Name)
	assert.True(t, r.SendRequestHeaders)
	assert.Equal(t, defaultServer(), c.Server)
	assert.Equal(t, defaultLog(), c.Log)
	require.Len(t, c.Listen, 1)
	assert.Equal(t, DefaultListenAddr, c.Listen[0].Addr)
	assert.Equal(t, "0660", c.Listen[0].Mode)
}

func TestOverrides(t *testing.T) {
	c, err := Parse("o.toml", []byte(`
[[listen]]
addr = "unix:/run/fcgi-bridge.sock"
mode = "0600"
group = "www-data"

[server]
max_conns = 10
params_timeout = "2s"

[transform.t]
command = ["cat"]
max = 8
max_rss = "256MiB"
queue_timeout = "250ms"

[transform.thumb]
kind = "oneshot"
command = ["convert", "-", "-thumbnail", "{size}", "-"]
vars = { size = "[0-9]{1,4}x[0-9]{1,4}" }
content_type = "image/jpeg"

[upstream.app]
kind = "http"
url = "http://127.0.0.1:8080/"

[[route]]
name = "api"
path = "/api/"
method = ["GET", "HEAD"]
source = "app"
transform = ["t"]
source_status = [200]
source_content_type = ["application/json"]
fail = "open"
retry = true
keep_input = 65536

[[route.query]]
name = "format"
match = "^json$"
not = true
`))
	require.NoError(t, err)
	assert.Equal(t, "unix:/run/fcgi-bridge.sock", c.Listen[0].Addr)
	assert.Equal(t, "0600", c.Listen[0].Mode)
	assert.Equal(t, 10, c.Server.MaxConns)
	assert.Equal(t, 2*time.Second, c.Server.ParamsTimeout.Std())
	assert.Equal(t, defaultServer().MaxReqs, c.Server.MaxReqs)
	assert.Equal(t, 8, c.Transform["t"].Max)
	assert.Equal(t, Size(256<<20), c.Transform["t"].MaxRSS)
	assert.Equal(t, 250*time.Millisecond, c.Transform["t"].QueueTimeout.Std())
	assert.Equal(t, KindOneShot, c.Transform["thumb"].Kind)
	assert.Equal(t, 5*time.Second, c.Upstream["app"].ConnectTimeout.Std())
	r := c.Route[0]
	assert.Equal(t, Size(65536), r.KeepInput)
	require.Len(t, r.Query, 1)
	assert.False(t, r.Query[0].Holds([]string{"json"}))
	assert.True(t, r.Query[0].Holds([]string{"html"}))
	assert.True(t, r.Query[0].Holds(nil))
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // substrings, each expected in one error, "file:line: key: ..."
	}{
		{"syntax", "[log]\nlevel = \n", []string{"t.toml:2: "}},
		{"unterminated table", minimal + "[server\n", []string{"t.toml:8"}},
		{"unknown top key", "colour = 1\n" + minimal, []string{"t.toml:1: colour: unknown key"}},
		{"unknown table key", "[log]\nlevel = \"info\"\nbogus = 1\n" + minimal, []string{"t.toml:3: log.bogus: unknown key"}},
		{"unknown transform key", "[transform.t]\ncommand=[\"cat\"]\nmaxx = 3\n[[route]]\n", []string{"t.toml:3: transform.t.maxx: unknown key"}},
		{"unknown key in second route", minimal + "[[route]]\nname = \"b\"\noops = 1\n", []string{"t.toml:9: route \"b\".oops: unknown key"}},
		{"unknown key inline", minimal + "header = [{ name = \"A\", nme = 1 }]\n", []string{"t.toml:7: route.0.header.nme: unknown key; did you mean name?"}},
		{"duration as int", "[transform.t]\ncommand=[\"cat\"]\ntimeout = 30\n[[route]]\n", []string{"t.toml:3: transform.t.timeout: want a duration in quotes (like \"30s\"), got the whole number 30"}},
		{"bad duration", "[server]\nwrite_timeout = \"soon\"\n" + minimal, []string{"t.toml:2: ", "invalid duration"}},
		{"bad size", "[server]\ninput_buffer = \"lots\"\n" + minimal, []string{"t.toml:2: ", "invalid size"}},
		{"wrong type", "[server]\nmax_conns = \"many\"\n" + minimal, []string{"t.toml:2"}},
		{"unknown transform", minimal + "[[route]]\nname = \"x\"\ntransform = [\"nope\"]\n", []string{"t.toml:9: route \"x\".transform: unknown transform \"nope\""}},
		{"unknown upstream", minimal + "[[route]]\nname = \"x\"\nsource = \"app\"\n", []string{"t.toml:9: route \"x\".source: unknown upstream \"app\""}},
		{"bad regexp", minimal + "[[route.header]]\nname = \"Accept\"\nmatch = \"(\"\n", []string{"t.toml:9: route.0.header.0.match: invalid regexp"}},
		{"min above max", "[transform.t]\ncommand=[\"cat\"]\nmin = 5\nmax = 2\n[[route]]\n", []string{"t.toml:3: transform.t.min"}},
		{"no command", "[transform.t]\nmax = 2\n[[route]]\n", []string{"t.toml:1: transform.t.command: is required"}},
		{"bad kind", "[transform.t]\ncommand=[\"x\"]\nkind = \"forked\"\n[[route]]\n", []string{"t.toml:3: transform.t.kind"}},
		{"bad addr", "[[listen]]\naddr = \"127.0.0.1:9000\"\n" + minimal, []string{"t.toml:2: listen.0.addr"}},
		{"bad systemd addr", "[[listen]]\naddr = \"systemd\"\n" + minimal, []string{"t.toml:2: listen.0.addr"}},
		{"unknown addr kind", "[[listen]]\naddr = \"udp:127.0.0.1:9000\"\n" + minimal, []string{"t.toml:2: listen.0.addr"}},
		{"bad tcp addr", "[[listen]]\naddr = \"tcp:127.0.0.1\"\n" + minimal, []string{"t.toml:2: listen.0.addr"}},
		{"bad mode", "[[listen]]\naddr = \"unix:/x\"\nmode = \"rw\"\n" + minimal, []string{"t.toml:3: listen.0.mode"}},
		{"bad allow", "[[listen]]\naddr = \"tcp:0.0.0.0:9000\"\nallow = [\"10.0.0.0/33\"]\n" + minimal, []string{"t.toml:3: listen.0.allow: entry 1: \"10.0.0.0/33\" is not an address or CIDR"}},
		{"host name in allow", "[[listen]]\naddr = \"tcp:0.0.0.0:9000\"\nallow = [\"10.0.0.1\", \"web1\"]\n" + minimal, []string{"t.toml:3: listen.0.allow: entry 2: \"web1\" is not an address or CIDR", "host names are not accepted"}},
		{"bad role", minimal + "role = \"proxy\"\n", []string{"t.toml:7: route.0.role"}},
		{"bad fail", minimal + "fail = \"maybe\"\n", []string{"t.toml:7: route.0.fail"}},
		{"open without keep", minimal + "fail = \"open\"\nkeep_input = 0\n", []string{"t.toml:8: route.0.keep_input"}},
		{"bad status", minimal + "source_status = [99]\n", []string{"t.toml:7: route.0.source_status"}},
		{"bad glob", minimal + "glob = \"/a[\"\n", []string{"t.toml:7: route.0.glob"}},
		{"authorizer without transform", "[[route]]\nrole = \"authorizer\"\n", []string{"t.toml:1: route.0.transform"}},
		{"authorizer fail open", "[transform.t]\ncommand=[\"x\"]\n[[route]]\nrole = \"authorizer\"\ntransform = [\"t\"]\nfail = \"open\"\n", []string{"t.toml:6: route.0.fail"}},
		{"data upstream for responder", "[upstream.d]\nkind = \"data\"\n[[route]]\nsource = \"d\"\n", []string{"t.toml:4: route.0.source"}},
		{"data for responder", minimal + "source = \"data\"\n", []string{"t.toml:7: route.0.source"}},
		{"no routes", "[log]\n", []string{"t.toml: route: no [[route]]"}},
		{"duplicate route names", minimal + "name = \"a\"\n[[route]]\nname = \"a\"\n", []string{"t.toml:9: route \"a\".name"}},
		{"oneshot placeholder without var", "[transform.c]\nkind = \"oneshot\"\ncommand = [\"convert\"]\nargs = [\"{size}\"]\n[[route]]\n", []string{"t.toml:4: transform.c.args: placeholder {size}"}},
		{"oneshot permissive var", "[transform.c]\nkind = \"oneshot\"\ncommand = [\"convert\"]\nargs = [\"{size}\"]\nvars = { size = \".*\" }\n[[route]]\n", []string{"t.toml:5: transform.c.vars.size"}},
		{"oneshot program placeholder", "[transform.c]\nkind = \"oneshot\"\ncommand = [\"{prog}\"]\nvars = { prog = \"[a-z]+\" }\n[[route]]\n", []string{"t.toml:3: transform.c.command"}},
		{"pooled with args", "[transform.c]\ncommand = [\"cat\"]\nargs = [\"x\"]\n[[route]]\n", []string{"t.toml:3: transform.c.args"}},
		{"bad http url", "[upstream.u]\nkind = \"http\"\nurl = \"localhost:80\"\n[[route]]\nsource = \"u\"\n", []string{"t.toml:3: upstream.u.url"}},
		{"relative root", "[upstream.u]\nkind = \"file\"\nroot = \"www\"\n[[route]]\nsource = \"u\"\n", []string{"t.toml:3: upstream.u.root"}},
		{"reserved upstream name", "[upstream.body]\nkind = \"body\"\n[[route]]\n", []string{"t.toml:1: upstream.body"}},
		{"zero server timeout", "[server]\nwrite_timeout = \"0s\"\n" + minimal, []string{"t.toml:2: server.write_timeout: must be above zero"}},
		{"zero kill grace", "[transform.t]\ncommand=[\"cat\"]\nkill_grace = \"0s\"\n[[route]]\n", []string{"t.toml:3: transform.t.kill_grace: must be above zero"}},
		{"no idle conns with keepalive", "[upstream.u]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\nmax_idle_conns = 0\n[[route]]\nsource = \"u\"\n", []string{"t.toml:4: upstream.u.max_idle_conns: must be at least 1"}},
		{"multiline array keeps lines", "[transform.t]\ncommand = [\n  \"cat\",\n  \"x = 1\",\n]\nbad = 1\n[[route]]\n", []string{"t.toml:6: transform.t.bad: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.toml))
			require.Error(t, err)
			var es Errors
			require.True(t, errors.As(err, &es), "error type %T", err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			var one *Error
			require.True(t, errors.As(err, &one))
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	sources := map[string][]byte{"default": defaultTOML}
	full, err := os.ReadFile(filepath.Join("testdata", "full.toml"))
	require.NoError(t, err)
	sources["full"] = full
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			c1, err := Parse(name, src)
			require.NoError(t, err)
			var buf bytes.Buffer
			require.NoError(t, c1.Encode(&buf))
			c2, err := Parse(name, buf.Bytes())
			require.NoError(t, err, "encoded:\n%s", buf.String())
			normalize := func(c *Config) {
				c.File = ""
				c.lines = nil
				for _, r := range c.Route {
					for _, cs := range [][]*Condition{r.Header, r.Query} {
						for _, cond := range cs {
							cond.re = nil
						}
					}
				}
			}
			normalize(c1)
			normalize(c2)
			require.True(t, reflect.DeepEqual(emptyAsNil(c1), emptyAsNil(c2)), "round trip differs:\n%s", buf.String())
		})
	}
}

// emptyAsNil encodes the fact that TOML cannot tell an absent list from an
// empty one; both mean "none".
func emptyAsNil(c *Config) *Config {
	for _, t := range c.Transform {
		if len(t.Env) == 0 {
			t.Env = nil
		}
		if len(t.Vars) == 0 {
			t.Vars = nil
		}
	}
	for _, u := range c.Upstream {
		if len(u.Params) == 0 {
			u.Params = nil
		}
	}
	return c
}

func TestQuick(t *testing.T) {
	tests := []struct {
		upstream string
		kind     string
		check    func(t *testing.T, u *Upstream)
	}{
		{"", "", nil},
		{"http://127.0.0.1:8080/app", UpstreamHTTP, func(t *testing.T, u *Upstream) { assert.Equal(t, "http://127.0.0.1:8080/app", u.URL) }},
		{"fcgi://unix:/run/php/php-fpm.sock", UpstreamFastCGI, func(t *testing.T, u *Upstream) {
			assert.Equal(t, "unix:/run/php/php-fpm.sock", u.Address)
		}},
		{"fcgi://127.0.0.1:9001", UpstreamFastCGI, func(t *testing.T, u *Upstream) { assert.Equal(t, "tcp:127.0.0.1:9001", u.Address) }},
		{"file:/var/www", UpstreamFile, func(t *testing.T, u *Upstream) { assert.Equal(t, "/var/www", u.Root) }},
	}
	for _, tt := range tests {
		t.Run(tt.upstream, func(t *testing.T) {
			c, err := Quick([]string{"tcp:127.0.0.1:9000", "unix:/tmp/b.sock"}, tt.upstream, []string{"cat"})
			require.NoError(t, err)
			require.Len(t, c.Listen, 2)
			assert.Equal(t, []string{"cat"}, c.Transform[QuickTransform].Command)
			require.Len(t, c.Route, 2)
			assert.Equal(t, SourceData, c.Route[0].Source)
			assert.Equal(t, []string{QuickTransform}, c.Route[1].Transform)
			if tt.kind == "" {
				assert.Equal(t, SourceBody, c.Route[1].Source)
				return
			}
			u := c.Upstream[c.Route[1].Source]
			require.NotNil(t, u)
			assert.Equal(t, tt.kind, u.Kind)
			tt.check(t, u)
			var buf bytes.Buffer
			require.NoError(t, c.Encode(&buf))
			_, err = Parse("quick", buf.Bytes())
			require.NoError(t, err, buf.String())
		})
	}
	_, err := Quick(nil, "ftp://x", []string{"cat"})
	require.Error(t, err)
	_, err = Quick([]string{"9000"}, "", []string{"cat"})
	require.Error(t, err)
	c, err := Quick(nil, "", nil)
	require.NoError(t, err)
	assert.Empty(t, c.Route[1].Transform, "no command: content passes through")
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]Size{"0": 0, "100": 100, "1KiB": 1024, "64 MiB": 64 << 20, "2G": 2 << 30, "3kb": 3072} {
		var s Size
		require.NoError(t, s.UnmarshalText([]byte(in)), in)
		assert.Equal(t, want, s, in)
		b, _ := s.MarshalText()
		var back Size
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, s, back)
	}
	for _, in := range []string{"", "x", "-1", "1.5MiB", "99999999999GiB"} {
		var s Size
		assert.Error(t, s.UnmarshalText([]byte(in)), in)
	}
	for _, want := range []string{"0s", "250ms", "30s", "5m", "1m30s", "1h", "2h0m5s", "1h1m"} {
		var d Duration
		require.NoError(t, d.UnmarshalText([]byte(want)))
		got, _ := d.MarshalText()
		assert.Equal(t, want, string(got))
	}
	var d Duration
	require.NoError(t, d.UnmarshalTOML("1m30s"))
	assert.Equal(t, 90*time.Second, d.Std())
	assert.Error(t, d.UnmarshalTOML(int64(5)))
	assert.Error(t, d.UnmarshalTOML("-1s"))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bridge.toml")
	require.NoError(t, os.WriteFile(p, []byte(minimal+"wat = 1\n"), 0o644))
	_, err := Load(p)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), p+":7: "), err.Error())
	_, err = Load(filepath.Join(dir, "missing.toml"))
	require.Error(t, err)
}

func TestResolveCommand(t *testing.T) {
	argv, err := ResolveCommand([]string{SelfCommand, "transform", "upper"})
	require.NoError(t, err)
	self, _ := os.Executable()
	assert.Equal(t, []string{self, "transform", "upper"}, argv)
	argv, err = ResolveCommand([]string{"cat"})
	require.NoError(t, err)
	assert.Equal(t, []string{"cat"}, argv)
}

func TestKeyLines(t *testing.T) {
	kl := scanKeyLines([]byte(`a = 1
[t.x]
b = "=" # c = 2
[[r]]
n = 1
[[r.h]]
m = 2
[[r]]
s = """
z = 3
"""
[[r.h]]
"q.k" = 1
`))
	for key, line := range map[string]int{"a": 1, "t.x": 2, "t.x.b": 3, "r.0.n": 5, "r.0.h.0.m": 7, "r.1": 8, "r.1.s": 9, "r.1.h.0.q.k": 13} {
		assert.Equal(t, line, kl.line(key), key)
	}
	_, ok := kl.exact["r.1.z"]
	assert.False(t, ok, "inside a multi-line string")
}

// TestSystemdListen: a file's [[listen]] takes the systemd socket-activation
// forms that --listen takes, checked by the parser that opens them.
func TestSystemdListen(t *testing.T) {
	c, err := Parse("t.toml", []byte("[[listen]]\naddr = \"systemd:\"\n[[listen]]\naddr = \"systemd:fcgi\"\n"+minimal))
	require.NoError(t, err)
	require.Len(t, c.Listen, 2)
	assert.Equal(t, "systemd:", c.Listen[0].Addr)
	assert.Equal(t, "systemd:fcgi", c.Listen[1].Addr)
	for _, addr := range []string{"systemd:", "systemd:web", "tcp:127.0.0.1:9000", "tcp:[::1]:9000", "unix:/run/x.sock"} {
		_, _, err := ParseListenAddr(addr)
		assert.NoError(t, err, addr)
	}
	for _, addr := range []string{"systemd", "127.0.0.1:9000", "/run/x.sock", "udp:1.2.3.4:5", "unix:", "tcp:host"} {
		_, _, err := ParseListenAddr(addr)
		assert.Error(t, err, addr)
	}
}

// TestRequestBufferingKeys: buffering is on unless an upstream turns it
// off; the spool limits are checked.
func TestRequestBufferingKeys(t *testing.T) {
	c, err := Parse("t.toml", []byte(`
[server]
spool_dir = "/var/spool/fcgi-bridge"
spool_memory = "256KiB"
max_body = "10MiB"

[upstream.app]
kind = "http"
url = "http://127.0.0.1:8080/"

[upstream.live]
kind = "body"
request_buffering = false
`+minimal))
	require.NoError(t, err)
	assert.Equal(t, "/var/spool/fcgi-bridge", c.Server.SpoolDir)
	assert.Equal(t, Size(256<<10), c.Server.SpoolMemory)
	assert.Equal(t, Size(10<<20), c.Server.MaxBody)
	assert.True(t, c.Upstream["app"].RequestBuffering, "on by default: nginx is half duplex")
	assert.False(t, c.Upstream["live"].RequestBuffering)
	assert.Equal(t, Size(1<<20), defaultServer().SpoolMemory)
	assert.Equal(t, Size(1<<30), defaultServer().MaxBody)

	for _, bad := range []struct{ toml, want string }{
		{"[server]\nmax_body = 0\n", "t.toml:2: server.max_body"},
		{"[server]\nspool_dir = \"spool\"\n", "t.toml:2: server.spool_dir"},
	} {
		_, err := Parse("t.toml", []byte(bad.toml+minimal))
		require.Error(t, err)
		assert.Contains(t, err.Error(), bad.want)
	}
}

// A value of the wrong type stops the decoding of its table: the keys after
// it must not come back as unknown, nor the values they set as missing,
// while problems elsewhere are still all reported.
func TestTypeErrorReportedAlone(t *testing.T) {
	_, err := Parse("t.toml", []byte(`[transform.x]
timeout = 30
command = ["cat"]
max = 2

[transform.y]
command = ["cat"]
colour = 1

[[route]]
name = "a"
keep_input = "lots"
transform = ["x"]
fail = "open"

[[route]]
name = "b"
transform = ["y"]
colour = 2
`))
	var es Errors
	require.True(t, errors.As(err, &es), "%v", err)
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Key))
	}
	require.Equal(t, []string{"2 transform.x.timeout", "8 transform.y.colour", "12 route \"a\".keep_input", "19 route \"b\".colour"}, got, "%v", err)
}

func TestKnownKey(t *testing.T) {
	for key, want := range map[string]bool{
		"route.transform":          true,
		"route.header.match":       true,
		"route.colour":             false,
		"route.header.nme":         false,
		"transform.x.env.NODE_ENV": true,
		"transform.x.max":          true,
		"transform.x.maxx":         false,
		"upstream.u.params.SCRIPT": true,
		"listen.allow":             true,
		"server.max_conns":         false, // not an array or named table
	} {
		assert.Equal(t, want, knownKey(key), key)
	}
}

// ParseLevel is what both the check and the daemon use: each spelling the
// check passes maps to a level, and nothing else passes.
func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn,
		"warning": slog.LevelWarn, "Warning": slog.LevelWarn, "error": slog.LevelError,
	} {
		got, err := ParseLevel(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
		_, err = Parse("t.toml", []byte("[log]\nlevel = \""+in+"\"\n"+minimal))
		assert.NoError(t, err, in)
	}
	for _, in := range []string{"loud", "", "info+2"} {
		_, err := ParseLevel(in)
		assert.Error(t, err, in)
		_, err = Parse("t.toml", []byte("[log]\nlevel = \""+in+"\"\n"+minimal))
		assert.ErrorContains(t, err, "log.level", in)
	}
}
