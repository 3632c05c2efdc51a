package sample

import (
	"bufio"
	"io"
	"mime"
	"strings"
)

// upper upper-cases ASCII letters, which keeps the length of the body, so
// the answer streams with the same framing as the input: nothing is held in
// memory beyond one buffer, whatever the body's size. Bodies that are not
// text, or are compressed, pass unchanged.
func upper(in *Message, out *bufio.Writer) error {
	if in.Body != nil && isText(in) {
		in.Body = asciiUpper{in.Body}
	}
	return WriteMessage(out, in)
}

// isText accepts no Content-Type at all (FILTER data often has none), text/*
// and the textual application types.
func isText(m *Message) bool {
	if ce := m.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	ct := m.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "json") ||
		strings.HasSuffix(mt, "xml") || mt == "application/javascript"
}

type asciiUpper struct{ r io.Reader }

func (u asciiUpper) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	for i, c := range p[:n] {
		if 'a' <= c && c <= 'z' {
			p[i] = c - ('a' - 'A')
		}
	}
	return n, err
}
