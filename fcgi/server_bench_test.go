package fcgi

import (
	"io"
	"net"
	"net/http"
	stdfcgi "net/http/fcgi"
	"testing"
)

// Round trips of a trivial RESPONDER request over a unix socket with
// KEEP_CONN, driven by a raw client, for comparison over time with benchstat
// (the side-by-side comparison with net/http/fcgi lives under bench/).

var benchHello = HandlerFunc(func(w ResponseWriter, r *Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "hello, world\n")
})

// roundTrip sends one pre-encoded request and reads records until its
// END_REQUEST.
func roundTrip(b *testing.B, c net.Conn, rr *recordReader, req []byte) {
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	for {
		h, _, err := rr.next()
		if err != nil {
			b.Fatal(err)
		}
		if h.Type == typeEndRequest {
			return
		}
	}
}

func benchRequest() []byte {
	return request(1, true, "", "SCRIPT_FILENAME=/srv/index", "REQUEST_METHOD=GET", "QUERY_STRING=a=1",
		"REQUEST_URI=/index?a=1", "SERVER_PROTOCOL=HTTP/1.1", "HTTP_HOST=example.org", "CONTENT_LENGTH=")
}

func BenchmarkServerRoundTrip(b *testing.B) {
	ts := startServer(b, benchHello, Limits{})
	c, err := net.Dial("unix", ts.path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rr := newRecordReader(c)
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, rr, req)
	}
}

func BenchmarkServerRoundTripParallel(b *testing.B) {
	ts := startServer(b, benchHello, Limits{})
	req := benchRequest()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("unix", ts.path)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		rr := newRecordReader(c)
		for pb.Next() {
			roundTrip(b, c, rr, req)
		}
	})
}

// A 1 MiB response through ReadFrom.
func BenchmarkServerLargeResponse(b *testing.B) {
	body := make([]byte, 1<<20)
	ts := startServer(b, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = w.(io.ReaderFrom).ReadFrom(&repeatReader{left: len(body), chunk: body})
	}), Limits{})
	c, err := net.Dial("unix", ts.path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rr := newRecordReader(c)
	req := request(1, true, "")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, rr, req)
	}
}

type repeatReader struct {
	left  int
	chunk []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunk[:min(len(p), r.left)])
	r.left -= n
	return n, nil
}

// The same round trip against net/http/fcgi, the baseline issue 2 asks to beat.
func BenchmarkStdlibRoundTrip(b *testing.B) {
	dir := b.TempDir()
	l, err := net.Listen("unix", dir+"/s")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		_ = stdfcgi.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "hello, world\n")
		}))
	}()
	c, err := net.Dial("unix", dir+"/s")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rr := newRecordReader(c)
	req := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, rr, req)
	}
}
