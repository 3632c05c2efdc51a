package sample

import (
	"bufio"
	"io"
	"mime"
	"strings"
)

// upper upper-cases ASCII letters, which keeps the length of the body, so
// the answer streams with the same framing as the input: nothing is held in
// memory beyond one buffer, whatever the body's size. Bodies that are
// compressed, or declared as images, audio, video or fonts, pass unchanged.
func upper(in *Message, out *bufio.Writer) error {
	if in.Body != nil && isText(in) {
		in.Body = asciiUpper{in.Body}
	}
	return WriteMessage(out, in)
}

// isText accepts every body not known to be binary: FILTER data and request
// bodies often arrive untyped or as application/octet-stream, and upper is
// meant for them too.
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
	major, _, _ := strings.Cut(mt, "/")
	switch major {
	case "image", "audio", "video", "font":
		return false
	}
	switch mt {
	case "application/zip", "application/gzip", "application/pdf", "application/wasm":
		return false
	}
	return true
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
