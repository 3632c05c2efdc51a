package e2e

import (
	"context"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// readmeCommands returns the commands of the README's first fenced code
// block, without their comments.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(repoRoot + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindSubmatch(data)
	if m == nil {
		t.Fatal("README.md has no fenced code block")
	}
	var cmds []string
	for _, line := range strings.Split(string(m[1]), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// TestReadmeCommands runs the README's first command as written (the
// daemon on its embedded default) and serves requests with it; the second
// must be the test command itself (with the npm step the node tests need),
// which is not run again from here.
func TestReadmeCommands(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) != 2 {
		t.Fatalf("README's first block should hold two commands, has %q", cmds)
	}
	// The node tests skip until testdata/node has its modules, so the
	// test command says how to get them first.
	if want := "(cd testdata/node && npm ci) && go test ./..."; cmds[1] != want {
		t.Errorf("README's second command is %q, want the test command %q", cmds[1], want)
	}
	testenv.Require(t, "go")
	sh := testenv.Require(t, "sh")

	// The embedded default listens on 127.0.0.1:9000; wait out another
	// user of the port rather than fail on a coincidence. Another test run
	// on the machine may take the port between the check and the bind:
	// then wait again.
	free := func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9000", time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}
	start := time.Now()
	var d *daemon
	for attempt := 1; ; attempt++ {
		if !testenv.Poll(30*time.Second, free) {
			t.Fatalf("127.0.0.1:9000, the embedded default's address, is in use by another program")
		}
		var ok bool
		if d, ok = launchDaemon(t, sh, "-c", cmds[0]); ok {
			break
		}
		if attempt == 5 || !strings.Contains(d.log.String(), "address is already in use") {
			t.Fatalf("fcgi-bridge did not start:\n%s", d.log)
		}
	}
	line, _ := d.log.WaitFor("fcgi-bridge started", 0)
	t.Logf("%q came up in %v: %s", cmds[0], time.Since(start), line)
	m := regexp.MustCompile(`listen="?tcp:([0-9.]+:[0-9]+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no TCP listen address in the start-up line %q", line)
	}
	c := &fcgi.Client{Network: "tcp", Address: m[1], DialTimeout: 5 * time.Second}
	defer c.Close()

	body := `{"hello":"<world>"}`
	status, ctype, out := fcgiDo(t, c, fcgi.RoleResponder, body, "", "text/html")
	if status != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(out, "&lt;world&gt;") {
		t.Errorf("RESPONDER on the embedded default: %d %q %q", status, ctype, out)
	}
	status, _, out = fcgiDo(t, c, fcgi.RoleResponder, body, "", "application/json")
	if status != 200 || out != body {
		t.Errorf("JSON asked for: %d %q, want the body untouched", status, out)
	}
	status, _, out = fcgiDo(t, c, fcgi.RoleFilter, "", "filter data", "")
	if status != 200 || out != "FILTER DATA" {
		t.Errorf("FILTER on the embedded default: %d %q", status, out)
	}

	// go run starts the daemon as its child, and the daemon its
	// transforms: every process below the shell, for the leak check.
	procs := descendants(d.cmd.Process.Pid)
	// TERM the group, as a terminal's Ctrl-C would.
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.wait(40 * time.Second)
	if _, ok := d.log.WaitFor(`msg=stopped`, 5*time.Second); !ok {
		t.Errorf("the daemon did not log a clean stop")
	}
	if len(procs) < 3 {
		t.Errorf("found %d processes below the shell (go, the daemon, its transforms): %v", len(procs), procs)
	}
	if left := waitGone(procs, 5*time.Second); len(left) > 0 {
		t.Errorf("processes left after exit: %v of %v", left, procs)
	}
}

// fcgiDo sends one request straight to a bridge and returns the status,
// Content-Type and body.
func fcgiDo(t *testing.T, c *fcgi.Client, role fcgi.Role, body, data, accept string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: "POST"}, {Name: "REQUEST_URI", Value: "/readme/page"},
		{Name: "SCRIPT_NAME", Value: "/readme/page"}, {Name: "SERVER_NAME", Value: "localhost"},
		{Name: "SERVER_PORT", Value: "80"}, {Name: "HTTP_HOST", Value: "localhost"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"}, {Name: "REMOTE_ADDR", Value: "127.0.0.1"},
		{Name: "CONTENT_TYPE", Value: "application/json"},
		{Name: "CONTENT_LENGTH", Value: itoa(len(body))},
	}
	if accept != "" {
		params = append(params, fcgi.Pair{Name: "HTTP_ACCEPT", Value: accept})
	}
	req := &fcgi.ClientRequest{Role: role, Params: params, Stdin: strings.NewReader(body)}
	if role == fcgi.RoleFilter {
		req.Params = append(req.Params, fcgi.Pair{Name: "FCGI_DATA_LENGTH", Value: itoa(len(data))},
			fcgi.Pair{Name: "FCGI_DATA_LAST_MOD", Value: itoa(int(time.Now().Unix()))},
			fcgi.Pair{Name: "FCGI_DATA_CONTENT_TYPE", Value: "text/plain"})
		req.Data = strings.NewReader(data)
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		t.Fatalf("FastCGI %v request: %v", role, err)
	}
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		t.Fatalf("FastCGI %v response: %v", role, err)
	}
	out, err := io.ReadAll(cgi.Body)
	if err != nil {
		t.Fatalf("FastCGI %v body: %v", role, err)
	}
	return cgi.Status, cgi.Get("Content-Type"), string(out)
}

func itoa(n int) string { return strconv.Itoa(n) }
