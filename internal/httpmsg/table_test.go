package httpmsg

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// profiles are the callers' option sets, as filter, sample and (once they
// move) source and fcgi use them.
var profiles = []struct {
	name string
	o    Options
}{
	{"filter", Options{Limits: Limits{HeadBytes: 64 << 10, Fields: 256}, RequireFraming: true, IdentityTE: true}},
	{"sample", Options{Limits: Limits{HeadBytes: 1 << 20, Fields: 4096}, RequireFraming: true}},
	{"source", Options{Limits: Limits{HeadBytes: 1 << 20, Fields: 4096, Interim: 5}, Fold: JoinFold, Canonical: true}},
	{"cgi", Options{Syntax: CGI, Limits: Limits{HeadBytes: 512}}},
}

// tableInputs are the inputs behind filter/testdata/read_*.golden and the
// seeds and corpora of sample's FuzzReadMessage and fcgi's FuzzCGIResponse.
var tableInputs = []struct{ name, in string }{
	{"filter/sized", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello"},
	{"filter/node-style", "HTTP/1.1 200 OK\r\nX-Request-URL: http://x/\r\nX-Bridge-Path: /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"},
	{"filter/chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"},
	{"filter/conn-close", "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end"},
	{"filter/no-content", "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"},
	{"filter/not-modified-length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"},
	{"filter/bare-lf", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"},
	{"filter/no-reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"},
	{"filter/same-length-twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"},
	{"filter/identity-te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\nHello"},
	{"filter/empty", ""},
	{"filter/garbage", "this is not HTTP at all\r\n\r\n"},
	{"filter/http2", "HTTP/2 200\r\n\r\n"},
	{"filter/status-letters", "HTTP/1.1 2x0 OK\r\n\r\n"},
	{"filter/informational", "HTTP/1.1 100 Continue\r\n\r\n"},
	{"filter/no-colon", "HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\nhello"},
	{"filter/space-before-colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"},
	{"filter/folded", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
	{"filter/control-in-value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"},
	{"filter/bad-length", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello"},
	{"filter/plus-length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"},
	{"filter/conflicting-lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"},
	{"filter/length-and-chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
	{"filter/gzip-te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
	{"filter/no-framing", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"},
	{"filter/head-cut", "HTTP/1.1 200 OK\r\nContent-Ty"},
	{"filter/short-body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"},
	{"filter/chunk-cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"},
	{"filter/chunk-size-bad", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
	{"filter/chunk-size-huge", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"},
	{"filter/chunk-no-crlf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n"},
	{"filter/chunked-no-last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
	{"filter/too-many-headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 257) + "\r\n"},
	{"filter/head-too-big", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Long: "+strings.Repeat("b", 1000)+"\r\n", 70) + "\r\n"},
	{"sample/seed-1", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
	{"sample/seed-2", "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"},
	{"sample/seed-3", "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n"},
	{"sample/seed-4", "HTTP/1.1 500 E\r\nConnection: close\r\n\r\nrest of stream"},
	{"sample/seed-5", "HTTP/1.0 301 Moved\nLocation: /x\nContent-Length: 0\n\n"},
	{"sample/bare-cr-in-value", "HTTP/1.1 200 OK\r\n0:0\r0\r\nContent-Length: 0\r\n\r\n"},
	{"fcgi/seed-1", "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"},
	{"fcgi/seed-2", "Location: /x\n\n"},
	{"fcgi/seed-3", "Status: 99\r\n\r\n"},
	{"fcgi/seed-4", "A: b\r\n c\r\n\r\n"},
	{"fcgi/seed-5", ""},
	{"fcgi/status-lowercase", "status: 500 Oops\n\n"},
	{"fcgi/status-twice", "Status: 200\r\nStatus: 500\r\n\r\n"},
	{"fcgi/space-in-name", "Bad Name: v\r\n\r\n"},
	{"fcgi/length", "Status: 200\r\nContent-Length: 3\r\n\r\nabc"},
}

// describe reads data under o and renders the outcome in one line.
func describe(data string, o *Options) string {
	br := bufio.NewReaderSize(strings.NewReader(data), 32<<10)
	var h Head
	if err := ReadHead(br, o, &h); err != nil {
		return "error: " + err.Error()
	}
	var b Body
	b.Reset(br, &h)
	body, err := io.ReadAll(&b)
	out := fmt.Sprintf("%d %q framing=%d length=%d close=%v conflict=%v fields=%d body=%q", h.Status, h.Reason, h.Framing, h.Length, h.Close, h.Conflict, len(h.Header), body)
	if len(h.Header) > 0 {
		out += fmt.Sprintf(" first=%q", h.Header[0].Name+": "+h.Header[0].Value)
	}
	if err != nil {
		out += " body error: " + err.Error()
	}
	return out
}

// TestGoldenTable records what each caller's options make of every input
// the old per-package parsers were tested with, and what net/http does.
func TestGoldenTable(t *testing.T) {
	var out bytes.Buffer
	for _, in := range tableInputs {
		fmt.Fprintf(&out, "## %s %q\n", in.name, trimQuote(in.in))
		for _, p := range profiles {
			if (p.o.Syntax == CGI) != strings.HasPrefix(in.name, "fcgi/") {
				continue
			}
			fmt.Fprintf(&out, "%-8s %s\n", p.name, describe(in.in, &p.o))
		}
		if !strings.HasPrefix(in.name, "fcgi/") {
			verdict := "accepts"
			if err := readAllNetHTTP([]byte(in.in)); err != nil {
				verdict = "refuses: " + err.Error()
			}
			fmt.Fprintf(&out, "%-8s %s\n", "net/http", verdict)
		}
	}
	const path = "testdata/table.golden"
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("the table changed; run with -update and review the diff of %s", path)
	}
}

func trimQuote(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
