package fcgi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

// abortApp writes 100 KB and then aborts the response, as the bridge does
// when a transform dies after output began. With ?length=1 the response
// declares the full length it never completes; ?ok=1 answers normally.
type abortApp struct{}

const abortAppBody = 100 << 10

func (abortApp) ServeFCGI(w fcgi.ResponseWriter, r *fcgi.Request) {
	_, _ = io.Copy(io.Discard, r.Stdin)
	q := r.Params["QUERY_STRING"]
	if strings.Contains(q, "length=1") {
		w.Header().Set("Content-Length", fmt.Sprint(2*abortAppBody))
	}
	_, _ = io.WriteString(w, strings.Repeat("a", abortAppBody))
	if strings.Contains(q, "ok=1") {
		return
	}
	_ = w.Flush()
	w.(fcgi.Aborter).Abort(errors.New("transform crashed"))
}

// curlResult runs curl against url and returns its exit code, the body bytes
// it received and its error text.
func curlResult(t *testing.T, url string) (code, got int, stderr string) {
	t.Helper()
	curl := testenv.Require(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS", "--http1.1", "-o", "-", url)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("curl: %v", err)
	}
	require.NoError(t, ctx.Err(), "curl timed out: the web server waited instead of ending the response")
	return code, out.Len(), errb.String()
}

// An aborted response must reach the client as a failed transfer, never as
// a complete one: curl exits 18 (partial file) or with another transfer
// error, for a declared Content-Length and for a chunked body, through nginx
// (buffered, unbuffered, kept connections) and Apache (with and without
// connection reuse), and HAProxy (whose first request on a connection has id
// 1, so it gets the same treatment). They stop at the version-0 record.
func TestAbortThroughWebServers(t *testing.T) {
	type startFunc func(t *testing.T, up peers.Upstream) *peers.Server
	cases := []struct {
		name    string
		network string
		start   startFunc
		// chunkedLooksComplete: measured with lighttpd 1.4: it buffers a
		// body of unknown length and, when the application fails, logs
		// "backend returned error ... terminating connection" but still
		// sends what it received with a Content-Length of that size and
		// Connection: close, so the client sees a complete response. Nothing
		// the application sends can change that.
		chunkedLooksComplete bool
	}{
		{"nginx", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up})
		}, false},
		{"nginx-tcp", "tcp", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up})
		}, false},
		{"nginx-unbuffered", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up, NoResponseBuffering: true})
		}, false},
		{"nginx-keepconn", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up, KeepConn: true})
		}, false},
		{"apache", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartApache(t, peers.ApacheConfig{FastCGI: up})
		}, false},
		{"apache-tcp", "tcp", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartApache(t, peers.ApacheConfig{FastCGI: up})
		}, false},
		{"apache-reuse", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartApache(t, peers.ApacheConfig{FastCGI: up, EnableReuse: true})
		}, false},
		{"lighttpd", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartLighttpd(t, peers.LighttpdConfig{FastCGI: up})
		}, true},
		{"haproxy", "tcp", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartHAProxy(t, peers.HAProxyConfig{FastCGI: up})
		}, false},
		{"haproxy-mpxs", "tcp", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartHAProxy(t, peers.HAProxyConfig{FastCGI: up, MpxsConns: true, GetValues: true})
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t, tc.network)
			srv := &fcgi.Server{Handler: abortApp{}}
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close(); <-done })
			s := tc.start(t, peers.UpstreamOf(l.Addr()))

			// The control: a complete response is received whole.
			code, got, errText := curlResult(t, s.URL("/abort?ok=1"))
			require.Equal(t, 0, code, errText)
			require.Equal(t, abortAppBody, got)

			for _, mode := range []string{"length=1", "chunked=1"} {
				start := time.Now()
				code, got, errText := curlResult(t, s.URL("/abort?"+mode))
				t.Logf("%s %s: curl exit %d after %d bytes in %v: %s", tc.name, mode, code, got, time.Since(start).Round(time.Millisecond), strings.TrimSpace(errText))
				if mode == "chunked=1" && tc.chunkedLooksComplete {
					t.Logf("%s: response headers of the aborted response:\n%s", tc.name, curlHeaders(t, s.URL("/abort?"+mode)))
					require.Contains(t, s.Logs(), "terminating connection")
					continue
				}
				require.NotEqual(t, 0, code, "%s: an aborted response reached the client as complete\n%s", mode, s.Logs())
				require.LessOrEqual(t, got, abortAppBody)
			}
			// The connection (or the kept one) still serves.
			code, got, errText = curlResult(t, s.URL("/abort?ok=1"))
			require.Equal(t, 0, code, errText)
			require.Equal(t, abortAppBody, got)
			logs := s.Logs()
			require.Contains(t, logs, "transform crashed", "the STDERR line reached the web server's log")
			t.Logf("%s log lines:\n%s", tc.name, grepLines(logs, "prematurely", "transform crashed", "FastCGI", "(104)", "AH01"))
		})
	}
}

func grepLines(s string, words ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// curlHeaders returns the response header block curl received for url.
func curlHeaders(t *testing.T, url string) string {
	t.Helper()
	curl := testenv.Require(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, curl, "-sS", "--http1.1", "-D", "-", "-o", "/dev/null", url).Output()
	return string(out)
}
