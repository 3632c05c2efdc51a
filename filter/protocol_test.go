package filter

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./filter -run %s -update to create it", t.Name())
	require.Equal(t, string(want), string(got))
}

// pieces is a body that arrives in the given reads.
type pieces []string

func (p *pieces) Read(b []byte) (int, error) {
	if len(*p) == 0 {
		return 0, io.EOF
	}
	n := copy(b, (*p)[0])
	(*p)[0] = (*p)[0][n:]
	if (*p)[0] == "" {
		*p = (*p)[1:]
	}
	return n, nil
}

func (p *pieces) Close() error { return nil }

func body(parts ...string) io.ReadCloser { p := pieces(parts); return &p }

func TestWriteMessageGolden(t *testing.T) {
	req := &RequestInfo{
		URL: "http://example.org/items/1?format=html", Method: "GET", Path: "/items/1", Query: "format=html",
		Params: []Field{{Name: "REMOTE_ADDR", Value: "192.0.2.1"}, {Name: "HTTPS", Value: "on"}},
	}
	tests := []struct {
		name string
		msg  *Message
		req  *RequestInfo
	}{
		{"sized", &Message{Status: 200, Header: Header{
			{Name: "Content-Type", Value: "text/html; charset=utf-8"}, {Name: "Set-Cookie", Value: "a=1"}, {Name: "Set-Cookie", Value: "b=2"},
			{Name: "Content-Length", Value: "999"}, {Name: "Connection", Value: "keep-alive"}, {Name: "X-Request-URL", Value: "http://spoofed/"}, {Name: "x-bridge-method", Value: "SPOOF"},
		}, Length: 11, Body: body("hello ", "world")}, req},
		{"chunked", &Message{Status: 200, Reason: "Fine", Header: Header{{Name: "Transfer-Encoding", Value: "chunked"}}, Length: -1, Body: body("hello ", "", "world")}, nil},
		{"chunked-empty", &Message{Status: 404, Length: -1, Body: body()}, nil},
		{"no-content", &Message{Status: 204, Header: Header{{Name: "X-A", Value: "b"}}, Length: -1, Body: body("dropped")}, nil},
		{"not-modified", &Message{Status: 304, Header: Header{{Name: "Etag", Value: `"x"`}}, Length: 0}, req},
		{"nil-body", &Message{Status: 200, Length: -1}, nil},
		{"unknown-status", &Message{Status: 599, Length: 0, Body: body()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, writeMessage(&out, tt.msg, tt.req))
			golden(t, "write_"+tt.name, out.Bytes())
			// What the writer produced, the reader must take back.
			h, err := readReplyHead(bufio.NewReader(bytes.NewReader(out.Bytes())))
			require.NoError(t, err)
			require.Equal(t, tt.msg.Status, h.msg.Status)
		})
	}
}

func TestWriteMessageErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  *Message
		req  *RequestInfo
		want string
	}{
		{"status", &Message{Status: 42}, nil, "three-digit"},
		{"value-newline", &Message{Status: 200, Header: Header{{Name: "X-A", Value: "a\r\nX-Injected: 1"}}}, nil, "control character"},
		{"bad-name", &Message{Status: 200, Header: Header{{Name: "X A", Value: "b"}}}, nil, "not a token"},
		{"url-newline", &Message{Status: 200}, &RequestInfo{URL: "http://x/\r\n\r\nbody"}, "control character"},
		{"param-name", &Message{Status: 200}, &RequestInfo{Params: []Field{{Name: "A B", Value: "x"}}}, "cannot be a header name"},
		{"short-body", &Message{Status: 200, Length: 10, Body: body("abc")}, nil, "shorter than its declared length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := writeMessage(io.Discard, tt.msg, tt.req)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// describeReply parses a whole reply and renders what the bridge makes of
// it, for golden files and the fuzz target.
func describeReply(data []byte) (string, *replyHead, []byte, error) {
	br := bufio.NewReaderSize(bytes.NewReader(data), readBufferSize)
	h, err := readReplyHead(br)
	if err != nil {
		return "error: " + err.Error() + "\n", nil, nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "status: %d\nreason: %q\nlength: %d\nframing: %d\nclose: %v\n", h.msg.Status, h.msg.Reason, h.msg.Length, h.framing, h.close)
	for _, f := range h.msg.Header {
		fmt.Fprintf(&b, "header: %q: %q\n", f.Name, f.Value)
	}
	body, err := io.ReadAll(newBodyReader(br, h))
	fmt.Fprintf(&b, "body: %q\n", body)
	if err != nil {
		fmt.Fprintf(&b, "body error: %v\n", err)
		return b.String(), h, body, err
	}
	fmt.Fprintf(&b, "left over: %d\n", br.Buffered())
	return b.String(), h, body, nil
}

// replyCases are reader inputs; fuzz crashers are kept here too.
var replyCases = []struct {
	name, in string
	eof      bool // the error means the output just stopped (a crash)
	ok       bool
}{
	{"sized", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello", false, true},
	{"node-style", "HTTP/1.1 200 OK\r\nX-Request-URL: http://x/\r\nX-Bridge-Path: /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", false, true},
	{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n", false, true},
	{"conn-close", "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end", false, true},
	{"no-content", "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", false, true},
	{"not-modified-length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false, true},
	{"bare-lf", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false, true},
	{"no-reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, true},
	{"same-length-twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok", false, true},
	{"identity-te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\nHello", false, true},
	{"empty", "", true, false},
	{"garbage", "this is not HTTP at all\r\n\r\n", false, false},
	{"http2", "HTTP/2 200\r\n\r\n", false, false},
	{"status-letters", "HTTP/1.1 2x0 OK\r\n\r\n", false, false},
	{"informational", "HTTP/1.1 100 Continue\r\n\r\n", false, false},
	{"no-colon", "HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\nhello", false, false},
	{"space-before-colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", false, false},
	{"folded", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", false, false},
	{"control-in-value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", false, false},
	{"bad-length", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", false, false},
	{"plus-length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", false, false},
	{"conflicting-lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", false, false},
	{"length-and-chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, true},
	{"gzip-te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, false},
	{"no-framing", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", false, false},
	{"head-cut", "HTTP/1.1 200 OK\r\nContent-Ty", true, false},
	{"short-body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", true, false},
	{"chunk-cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true, false},
	{"chunk-size-bad", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false, false},
	{"chunk-size-huge", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", false, false},
	{"chunk-no-crlf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", false, false},
	{"chunk-bare-lf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", false, false},
	{"chunked-no-last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true, false},
	{"too-many-headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", MaxHeaderFields+1) + "\r\n", false, false},
	{"line-longer-than-buffer", "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("b", readBufferSize) + "\r\nContent-Length: 0\r\n\r\n", false, true},
	{"head-too-big", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Long: "+strings.Repeat("b", 1000)+"\r\n", 70) + "\r\n", false, false},
}

func TestReadReplyGolden(t *testing.T) {
	for _, tt := range replyCases {
		t.Run(tt.name, func(t *testing.T) {
			desc, _, _, err := describeReply([]byte(tt.in))
			golden(t, "read_"+tt.name, []byte(desc))
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			crashed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
			require.Equal(t, tt.eof, crashed, "an abrupt end must be told apart from a broken reply: %v", err)
		})
	}
}

func FuzzReadReply(f *testing.F) {
	for _, tt := range replyCases {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, h, body, err := describeReply(data)
		if err != nil {
			return
		}
		// A reply the bridge accepts survives a trip through the writer.
		m := &Message{Status: h.msg.Status, Header: h.msg.Header, Length: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}
		var buf bytes.Buffer
		if err := writeMessage(&buf, m, nil); err != nil {
			t.Fatalf("re-encoding an accepted reply: %v", err)
		}
		_, h2, body2, err := describeReply(buf.Bytes())
		if err != nil {
			t.Fatalf("re-reading %q: %v", buf.Bytes(), err)
		}
		if h2.msg.Status != h.msg.Status || fmt.Sprint(h2.msg.Header) != fmt.Sprint(h.msg.Header) {
			t.Fatalf("head changed: %+v -> %+v", h.msg, h2.msg)
		}
		if BodyAllowed(h.msg.Status) && !bytes.Equal(body, body2) {
			t.Fatalf("body changed: %q -> %q", body, body2)
		}
	})
}

// TestDuplicateHeaders checks that order and duplicates survive a trip
// through a transform (the test transform's cat).
func TestDuplicateHeaders(t *testing.T) {
	p := newModePool(t, "cat")
	msg := textMessage("x")
	for _, v := range []string{"a=1", "b=2", "c=3", "d=4"} {
		msg.Header.Add("Set-Cookie", v)
	}
	msg.Header.Add("Vary", "Accept")
	out, _, err := roundTrip(t, NewPooled("cat", p, 0), msg, nil)
	require.NoError(t, err)
	require.Equal(t, Header{{Name: "Content-Type", Value: "text/plain"}, {Name: "Set-Cookie", Value: "a=1"}, {Name: "Set-Cookie", Value: "b=2"}, {Name: "Set-Cookie", Value: "c=3"}, {Name: "Set-Cookie", Value: "d=4"}, {Name: "Vary", Value: "Accept"}}, out.Header)
}

// TestReplyHeadAllocs gates the cost of reading a reply head: the head, its
// one string and its Header, and the body reader (22 allocations per head
// before the reader moved onto httpmsg).
func TestReplyHeadAllocs(t *testing.T) {
	if testenv.Race {
		t.Skip("allocation counts vary under the race detector")
	}
	const reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: Thu, 03 Dec 2026 07:00:00 GMT\r\n" +
		"Server: app\r\nCache-Control: no-cache\r\nVary: Accept-Encoding\r\nX-Request-Id: 0123456789abcdef\r\nSet-Cookie: a=1; Path=/\r\n\r\nok"
	sr := strings.NewReader(reply)
	br := bufio.NewReaderSize(sr, readBufferSize)
	var p [2]byte
	allocs := testing.AllocsPerRun(200, func() {
		sr.Reset(reply)
		br.Reset(sr)
		h, err := readReplyHead(br)
		if err != nil || len(h.msg.Header) != 7 {
			t.Fatalf("%v %q", err, h.msg.Header)
		}
		if n, _ := io.ReadFull(newBodyReader(br, h), p[:]); n != 2 {
			t.Fatal("short body")
		}
	})
	if allocs > 4 {
		t.Fatalf("%v allocations per reply head, want at most 4", allocs)
	}
}
