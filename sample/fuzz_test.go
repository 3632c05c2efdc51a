package sample

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// FuzzReadMessage feeds arbitrary bytes to the message reader: it must never
// panic, and a message it accepts must survive being written and read again
// unchanged (status, headers in order, body).
func FuzzReadMessage(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	f.Add("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n")
	f.Add("HTTP/1.1 204 No Content\r\nX: y\r\n\r\n")
	f.Add("HTTP/1.1 500 E\r\nConnection: close\r\n\r\nrest of stream")
	f.Add("HTTP/1.0 301 Moved\nLocation: /x\nContent-Length: 0\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ReadMessage(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		var body []byte
		if m.Body != nil {
			if body, err = io.ReadAll(io.LimitReader(m.Body, 1<<20)); err != nil {
				return
			}
		}
		for _, f := range m.Header {
			if strings.ContainsAny(f.Name+f.Value, "\r\n") {
				t.Fatalf("header with a line break accepted: %q", f)
			}
		}
		out := &Message{Status: m.Status, Reason: m.Reason, Header: m.Header, Length: int64(len(body)), Body: bytes.NewReader(body)}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := WriteMessage(w, out); err != nil {
			return
		}
		again, err := ReadMessage(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("re-reading a written message: %v\n%q", err, buf.String())
		}
		var body2 []byte
		if again.Body != nil {
			body2, _ = io.ReadAll(again.Body)
		}
		if again.Status != m.Status || len(again.Header) != len(m.Header) || (httpmsg.BodyAllowed(m.Status) && !bytes.Equal(body, body2)) {
			t.Fatalf("round trip changed the message: %+v %q -> %+v %q", m, body, again, body2)
		}
	})
}
