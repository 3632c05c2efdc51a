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
// connection reuse). The web servers treat the closed connection without
// END_REQUEST as a truncated upstream response.
func TestAbortThroughWebServers(t *testing.T) {
	type startFunc func(t *testing.T, up peers.Upstream) *peers.Server
	cases := []struct {
		name    string
		network string
		start   startFunc
	}{
		{"nginx", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up})
		}},
		{"nginx-tcp", "tcp", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up})
		}},
		{"nginx-unbuffered", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up, NoResponseBuffering: true})
		}},
		{"nginx-keepconn", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartNginx(t, peers.NginxConfig{FastCGI: up, KeepConn: true})
		}},
		{"apache", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartApache(t, peers.ApacheConfig{FastCGI: up})
		}},
		{"apache-tcp", "tcp", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartApache(t, peers.ApacheConfig{FastCGI: up})
		}},
		{"apache-reuse", "unix", func(t *testing.T, up peers.Upstream) *peers.Server {
			return peers.StartApache(t, peers.ApacheConfig{FastCGI: up, EnableReuse: true})
		}},
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
