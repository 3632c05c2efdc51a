package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/stretchr/testify/require"
)

// testServer serves a handler that reports what it received.
func testServer(t *testing.T) (unixAddr string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := &fcgi.Server{Handler: fcgi.HandlerFunc(func(w fcgi.ResponseWriter, r *fcgi.Request) {
		body, _ := io.ReadAll(r.Stdin)
		data, _ := io.ReadAll(r.Data)
		if r.Params["SCRIPT_NAME"] == "/missing" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(404)
			fmt.Fprint(w, "no such page\n")
			return
		}
		if r.Params["SCRIPT_NAME"] == "/stderr" {
			fmt.Fprint(w.Stderr(), "warning from the app\n")
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Role", r.Role.String())
		w.WriteHeader(200)
		names := make([]string, 0, len(r.Params))
		for k := range r.Params {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(w, "%s=%s\n", k, r.Params[k])
		}
		fmt.Fprintf(w, "keep=%v body=%q data=%q datalen=%d\n", r.KeepConn, body, data, r.DataLength)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix:" + sock
}

func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSingleRequest(t *testing.T) {
	addr := testServer(t)
	dir := t.TempDir()
	bodyFile := filepath.Join(dir, "body.txt")
	require.NoError(t, os.WriteFile(bodyFile, []byte("file body"), 0o644))
	dataFile := filepath.Join(dir, "page.html")
	require.NoError(t, os.WriteFile(dataFile, []byte("<p>data</p>"), 0o644))
	mod := time.Unix(1700000000, 0)
	require.NoError(t, os.Chtimes(dataFile, mod, mod))

	tests := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		want    []string
		notWant []string
		stderr  string
	}{
		{name: "defaults from URL", args: []string{addr, "http://example.com:8080/a/b.php?x=1&y=2"},
			want: []string{"REQUEST_METHOD=GET\n", "SCRIPT_NAME=/a/b.php\n", "REQUEST_URI=/a/b.php?x=1&y=2\n",
				"QUERY_STRING=x=1&y=2\n", "SERVER_NAME=example.com\n", "SERVER_PORT=8080\n", "SERVER_PROTOCOL=HTTP/1.1\n",
				"GATEWAY_INTERFACE=CGI/1.1\n", "HTTP_HOST=example.com:8080\n", `body=""`},
			notWant: []string{"CONTENT_LENGTH", "Status:"}},
		{name: "path only", args: []string{addr, "/p"}, want: []string{"SERVER_NAME=localhost\n", "SERVER_PORT=80\n", "REQUEST_URI=/p\n"}},
		{name: "include headers", args: []string{"-i", addr, "/"},
			want: []string{"Status: 200 OK\r\n", "Content-Type: text/plain\r\n", "X-Role: RESPONDER\r\n\r\n"}},
		{name: "raw", args: []string{"--raw", addr, "/"}, want: []string{"Status: 200 OK\r\n"}},
		{name: "body from file", args: []string{addr, "/up", "--body", bodyFile, "--content-type", "text/plain"},
			want: []string{"REQUEST_METHOD=POST\n", "CONTENT_LENGTH=9\n", "CONTENT_TYPE=text/plain\n", `body="file body"`}},
		{name: "body from stdin", stdin: "piped", args: []string{addr, "/up", "--body", "-", "-X", "put"},
			want: []string{"REQUEST_METHOD=PUT\n", "CONTENT_LENGTH=5\n", `body="piped"`}},
		{name: "streamed body of unknown length", stdin: "streamed", args: []string{addr, "/up", "--body", "-", "--stream"},
			want: []string{"REQUEST_METHOD=POST\n", "CONTENT_LENGTH=\n", `body="streamed"`}},
		{name: "params and headers override", args: []string{addr, "/x", "-p", "SERVER_NAME=override", "-p", "EXTRA=1",
			"-H", "X-Forwarded-For: 10.0.0.1", "-H", "Content-Type: text/csv"},
			want: []string{"SERVER_NAME=override\n", "EXTRA=1\n", "HTTP_X_FORWARDED_FOR=10.0.0.1\n", "CONTENT_TYPE=text/csv\n"}},
		{name: "docroot", args: []string{addr, "/i.php", "--docroot", "/var/www"},
			want: []string{"SCRIPT_FILENAME=/var/www/i.php\n", "DOCUMENT_ROOT=/var/www\n"}},
		{name: "filter with data", args: []string{addr, "/page.html", "--data", dataFile, "-i"},
			want: []string{"X-Role: FILTER", "FCGI_DATA_LENGTH=11\n", "FCGI_DATA_LAST_MOD=1700000000\n", `data="<p>data</p>" datalen=11`}},
		{name: "authorizer", args: []string{addr, "/", "--role", "authorizer", "-i"}, want: []string{"X-Role: AUTHORIZER"}},
		{name: "keep-conn flag sent", args: []string{addr, "/", "-k"}, want: []string{"keep=true"}},
		{name: "404 is not an error", args: []string{addr, "/missing"}, want: []string{"no such page"}},
		{name: "404 with --fail", args: []string{addr, "/missing", "--fail"}, code: exitFail},
		{name: "stderr passed on", args: []string{addr, "/stderr"}, stderr: "warning from the app"},
		{name: "verbose", args: []string{addr, "/", "-v"}, stderr: "END_REQUEST appStatus=0 protocolStatus=0"},
		{name: "get-values", args: []string{addr, "--get-values"}, want: []string{"FCGI_MAX_CONNS=", "FCGI_MAX_REQS=", "FCGI_MPXS_CONNS="}},
		{name: "unknown role", args: []string{addr, "/", "--role", "9"}, code: exitError, stderr: "FCGI_UNKNOWN_ROLE"},
		{name: "data without filter", args: []string{addr, "/", "--role", "responder", "--data", dataFile}, code: exitUsage},
		{name: "bad address", args: []string{"nohost"}, code: exitUsage, stderr: "want tcp:HOST:PORT"},
		{name: "no address", args: []string{}, code: exitUsage},
		{name: "bad param", args: []string{addr, "-p", "NOEQUALS"}, code: exitUsage},
		{name: "connection refused", args: []string{"unix:" + filepath.Join(dir, "none.sock"), "/"}, code: exitError, stderr: "connect to unix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.stdin, tc.args...)
			require.Equal(t, tc.code, code, "stdout %q stderr %q", out, errOut)
			for _, w := range tc.want {
				require.Contains(t, out, w)
			}
			for _, w := range tc.notWant {
				require.NotContains(t, out, w)
			}
			require.Contains(t, errOut, tc.stderr)
		})
	}
}

func TestSplitAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"tcp:127.0.0.1:9000":         {"tcp", "127.0.0.1:9000"},
		"127.0.0.1:9000":             {"tcp", "127.0.0.1:9000"},
		"unix:/run/php/php-fpm.sock": {"unix", "/run/php/php-fpm.sock"},
		"/run/app.sock":              {"unix", "/run/app.sock"},
		"[::1]:9000":                 {"tcp", "[::1]:9000"},
	} {
		n, a, err := splitAddress(in)
		require.NoError(t, err, in)
		require.Equal(t, want, [2]string{n, a}, in)
	}
	for _, bad := range []string{"unix:", "tcp:", "localhost"} {
		_, _, err := splitAddress(bad)
		require.Error(t, err, bad)
	}
}

