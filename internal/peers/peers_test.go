package peers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests check the generated configurations against Go's net/http/fcgi
// as the application, so the helpers are proven independently of this
// project's server.

func stdFCGI(t *testing.T, l net.Listener) {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s body=%d", r.Method, r.URL.RequestURI(), len(body))
	})
	go fcgi.Serve(l, h)
}

func get(t *testing.T, url string, body string) (int, string) {
	t.Helper()
	method := http.MethodGet
	var rd io.Reader
	if body != "" {
		method, rd = http.MethodPost, strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func listeners(t *testing.T) map[string]net.Listener {
	return map[string]net.Listener{"tcp": ListenTCP(t), "unix": ListenUnix(t)}
}

func TestPeersWithStdlibApplication(t *testing.T) {
	starts := map[string]func(t *testing.T, up Upstream) *Server{
		"nginx": func(t *testing.T, up Upstream) *Server {
			return StartNginx(t, NginxConfig{FastCGI: up})
		},
		"nginx-keepconn": func(t *testing.T, up Upstream) *Server {
			return StartNginx(t, NginxConfig{FastCGI: up, KeepConn: true, NoRequestBuffering: true})
		},
		"apache": func(t *testing.T, up Upstream) *Server {
			return StartApache(t, ApacheConfig{FastCGI: up})
		},
		"apache-reuse": func(t *testing.T, up Upstream) *Server {
			return StartApache(t, ApacheConfig{FastCGI: up, EnableReuse: true})
		},
		"lighttpd": func(t *testing.T, up Upstream) *Server {
			return StartLighttpd(t, LighttpdConfig{FastCGI: up})
		},
		"haproxy": func(t *testing.T, up Upstream) *Server {
			return StartHAProxy(t, HAProxyConfig{FastCGI: up})
		},
	}
	for name, startFn := range starts {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(name+"-"+network, func(t *testing.T) {
				l := listeners(t)[network]
				stdFCGI(t, l)
				s := startFn(t, UpstreamOf(l.Addr()))
				code, body := get(t, s.URL("/hello?x=1"), "")
				require.Equal(t, 200, code, body)
				require.Equal(t, "GET /hello?x=1 body=0", body)
				code, body = get(t, s.URL("/post"), "abcdef")
				require.Equal(t, 200, code, body)
				require.Equal(t, "POST /post body=6", body)
			})
		}
	}
}

func TestCGIFCGIWithStdlibApplication(t *testing.T) {
	l := ListenTCP(t)
	stdFCGI(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := CGIFCGI(t, ctx, UpstreamOf(l.Addr()), []string{
		"REQUEST_METHOD=POST", "REQUEST_URI=/x", "SCRIPT_NAME=/x", "CONTENT_LENGTH=3",
		"SERVER_PROTOCOL=HTTP/1.1", "SERVER_NAME=localhost", "SERVER_PORT=80",
	}, []byte("abc"))
	require.NoError(t, err)
	require.Contains(t, string(out), "POST /x body=3")
}

func TestUpstreamSplit(t *testing.T) {
	for in, want := range map[Upstream][2]string{
		"tcp:127.0.0.1:9000": {"tcp", "127.0.0.1:9000"},
		"127.0.0.1:9000":     {"tcp", "127.0.0.1:9000"},
		"unix:/run/a.sock":   {"unix", "/run/a.sock"},
		"/run/a.sock":        {"unix", "/run/a.sock"},
	} {
		n, a := in.Split()
		require.Equal(t, want, [2]string{n, a}, string(in))
	}
}

func TestTranscriptRoundTrip(t *testing.T) {
	path := t.TempDir() + "/x.bin"
	in := [][]byte{[]byte("first"), nil, []byte("second connection")}
	require.NoError(t, WriteTranscript(path, in))
	out, err := ReadTranscript(path)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("first"), []byte("second connection")}, out)
	// Readable by the fcgi package's replay too: the same magic line.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(raw), "FCGIPEER1\n"))
	require.NoError(t, os.WriteFile(path, raw[:len(raw)-3], 0o644))
	_, err = ReadTranscript(path)
	require.Error(t, err)
}

func TestRecorderKeepsWhatThePeerSent(t *testing.T) {
	rec := NewRecorder(ListenTCP(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := rec.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", rec.Addr().String())
	require.NoError(t, err)
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	c.Close()
	<-done
	require.Equal(t, [][]byte{[]byte("hello")}, rec.Transcript())
}
