package bridge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// BenchmarkPassHTTP measures a whole pass-through request the way the
// end-to-end bench drives it: a FastCGI client with kept connections and the
// params nginx sends, the bridge behind a real fcgi.Server on a unix socket,
// and an HTTP upstream on loopback answering a 250-byte JSON page. Client and
// upstream run in the same process, so the figures include their cost too;
// compare before and after a change, not with the e2e req/s. cpu-ns/op is the
// process's CPU time (user+system) per request: on a busy machine it moves
// much less than ns/op, which also counts waiting for a CPU.
func BenchmarkPassHTTP(b *testing.B) {
	page := make([]byte, 250)
	for i := range page {
		page[i] = 'x'
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		w.Write(page)
	})}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go app.Serve(appLn)
	defer app.Close()

	cfg, err := conf.Parse("bench.toml", []byte(fmt.Sprintf(`
[upstream.app]
kind = "http"
url = "http://%s/"
[[route]]
name = "pass"
path = "/pass"
source = "app"
`, appLn.Addr())))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Log.Access = false
	br, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(context.Background())
	sock := filepath.Join(b.TempDir(), "bridge.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := &fcgi.Server{Handler: br, Limits: ServerLimits(cfg.Server)}
	go srv.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	// What nginx's fastcgi_params sends for a plain GET.
	params := []fcgi.Pair{
		{Name: "QUERY_STRING", Value: ""}, {Name: "REQUEST_METHOD", Value: "GET"},
		{Name: "CONTENT_TYPE", Value: ""}, {Name: "CONTENT_LENGTH", Value: ""},
		{Name: "SCRIPT_NAME", Value: "/pass/page"}, {Name: "REQUEST_URI", Value: "/pass/page"},
		{Name: "DOCUMENT_URI", Value: "/pass/page"}, {Name: "DOCUMENT_ROOT", Value: "/var/www"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"}, {Name: "REQUEST_SCHEME", Value: "http"},
		{Name: "GATEWAY_INTERFACE", Value: "CGI/1.1"}, {Name: "SERVER_SOFTWARE", Value: "nginx/1.22.1"},
		{Name: "REMOTE_ADDR", Value: "127.0.0.1"}, {Name: "REMOTE_PORT", Value: "40000"},
		{Name: "SERVER_ADDR", Value: "127.0.0.1"}, {Name: "SERVER_PORT", Value: "8080"},
		{Name: "SERVER_NAME", Value: "localhost"}, {Name: "HTTP_HOST", Value: "127.0.0.1:8080"},
		{Name: "HTTP_USER_AGENT", Value: "Go-http-client/1.1"}, {Name: "HTTP_ACCEPT_ENCODING", Value: "gzip"},
	}
	run := func(b *testing.B, c *fcgi.Client) {
		resp, err := c.Do(context.Background(), &fcgi.ClientRequest{Params: params})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Stdout)
		resp.Stdout.Close()
		if err != nil || n < int64(len(page)) {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		c := &fcgi.Client{Network: "unix", Address: sock, KeepConn: true}
		defer c.Close()
		b.ReportAllocs()
		cpu := cpuTime()
		for b.Loop() {
			run(b, c)
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("parallel", func(b *testing.B) {
		c := &fcgi.Client{Network: "unix", Address: sock, KeepConn: true, MaxIdleConns: 64}
		defer c.Close()
		b.ReportAllocs()
		cpu := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b, c)
			}
		})
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

// cpuTime is the CPU time the process has used so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
