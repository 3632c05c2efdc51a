package httpmsg

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// oracleOptions read as net/http reads a response: obs-fold joined, no body
// left without framing, no field cap below what a test input can reach.
var oracleOptions = Options{Syntax: StatusLine, Fold: JoinFold, Limits: Limits{HeadBytes: 1 << 20, Fields: 1 << 16}}

// readAll reads a head and its whole body with this package.
func readAll(data []byte) error {
	// Just above the longest chunk line either parser takes, so that
	// longer header lines go through the gathering of lines longer than
	// the buffer (lineReader.next).
	br := bufio.NewReaderSize(bytes.NewReader(data), maxChunkLine+64)
	var h Head
	if err := ReadHead(br, &oracleOptions, &h); err != nil {
		return err
	}
	var b Body
	b.Reset(br, &h)
	_, err := io.ReadAll(&b)
	return err
}

// readAllNetHTTP is the same with net/http.
func readAllNetHTTP(data []byte) error {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil)
	if err != nil {
		return err
	}
	_, err = io.ReadAll(resp.Body)
	return err
}

var (
	// statusLine is the status line both parsers read alike: net/http also
	// takes other versions, codes below 100 or with a sign, and control
	// characters in the reason; this package takes none of them, and 1xx
	// heads are skipped or refused by Limits.Interim, not returned.
	statusLine = regexp.MustCompile(`^HTTP/1\.[01] [2-9][0-9][0-9]( [^\x00-\x08\x0a-\x1f\x7f]*)?\r?\n`)
	// spaceInName: net/http takes "Name : value" and "A B: c" and keeps the
	// name unrecognised; this package refuses a name that is not a token.
	spaceInName = regexp.MustCompile(`(?m)^[^ \t:\r\n][^:\r\n]* [^:\r\n]*:`)
	// lengthList: "Content-Length: 5, 5" is one length to this package, as
	// RFC 9110 section 8.6 allows; net/http refuses it.
	lengthList = regexp.MustCompile(`(?im)^content-length:[^\r\n]*,`)
	// bareLFTrailer: a trailer line may end in a bare LF here, as any field
	// line may (RFC 9112 section 2.2); net/http takes one only when a CRLF
	// CRLF follows somewhere in its buffer.
	bareLFTrailer = regexp.MustCompile(`(?s)\n0+[^\n]*\n.*[^\r]\n`)
)

// comparable reports whether both parsers are meant to agree on data.
func comparable(data []byte) bool {
	head := data
	if i := bytes.Index(data, []byte("\n\r\n")); i >= 0 {
		head = data[:i+1]
	}
	if j := bytes.Index(data, []byte("\n\n")); j >= 0 && j < len(head) {
		head = data[:j+1]
	}
	return statusLine.Match(data) && !spaceInName.Match(data) && !lengthList.Match(head) && !bareLFTrailer.Match(data)
}

// oracleCases pin the agreements and the documented differences.
var oracleCases = []string{
	"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 3*maxChunkLine) + "\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 3*maxChunkLine) + "\r\n more\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 3*maxChunkLine) + "\nContent-Length: 0\n\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nx",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
	"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: -0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nA(b: c\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nuntil EOF",
	"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n",
	"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\n\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA b: c\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5; a\r\nhello\r\n0 \r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + string(bytes.Repeat([]byte("1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n"), 600)) + "0\r\n\r\n",
}

func TestAgainstNetHTTP(t *testing.T) {
	for _, in := range oracleCases {
		compareWithNetHTTP(t, []byte(in))
	}
}

// FuzzAgainstNetHTTP: on every input both parsers are meant to read alike
// (see comparable), this package accepts exactly what net/http accepts.
func FuzzAgainstNetHTTP(f *testing.F) {
	for _, in := range oracleCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareWithNetHTTP(t, data)
	})
}

func compareWithNetHTTP(t *testing.T, data []byte) {
	ours := readAll(data)
	if !comparable(data) {
		return
	}
	theirs := readAllNetHTTP(data)
	if (ours == nil) != (theirs == nil) {
		t.Errorf("%q:\nhttpmsg: %v\nnet/http: %v", data, ours, theirs)
	}
}
