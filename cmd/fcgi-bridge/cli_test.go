package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/sample"
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

// Help that was asked for is the answer: it goes to stdout with exit 0, so
// that `fcgi-bridge --help | less` shows it. A bad flag is an error: the
// usage goes to stderr with exit 2.
func TestHelpToStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errOut := runCmd(t, "", args...)
		if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "--config") || errOut != "" {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q", args, code, out, errOut)
		}
	}
	code, out, errOut := runCmd(t, "", "--no-such-flag")
	if code != 2 || out != "" || !strings.Contains(errOut, "no-such-flag") || !strings.Contains(errOut, "fcgi-bridge --help") {
		t.Errorf("--no-such-flag: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

// `fcgi-bridge transform --help` lists the sample transforms instead of
// looking for one called "--help".
func TestTransformHelp(t *testing.T) {
	for _, args := range [][]string{{"transform", "--help"}, {"transform", "-h"}, {"transform", "help"}} {
		code, out, errOut := runCmd(t, "", args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, n := range sample.Names() {
			if !strings.Contains(out, "  "+n+" ") {
				t.Errorf("%v: the sample %q is not listed:\n%s", args, n, out)
			}
		}
	}
	code, out, errOut := runCmd(t, "", "transform")
	if code != 2 || out != "" || !strings.Contains(errOut, "usage: fcgi-bridge transform NAME") {
		t.Errorf("transform without a name: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestVersionOf(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	vcs := func(modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, tc := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"linked tag wins", "v1.2.0", vcs("false"), "v1.2.0"},
		{"go install @tag", "devel", &debug.BuildInfo{Main: debug.Module{Version: "v1.1.0"}}, "v1.1.0"},
		{"checkout", "devel", vcs("false"), "devel-0123456789ab"},
		{"checkout with changes", "devel", vcs("true"), "devel-0123456789ab-dirty"},
		{"no build info", "devel", nil, "devel"},
		{"nothing recorded", "devel", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		if got := versionOf(tc.linked, tc.bi); got != tc.want {
			t.Errorf("%s: versionOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A binary built from a checkout without -ldflags names the commit it was
// built from.
func TestVersionNamesCommit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed: the build records no commit")
	}
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		// The go command looks for a .git directory; in a `git worktree`
		// .git is a file, and nothing is recorded.
		t.Skip("a git worktree: the go command records no commit there")
	}
	bin := filepath.Join(t.TempDir(), "fcgi-bridge")
	// GOFLAGS may switch the recording off; the flag on the command line wins.
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Go records a pseudo-version naming the commit
	// (v0.0.0-20261203064811-742a0b3de668), or older ones only the
	// revision, which versionOf turns into devel-742a0b3de668.
	if want := string(head[:12]); !strings.Contains(string(out), want) {
		t.Errorf("--version = %q, want it to name the commit %s", out, want)
	}
}

// -t says its warnings on stderr and still passes the file; a script that
// does not exist fails it, at the line of the command.
func TestCheckWarningsAndScripts(t *testing.T) {
	risky := writeConfig(t, goodConfig+`
[[listen]]
addr = "unix:/tmp/fcgi-bridge-never-opened.sock"
mode = "0666"
`)
	code, out, errOut := runCmd(t, "", "-t", "-c", risky)
	if code != 0 || !strings.Contains(out, "is valid") ||
		!strings.Contains(errOut, "fcgi-bridge: warning: "+risky+":15: listen.1.mode: \"0666\" lets every local user") {
		t.Errorf("-t with a world-writable socket: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}

	script := writeConfig(t, strings.Replace(goodConfig, `["@self", "transform", "upper"]`, `["sh", "/nonexistent/script.py"]`, 1))
	code, _, errOut = runCmd(t, "", "-t", "-c", script)
	if code != 1 || !strings.Contains(errOut, script+":6: transform.shout.command: \"/nonexistent/script.py\": no such file") {
		t.Errorf("-t with a missing script: exit %d, stderr %q", code, errOut)
	}
}