func TestLoadMode(t *testing.T) {
	addr := testServer(t)
	for _, tc := range []struct {
		name string
		args []string
		n    int64
	}{
		{"new connections", []string{"-n", "200", "-c", "4"}, 200},
		{"keep-conn", []string{"-n", "500", "-c", "8", "-k"}, 500},
		{"multiplexed", []string{"-n", "500", "-c", "16", "--multiplex", "--max-reqs-per-conn", "8"}, 500},
		{"with body", []string{"-n", "100", "-c", "4", "-k", "--body", "-"}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{addr, "/load", "--json"}, tc.args...)
			code, out, errOut := runCmd(t, "body bytes", args...)
			require.Equal(t, exitOK, code, errOut+out)
			var rep loadReport
			require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
			require.Equal(t, tc.n, rep.Requests)
			require.Equal(t, tc.n, rep.OK)
			require.Zero(t, rep.Errors)
			require.Equal(t, int(tc.n), rep.Status["200"])
			require.Positive(t, rep.RPS)
			require.LessOrEqual(t, rep.Latency.P50, rep.Latency.P99)
			require.LessOrEqual(t, rep.Latency.P99, rep.Latency.Max)
		})
	}

	t.Run("duration and text report", func(t *testing.T) {
		code, out, errOut := runCmd(t, "", addr, "/load", "--duration", "300ms", "-c", "4", "-k")
		require.Equal(t, exitOK, code, errOut)
		for _, w := range []string{"requests:", "req/s", "p50", "p90", "p99", "max", "status:      200: "} {
			require.Contains(t, out, w)
		}
	})

	t.Run("errors by kind and by status", func(t *testing.T) {
		code, out, _ := runCmd(t, "", addr, "/missing", "-n", "20", "-c", "2", "--role", "9", "--json")
		require.Equal(t, exitError, code)
		var rep loadReport
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		require.Equal(t, int64(20), rep.Errors)
		require.Equal(t, 20, rep.ErrorKinds["unknown_role"])

		code, out, _ = runCmd(t, "", addr, "/missing", "-n", "20", "-c", "2", "--json")
		require.Equal(t, exitOK, code)
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		require.Equal(t, 20, rep.Status["404"])

		code, out, _ = runCmd(t, "", "unix:/nonexistent/x.sock", "/", "-n", "5", "--json")
		require.Equal(t, exitError, code)
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		require.Equal(t, 5, rep.ErrorKinds["connect"])
	})
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	require.Equal(t, time.Duration(50), percentile(ds, 50))
	require.Equal(t, time.Duration(90), percentile(ds, 90))
	require.Equal(t, time.Duration(99), percentile(ds, 99))
	require.Equal(t, time.Duration(1), percentile(ds[:1], 99))
}

