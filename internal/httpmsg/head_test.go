package httpmsg

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

func read(t *testing.T, in string, o *Options) (*Head, string, error) {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(in), 4096)
	h := &Head{}
	if err := ReadHead(br, o, h); err != nil {
		return nil, "", err
	}
	var b Body
	b.Reset(br, h)
	body, err := io.ReadAll(&b)
	return h, string(body), err
}

func TestReadHeadOptions(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		o        Options
		status   int
		framing  Framing
		length   int64
		body     string
		err      string
	}{
		{name: "interim skipped", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			o: Options{Limits: Limits{Interim: 2}}, status: 200, framing: Sized, length: 2, body: "ok"},
		{name: "too many interim", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
			o: Options{Limits: Limits{Interim: 1}}, err: "at most 1 informational"},
		{name: "switching protocols", in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", o: Options{Limits: Limits{Interim: 5}}, err: "switching protocols"},
		{name: "head request", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", o: Options{Method: "HEAD"}, status: 200, framing: None},
		{name: "te ignored on 1.0", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\nx", status: 200, framing: Sized, length: 1, body: "x"},
		{name: "identity refused", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nx", err: "only transfer coding"},
		{name: "identity allowed", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nx", o: Options{IdentityTE: true}, status: 200, framing: UntilEOF, length: -1, body: "x"},
		{name: "chunked twice", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", err: "only transfer coding"},
		{name: "no framing read to eof", in: "HTTP/1.1 200 OK\r\n\r\nall", status: 200, framing: UntilEOF, length: -1, body: "all"},
		{name: "no framing refused", in: "HTTP/1.1 200 OK\r\n\r\nall", o: Options{RequireFraming: true}, err: "a framed body"},
		{name: "negative zero", in: "HTTP/1.1 200 OK\r\nContent-Length: -0\r\n\r\n", err: "decimal digits"},
		{name: "cgi default", in: "Content-Type: text/plain\r\n\r\nbody", o: Options{Syntax: CGI}, status: 200, framing: UntilEOF, length: -1, body: "body"},
		{name: "cgi location", in: "Location: /x\n\n", o: Options{Syntax: CGI}, status: 302, framing: UntilEOF, length: -1},
		{name: "cgi status", in: "X: 1\r\nStatus: 404 Not Found\r\n\r\nnope", o: Options{Syntax: CGI}, status: 404, framing: UntilEOF, length: -1, body: "nope"},
		{name: "cgi status range", in: "Status: 600\r\n\r\n", o: Options{Syntax: CGI}, err: "100 to 599"},
		{name: "cgi control in value", in: "X: a\x01\r\n\r\n", o: Options{Syntax: CGI}, err: "no control characters"},
		{name: "cgi bad length", in: "Content-Length: 5, 6\r\n\r\n", o: Options{Syntax: CGI}, err: "one Content-Length"},
		{name: "a line longer than the read buffer", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 0\r\n\r\n", status: 200, framing: Sized},
		{name: "a long line past the head's budget", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", o: Options{Limits: Limits{HeadBytes: 6000}}, err: "a head shorter than 6000 bytes"},
		{name: "field limit", in: "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", o: Options{Limits: Limits{Fields: 2}}, err: "at most 2 header lines"},
		{name: "blank line first", in: "\r\nHTTP/1.1 200 OK\r\n\r\n", err: "status line"},
		{name: "bare lf in chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", status: 200, framing: Chunked, err: "ending in CRLF"},
		{name: "chunk overhead flood", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("e", 100)+"\r\nx\r\n", 300) + "0\r\n\r\n", err: "less overhead"},
		{name: "trailer too long", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + strings.Repeat("T: 1\r\n", 3) + "\r\n", o: Options{Limits: Limits{Fields: 2}}, err: "trailer section"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, body, err := read(t, tt.in, &tt.o)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%T is not an *Error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Status != tt.status || h.Framing != tt.framing || body != tt.body || (tt.framing != None && h.Length != tt.length) {
				t.Fatalf("got %d framing %d length %d body %q", h.Status, h.Framing, h.Length, body)
			}
		})
	}
}

func TestReadHeadFoldAndCase(t *testing.T) {
	o := Options{Fold: JoinFold, Canonical: true}
	h, _, err := read(t, "HTTP/1.1 200 OK\r\nx-a: one\r\n  two \r\ncontent-LENGTH: 0\r\n\r\n", &o)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{{Name: "X-A", Value: "one two"}, {Name: "Content-Length", Value: "0"}}
	if len(h.Header) != 2 || h.Header[0] != want[0] || h.Header[1] != want[1] {
		t.Fatalf("header %q, want %q", h.Header, want)
	}
}

// TestConflictRecorded: with both chunked and Content-Length the body is
// chunked and the head says so, so that a caller can stop reusing the
// connection.
func TestConflictRecorded(t *testing.T) {
	h, body, err := read(t, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", &Options{})
	if err != nil || !h.Conflict || h.Framing != Chunked || body != "ok" {
		t.Fatalf("conflict %v framing %d body %q err %v", h.Conflict, h.Framing, body, err)
	}
}

// countingReader counts the bytes a parser pulled.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestLimitWhileReading: an endless head costs at most the budget plus one
// buffer, not what the sender sends.
func TestLimitWhileReading(t *testing.T) {
	endless := io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\n"), infiniteFields{})
	cr := &countingReader{r: endless}
	br := bufio.NewReaderSize(cr, 4096)
	var h Head
	err := ReadHead(br, &Options{Limits: Limits{HeadBytes: 16 << 10, Fields: 1 << 20}}, &h)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if cr.n > 16<<10+4096 {
		t.Fatalf("read %d bytes for a 16 KiB budget", cr.n)
	}
}

type infiniteFields struct{}

func (infiniteFields) Read(p []byte) (int, error) {
	const line = "X-Filler: 0123456789\r\n"
	n := 0
	for n+len(line) <= len(p) {
		n += copy(p[n:], line)
	}
	return n, nil
}

func TestHeaderLookupsDoNotAllocate(t *testing.T) {
	h := Header{{Name: "Content-Type", Value: "text/html"}, {Name: "Set-Cookie", Value: "a=1"}, {Name: "X-Request-URL", Value: "http://x/"}}
	allocs := testing.AllocsPerRun(100, func() {
		if h.Get("x-request-url") == "" || !h.Has("CONTENT-TYPE") || h.Has("Content-Length") || !HasToken("keep-alive, Close", "close") {
			t.Fatal("lookup failed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per lookup", allocs)
	}
	base := Header{{Name: "Connection", Value: "close, X-A"}, {Name: "X-A", Value: "1"}, {Name: "Accept", Value: "*/*"}}
	work := make(Header, len(base))
	allocs = testing.AllocsPerRun(100, func() {
		work = work[:len(base)]
		copy(work, base)
		RemoveHopByHop(&work)
	})
	if allocs != 0 || len(work) != 1 {
		t.Fatalf("%v allocations per removal, left %q", allocs, work)
	}
}

func TestRemoveHopByHop(t *testing.T) {
	h := Header{
		{Name: "Connection", Value: "keep-alive, X-Secret"}, {Name: "X-Secret", Value: "1"}, {Name: "Accept", Value: "*/*"},
		{Name: "te", Value: "trailers"}, {Name: "Upgrade", Value: "h2c"}, {Name: "Proxy-Authorization", Value: "x"}, {Name: "Host", Value: "h"},
	}
	RemoveHopByHop(&h)
	if len(h) != 2 || h[0].Name != "Accept" || h[1].Name != "Host" {
		t.Fatalf("left %q", h)
	}
	// The Connection field is overwritten while the list is compacted: the
	// nominations must have been read before.
	h = Header{{Name: "A", Value: "1"}, {Name: "Connection", Value: "X-Secret"}, {Name: "B", Value: "2"}, {Name: "X-Secret", Value: "1"}}
	RemoveHopByHop(&h)
	if len(h) != 2 || h[0].Name != "A" || h[1].Name != "B" {
		t.Fatalf("left %q", h)
	}
}

func TestAppendHead(t *testing.T) {
	h := Header{{Name: "Content-Type", Value: "text/plain"}, {Name: "Content-Length", Value: "9"}}
	out, err := AppendHead(nil, 404, "", h, IsFraming)
	if err != nil || string(out) != "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n" {
		t.Fatalf("%q %v", out, err)
	}
	for _, bad := range []Header{{{Name: "A B", Value: "x"}}, {{Name: "A", Value: "x\r\nInjected: 1"}}} {
		if _, err := AppendHead(nil, 200, "", bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := AppendHead(nil, 42, "", nil, nil); err == nil {
		t.Error("status 42 accepted")
	}
}

// eightFields is the head the allocation figures are measured on.
const eightFields = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: Thu, 03 Dec 2026 07:00:00 GMT\r\n" +
	"Server: app\r\nCache-Control: no-cache\r\nVary: Accept-Encoding\r\nX-Request-Id: 0123456789abcdef\r\nSet-Cookie: a=1; Path=/\r\n\r\nok"

// TestReadHeadAllocs: a head costs one string, plus its Header when the
// caller hands the previous one on.
func TestReadHeadAllocs(t *testing.T) {
	if testenv.Race {
		t.Skip("allocation counts vary under the race detector")
	}
	sr := strings.NewReader(eightFields)
	br := bufio.NewReader(sr)
	var h Head
	o := Options{RequireFraming: true}
	run := func(keep bool) float64 {
		return testing.AllocsPerRun(200, func() {
			sr.Reset(eightFields)
			br.Reset(sr)
			if !keep {
				h.Header = nil
			}
			if err := ReadHead(br, &o, &h); err != nil || len(h.Header) != 8 {
				t.Fatal(err)
			}
		})
	}
	if a := run(true); a > 1 {
		t.Errorf("%v allocations per head with a reused Head, want 1", a)
	}
	if a := run(false); a > 2 {
		t.Errorf("%v allocations per head with a new Header, want 2", a)
	}
}

func BenchmarkReadHead(b *testing.B) {
	sr := strings.NewReader(eightFields)
	br := bufio.NewReader(sr)
	var h Head
	var body Body
	o := Options{RequireFraming: true}
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(eightFields)
		br.Reset(sr)
		h.Header = nil
		if err := ReadHead(br, &o, &h); err != nil {
			b.Fatal(err)
		}
		body.Reset(br, &h)
		if err := body.Discard(); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzReadHead reads arbitrary bytes under every caller's options: no panic,
// and what is accepted holds only valid fields (CGI: a status in range and
// no Status field left among them).
func FuzzReadHead(f *testing.F) {
	for _, in := range tableInputs {
		f.Add(in.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, p := range profiles {
			br := bufio.NewReaderSize(strings.NewReader(in), 512)
			var h Head
			if err := ReadHead(br, &p.o, &h); err != nil {
				continue
			}
			for _, fl := range h.Header {
				if !ValidName(fl.Name) || !ValidValue(fl.Value) || (p.o.Syntax == CGI && EqualFold(fl.Name, "Status")) {
					t.Fatalf("%s: field %q accepted", p.name, fl)
				}
			}
			if h.Status < 100 || (p.o.Syntax == CGI && h.Status > 599) || !ValidValue(h.Reason) {
				t.Fatalf("%s: status %d %q accepted", p.name, h.Status, h.Reason)
			}
			var b Body
			b.Reset(br, &h)
			_ = b.Discard()
		}
	})
}

// A field line longer than the read buffer arrives whole, and the next lines
// after it are read as usual; the gathering is bounded by the head's budget
// however small the buffer.
func TestReadHeadLongLine(t *testing.T) {
	long := strings.Repeat("v", 3*4096+17)
	in := "HTTP/1.1 200 OK\r\nX-Short: 1\r\nX-Long: " + long + "\r\nX-After: 2\r\nContent-Length: 0\r\n\r\n"
	var h Head
	if err := ReadHead(bufio.NewReaderSize(strings.NewReader(in), 16), &Options{}, &h); err != nil {
		t.Fatal(err)
	}
	if got := h.Header.Get("X-Long"); got != long {
		t.Fatalf("X-Long has %d bytes, want %d", len(got), len(long))
	}
	if h.Header.Get("X-Short") != "1" || h.Header.Get("X-After") != "2" {
		t.Fatalf("fields around the long line: %v", h.Header)
	}
	err := ReadHead(bufio.NewReaderSize(strings.NewReader(in), 16), &Options{Limits: Limits{HeadBytes: 4096}}, &h)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the budget: %v, want a too-large *Error", err)
	}
}
