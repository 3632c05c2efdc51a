package source

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

// nginxGET is what nginx's fastcgi_params sends for a plain GET.
var nginxGET = map[string]string{
	"QUERY_STRING": "", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
	"SCRIPT_NAME": "/pass/page", "REQUEST_URI": "/pass/page?x=1", "DOCUMENT_URI": "/pass/page",
	"DOCUMENT_ROOT": "/var/www", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
	"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "nginx/1.22.1",
	"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "SERVER_ADDR": "127.0.0.1",
	"SERVER_PORT": "8080", "SERVER_NAME": "localhost", "HTTP_HOST": "127.0.0.1:8080",
	"HTTP_USER_AGENT": "Mozilla/5.0", "HTTP_ACCEPT": "text/html,*/*;q=0.8",
	"HTTP_ACCEPT_ENCODING": "gzip, br", "HTTP_ACCEPT_LANGUAGE": "en",
	"HTTP_COOKIE": "a=b", "HTTP_CONNECTION": "keep-alive",
}

// BenchmarkHTTPNewRequest measures mapping a request's params onto the HTTP
// request sent upstream, which every pass-through and rendered request pays.
func BenchmarkHTTPNewRequest(b *testing.B) {
	src, err := NewHTTP(&conf.Upstream{Name: "app", URL: "http://127.0.0.1:8081/app/", KeepAlive: true})
	if err != nil {
		b.Fatal(err)
	}
	s := src.(*httpSource)
	r := &Request{Params: nginxGET, ContentLength: -1, Spooled: true}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.newRequest(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkH1Head measures the same mapping for the HTTP/1.1 client, which
// writes the request head straight into a pooled buffer.
func BenchmarkH1Head(b *testing.B) {
	src, err := NewHTTP(&conf.Upstream{Name: "app", URL: "http://127.0.0.1:8081/app/", KeepAlive: true})
	if err != nil {
		b.Fatal(err)
	}
	s := src.(*httpSource)
	r := &Request{Params: nginxGET, ContentLength: -1, Spooled: true}
	bp := headPool.Get().(*[]byte)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.newH1Request(r, bp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpstreamGet fetches a 250-byte page from a local keep-alive
// upstream through each client, side by side in one run: "h1" is the
// HTTP/1.1 client plain http upstreams use, "net_http" Go's Transport (what
// https upstreams use, and what http ones used before).
func BenchmarkUpstreamGet(b *testing.B) {
	page := strings.Repeat("x", 250)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, page)
	}))
	defer srv.Close()
	for _, client := range []string{"h1", "net_http"} {
		b.Run(client, func(b *testing.B) {
			src, err := NewHTTP(&conf.Upstream{Name: "app", URL: srv.URL + "/", KeepAlive: true, MaxIdleConns: 4})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			s := src.(*httpSource)
			if client == "net_http" {
				s.h1 = nil
			}
			r := &Request{Params: nginxGET, ContentLength: -1, Spooled: true}
			ctx := context.Background()
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				m, err := s.Fetch(ctx, r)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.ReadFull(m.Body, buf[:len(page)])
				if n != len(page) {
					b.Fatalf("read %d bytes", n)
				}
				m.Body.Close()
			}
		})
	}
}
