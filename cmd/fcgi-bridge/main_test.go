package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// binary is the command, built once for all tests and run as a real process.
var binary string

func TestMain(m *testing.M) {
	// transform-check's tests run this binary as a misbehaving transform.
	testtransform.Run()
	dir, err := os.MkdirTemp("", "fcgi-bridge-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "fcgi-bridge")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build fcgi-bridge:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCmd runs the command to completion and returns its exit status and output.
func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// proc is a running fcgi-bridge.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *testenv.Lines
	done chan struct{}
	err  error
}

// start runs the daemon and waits for its start-up line.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv is start with variables added to the daemon's environment.
func startEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &proc{t: t, cmd: cmd, log: testenv.NewLines(stderr), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log)
		}
	})
	if _, ok := d.log.WaitFor("fcgi-bridge started", 20*time.Second); !ok {
		t.Fatalf("the daemon did not start:\n%s", d.log)
	}
	return d
}

func (d *proc) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// wait waits for the daemon to exit and returns its exit status.
func (d *proc) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatalf("the daemon did not exit within %v", timeout)
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if d.err != nil {
		d.t.Fatal(d.err)
	}
	return 0
}

// response is a FastCGI answer, parsed.
type response struct {
	status int
	header func(string) string
	body   string
}

type request struct {
	role   fcgi.Role
	method string
	uri    string
	body   string
	data   string
	ctype  string
	accept string
}

// do sends one request to the daemon at network/address.
func do(ctx context.Context, c *fcgi.Client, r request) (*response, error) {
	if r.method == "" {
		r.method = "POST"
	}
	if r.uri == "" {
		r.uri = "/app/page"
	}
	path, query, _ := strings.Cut(r.uri, "?")
	params := []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: r.method},
		{Name: "REQUEST_URI", Value: r.uri},
		{Name: "SCRIPT_NAME", Value: path},
		{Name: "QUERY_STRING", Value: query},
		{Name: "SERVER_NAME", Value: "localhost"},
		{Name: "SERVER_PORT", Value: "80"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "REQUEST_SCHEME", Value: "http"},
		{Name: "HTTP_HOST", Value: "example.test"},
		{Name: "REMOTE_ADDR", Value: "127.0.0.1"},
		{Name: "CONTENT_LENGTH", Value: fmt.Sprint(len(r.body))},
	}
	if r.ctype != "" {
		params = append(params, fcgi.Pair{Name: "CONTENT_TYPE", Value: r.ctype})
	}
	if r.accept != "" {
		params = append(params, fcgi.Pair{Name: "HTTP_ACCEPT", Value: r.accept})
	}
	req := &fcgi.ClientRequest{Role: r.role, Params: params, Stdin: strings.NewReader(r.body)}
	if r.role == fcgi.RoleFilter {
		req.Params = append(req.Params,
			fcgi.Pair{Name: "FCGI_DATA_LENGTH", Value: fmt.Sprint(len(r.data))},
			fcgi.Pair{Name: "FCGI_DATA_LAST_MOD", Value: fmt.Sprint(time.Now().Unix())})
		req.Data = strings.NewReader(r.data)
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(cgi.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: cgi.Status, header: cgi.Get, body: string(body)}, nil
}

func unixClient(path string) *fcgi.Client {
	return &fcgi.Client{Network: "unix", Address: path, DialTimeout: 5 * time.Second}
}
