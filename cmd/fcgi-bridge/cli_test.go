package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodConfig = `
[[listen]]
addr = "tcp:127.0.0.1:9000"

[transform.shout]
command = ["@self", "transform", "upper"]

[[route]]
name = "all"
source = "body"
transform = ["shout"]
`

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "fcgi-bridge ") {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, goodConfig)
	code, out, errOut := runCmd(t, "", "-t", "-c", good)
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("-t on a good file: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}

	// Line 7 holds an unknown key.
	bad := writeConfig(t, strings.Replace(goodConfig, `command = ["@self", "transform", "upper"]`,
		`command = ["@self", "transform", "upper"]`+"\nmaxx = 3", 1))
	code, _, errOut = runCmd(t, "", "--test", "--config", bad)
	if code != 1 || !strings.Contains(errOut, bad+":7") || !strings.Contains(errOut, "maxx") {
		t.Fatalf("-t on a file with an unknown key at line 7: exit %d, stderr %q", code, errOut)
	}

	missing := writeConfig(t, strings.Replace(goodConfig, `["@self", "transform", "upper"]`, `["/nonexistent/renderer"]`, 1))
	code, _, errOut = runCmd(t, "", "-t", "-c", missing)
	if code != 1 || !strings.Contains(errOut, "transform.shout.command") {
		t.Fatalf("-t with a missing program: exit %d, stderr %q", code, errOut)
	}

	code, _, errOut = runCmd(t, "", "-t", "-c", filepath.Join(t.TempDir(), "none.toml"))
	if code != 1 || !strings.Contains(errOut, "none.toml") {
		t.Fatalf("-t on a missing file: exit %d, stderr %q", code, errOut)
	}

	code, out, _ = runCmd(t, "", "-t")
	if code != 0 || !strings.Contains(out, "(default)") {
		t.Fatalf("-t on the embedded default: exit %d, %q", code, out)
	}
}

func TestDump(t *testing.T) {
	code, out, errOut := runCmd(t, "", "-T", "-c", writeConfig(t, goodConfig), "--listen", "unix:/run/x.sock", "--log-format", "json")
	if code != 0 {
		t.Fatalf("-T: exit %d, %s", code, errOut)
	}
	cfg, err := conf.Parse("dump", []byte(out))
	if err != nil {
		t.Fatalf("-T printed a configuration that does not parse: %v\n%s", err, out)
	}
	if len(cfg.Listen) != 1 || cfg.Listen[0].Addr != "unix:/run/x.sock" || cfg.Listen[0].Mode != "0660" {
		t.Errorf("--listen did not replace the listeners with defaults filled in: %+v", cfg.Listen)
	}
	if cfg.Log.Format != "json" || cfg.Transform["shout"] == nil || cfg.Transform["shout"].Max == 0 {
		t.Errorf("effective configuration incomplete:\n%s", out)
	}

	code, out, _ = runCmd(t, "", "-T", "--listen", "tcp:127.0.0.1:9100", "--", "cat")
	if code != 0 || !strings.Contains(out, "cat") || !strings.Contains(out, "tcp:127.0.0.1:9100") {
		t.Fatalf("-T in quick mode: exit %d\n%s", code, out)
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"stray"},
		{"--log-format", "xml"},
		{"--log-level", "loud"},
		{"--listen", "udp:1.2.3.4:5"},
		{"-c", "x.toml", "--", "cat"},
		{"--"},
	} {
		code, _, errOut := runCmd(t, "", args...)
		if code != 2 || !strings.HasPrefix(errOut, "fcgi-bridge: ") && !strings.Contains(errOut, "unknown flag") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
}

// TestTransformSubcommand drives a sample transform through the real binary
// with several messages on stdin.
func TestTransformSubcommand(t *testing.T) {
	msg := func(body string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	code, out, errOut := runCmd(t, msg("one")+msg("two")+msg("three"), "transform", "upper")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"ONE", "TWO", "THREE"} {
		if !strings.Contains(out, "\r\n\r\n"+want) {
			t.Errorf("answer %s missing from %q", want, out)
		}
	}
	if n := strings.Count(out, "HTTP/1.1 200 OK\r\n"); n != 3 {
		t.Errorf("%d answers, want 3", n)
	}

	code, _, errOut = runCmd(t, "", "transform", "nope")
	if code != 1 || !strings.Contains(errOut, "unknown sample transform") {
		t.Errorf("unknown transform: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCmd(t, "", "transform")
	if code != 2 || !strings.Contains(errOut, "json-html") {
		t.Errorf("no name: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCmd(t, "garbage\r\n\r\n", "transform", "identity")
	if code != 1 || !strings.Contains(errOut, "bad status line") {
		t.Errorf("protocol error: exit %d, %q", code, errOut)
	}
}

// TestDefaultConfigNames checks that every sample transform the embedded
// default names exists in the binary.
func TestDefaultConfigNames(t *testing.T) {
	for _, name := range conf.SampleTransforms() {
		code, _, errOut := runCmd(t, "", "transform", name)
		if code != 0 {
			t.Errorf("the default configuration runs `transform %s`, which fails: %s", name, errOut)
		}
	}
}
