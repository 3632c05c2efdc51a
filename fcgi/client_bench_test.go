package fcgi_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// BenchmarkClientRoundTrip measures a small responder request through the
// client and the package's server over a unix socket with kept connections.
func BenchmarkClientRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name                string
		keepConn, multiplex bool
	}{
		{"keep-conn", true, false},
		{"multiplex", true, true},
		{"new-conn", false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := net.Listen("unix", filepath.Join(b.TempDir(), "s.sock"))
			if err != nil {
				b.Fatal(err)
			}
			srv := &fcgi.Server{Handler: fcgi.HandlerFunc(func(w fcgi.ResponseWriter, r *fcgi.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(200)
				w.Write([]byte("hello, world\n"))
			})}
			go srv.Serve(l)
			defer srv.Close()
			c := &fcgi.Client{Network: "unix", Address: l.Addr().String(), KeepConn: bc.keepConn, Multiplex: bc.multiplex}
			defer c.Close()
			params := []fcgi.Pair{{Name: "REQUEST_METHOD", Value: "GET"}, {Name: "SCRIPT_NAME", Value: "/bench"}, {Name: "REQUEST_URI", Value: "/bench"}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 4096)
				for pb.Next() {
					resp, err := c.Do(context.Background(), &fcgi.ClientRequest{Params: params})
					if err != nil {
						b.Error(err)
						return
					}
					cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
					if err != nil {
						b.Error(err)
						return
					}
					io.CopyBuffer(io.Discard, cgi.Body, buf)
					resp.Stdout.Close()
				}
			})
		})
	}
}