// The command against php-fpm, the application it is most used with.
func TestAgainstPHPFPM(t *testing.T) {
	fpm := peers.StartPHPFPM(t, peers.PHPFPMConfig{Children: 2, Scripts: map[string]string{
		"info.php": `<?php header("X-Method: ".$_SERVER["REQUEST_METHOD"]); echo "uri=", $_SERVER["REQUEST_URI"], " body=", file_get_contents("php://input"), "\n";`,
	}})
	addr := string(fpm.FastCGI)
	code, out, errOut := runCmd(t, "", addr, "http://localhost/info.php?a=b", "--docroot", fpm.DocRoot, "-i")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "X-Method: GET\r\n")
	require.Contains(t, out, "uri=/info.php?a=b body=\n")

	code, out, errOut = runCmd(t, "posted", addr, "/info.php", "--docroot", fpm.DocRoot, "--body", "-")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "body=posted")

	code, out, errOut = runCmd(t, "", addr, "/info.php", "--docroot", fpm.DocRoot, "-n", "200", "-c", "8", "-k", "--max-conns", "2", "--json")
	require.Equal(t, exitOK, code, errOut+out)
	var rep loadReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 200, rep.Status["200"])

	code, out, _ = runCmd(t, "", addr, "--get-values")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "FCGI_MPXS_CONNS=0")
}

// When no request got an answer there is no throughput: failures come back
// fast and a req/s figure would read as a result.
func TestLoadEveryRequestFailed(t *testing.T) {
	code, out, _ := runCmd(t, "", "unix:/nonexistent/x.sock", "/", "-n", "5")
	require.Equal(t, exitError, code)
	require.NotContains(t, out, "req/s", out)
	require.Contains(t, out, "every request failed", out)
	require.Contains(t, out, "connect: 5", out)

	code, out, _ = runCmd(t, "", "unix:/nonexistent/x.sock", "/", "-n", "5", "--json")
	require.Equal(t, exitError, code)
	require.NotContains(t, out, "requests_per_second", out)
}

func TestHelpToStdout(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		code, out, errOut := runCmd(t, "", arg)
		require.Equal(t, exitOK, code, arg)
		require.Contains(t, out, "usage: fcgi-request", arg)
		require.Contains(t, out, "--concurrency", arg)
		require.Empty(t, errOut, arg)
	}
	code, out, errOut := runCmd(t, "")
	require.Equal(t, exitUsage, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "usage: fcgi-request")
}
