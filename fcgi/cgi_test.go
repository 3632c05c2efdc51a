package fcgi

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

func TestReadCGIResponse(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		status     int
		reason     string
		header     []Pair
		body       string
		errLine    int
		errContain string
	}{
		{name: "status and body CRLF", in: "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
			status: 404, reason: "Not Found", header: []Pair{{"Content-Type", "text/plain"}}, body: "nope"},
		{name: "LF only", in: "Status: 201 Made\nX-A: 1\n\nbody\n", status: 201, reason: "Made",
			header: []Pair{{"X-A", "1"}}, body: "body\n"},
		{name: "no status means 200", in: "Content-Type: text/html\r\n\r\n<p>", status: 200, reason: "OK",
			header: []Pair{{"Content-Type", "text/html"}}, body: "<p>"},
		{name: "location only means 302", in: "Location: /elsewhere\r\n\r\n", status: 302, reason: "Found",
			header: []Pair{{"Location", "/elsewhere"}}},
		{name: "location with status keeps status", in: "Status: 301\r\nLocation: http://x/\r\n\r\n", status: 301,
			reason: "Moved Permanently", header: []Pair{{"Location", "http://x/"}}},
		{name: "status without reason", in: "Status: 599\r\n\r\n", status: 599, reason: ""},
		{name: "duplicates kept in order", in: "Set-Cookie: a=1\r\nX: y\r\nset-cookie: b=2\r\n\r\n", status: 200, reason: "OK",
			header: []Pair{{"Set-Cookie", "a=1"}, {"X", "y"}, {"set-cookie", "b=2"}}},
		{name: "lowercase status", in: "status: 500 Oops\n\n", status: 500, reason: "Oops"},
		{name: "value whitespace trimmed, empty value kept", in: "A:   v  \r\nB:\r\n\r\n", status: 200, reason: "OK",
			header: []Pair{{"A", "v"}, {"B", ""}}},
		{name: "body with binary and CR", in: "\r\n\r\x00\xff", status: 200, reason: "OK", body: "\r\x00\xff"},
		{name: "empty", in: "", errContain: "empty output"},
		{name: "no blank line", in: "Status: 200 OK\r\nX: y\r\n", errLine: 3, errContain: "ended inside the header block"},
		{name: "last line without newline", in: "Status: 200 OK\r\nX: y", errLine: 2},
		{name: "no colon", in: "Status: 200\r\ngarbage\r\n\r\n", errLine: 2, errContain: `expected a header line "Name: value"`},
		{name: "empty name", in: ": v\r\n\r\n", errLine: 1},
		{name: "space in name", in: "Bad Name: v\r\n\r\n", errLine: 1, errContain: "whose name is a token"},
		{name: "folded line", in: "A: b\r\n c\r\n\r\n", errLine: 2, errContain: "folded continuation lines are not allowed"},
		{name: "bad status code", in: "Status: abc\r\n\r\n", errLine: 1, errContain: `a Status field "NNN reason"`},
		{name: "status out of range", in: "Status: 099\r\n\r\n", errLine: 1, errContain: "a code from 100 to 599"},
		{name: "control character in a value", in: "X-A: a\x01b\r\n\r\n", errLine: 1, errContain: "no control characters"},
		{name: "CR inside a value", in: "Location: /a\rSet-Cookie: x=1\r\n\r\n", errLine: 1, errContain: "no control characters"},
		{name: "control character in the reason", in: "Status: 200 O\x7fK\r\n\r\n", errLine: 1, errContain: "no control characters"},
		{name: "two status lines", in: "Status: 200\r\nStatus: 500\r\n\r\n", errLine: 2, errContain: "one Status field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ReadCGIResponse(strings.NewReader(tc.in))
			if tc.errLine != 0 || tc.errContain != "" {
				require.Error(t, err)
				var ce *CGIError
				require.ErrorAs(t, err, &ce)
				require.Equal(t, tc.errLine, ce.Line, "error line in %v", err)
				require.Contains(t, err.Error(), tc.errContain)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.Status)
			require.Equal(t, tc.reason, resp.Reason)
			require.Equal(t, tc.header, resp.Header)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.body, string(body))
		})
	}
}

func TestReadCGIResponseHeaderLimit(t *testing.T) {
	big := "X-Big: " + strings.Repeat("a", 100) + "\r\n"
	in := strings.Repeat(big, 20) + "\r\nbody"
	_, err := ReadCGIResponseLimit(strings.NewReader(in), 1000)
	require.ErrorIs(t, err, ErrCGIHeaderTooLarge)

	// One line longer than the bufio buffer but under the limit is fine.
	long := "X-Long: " + strings.Repeat("b", 10000) + "\r\n\r\nrest"
	resp, err := ReadCGIResponseLimit(strings.NewReader(long), 20000)
	require.NoError(t, err)
	require.Len(t, resp.Get("X-Long"), 10000)
	rest, _ := io.ReadAll(resp.Body)
	require.Equal(t, "rest", string(rest))

	// The same line over the limit.
	_, err = ReadCGIResponseLimit(strings.NewReader(long), 5000)
	require.ErrorIs(t, err, ErrCGIHeaderTooLarge)
}

// A large body after a small header block must stream, not be read up front.
func TestReadCGIResponseStreamsBody(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("Status: 200 OK\r\n\r\nfirst"))
		// Nothing more until the reader has seen "first".
	}()
	resp, err := ReadCGIResponse(pr)
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	require.Equal(t, "first", string(buf))
	pw.CloseWithError(errors.New("done"))
}

func FuzzCGIResponse(f *testing.F) {
	f.Add([]byte("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"))
	f.Add([]byte("Location: /x\n\n"))
	f.Add([]byte("Status: 99\r\n\r\n"))
	f.Add([]byte("A: b\r\n c\r\n\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, in []byte) {
		resp, err := ReadCGIResponseLimit(strings.NewReader(string(in)), 512)
		if err != nil {
			if resp != nil {
				t.Fatalf("response and error both returned")
			}
			return
		}
		if resp.Status < 100 || resp.Status > 599 {
			t.Fatalf("status %d accepted", resp.Status)
		}
		for _, p := range resp.Header {
			if !httpmsg.ValidName(p.Name) || !httpmsg.ValidValue(p.Value) || strings.EqualFold(p.Name, "Status") {
				t.Fatalf("bad header %q", p.Name)
			}
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatalf("body: %v", err)
		}
	})
}
