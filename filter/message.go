package filter

import (
	"io"
	"net/textproto"
	"strings"
)

// Field is one header line. Names keep the case they arrived with; lookups
// are case-insensitive.
type Field struct {
	Name  string
	Value string
}

// Header is an ordered list of header fields. Order and duplicates (several
// Set-Cookie lines, say) are kept exactly, because transforms and clients may
// depend on both.
type Header []Field

// Get returns the value of the first field named name, or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns every value of the fields named name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Has reports whether a field named name is present.
func (h Header) Has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Add appends a field.
func (h *Header) Add(name, value string) {
	*h = append(*h, Field{Name: name, Value: value})
}

// Set replaces every field named name by one field, kept at the position of
// the first one (or appended).
func (h *Header) Set(name, value string) {
	out := (*h)[:0]
	done := false
	for _, f := range *h {
		if strings.EqualFold(f.Name, name) {
			if done {
				continue
			}
			f.Value = value
			done = true
		}
		out = append(out, f)
	}
	if !done {
		out = append(out, Field{Name: textproto.CanonicalMIMEHeaderKey(name), Value: value})
	}
	*h = out
}

// Del removes every field named name.
func (h *Header) Del(name string) {
	out := (*h)[:0]
	for _, f := range *h {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	*h = out
}

// DelPrefix removes every field whose name starts with prefix
// (case-insensitively).
func (h *Header) DelPrefix(prefix string) {
	out := (*h)[:0]
	for _, f := range *h {
		if len(f.Name) < len(prefix) || !strings.EqualFold(f.Name[:len(prefix)], prefix) {
			out = append(out, f)
		}
	}
	*h = out
}

// Clone returns a copy that shares nothing with h.
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	return append(Header(nil), h...)
}

// Message is one HTTP-shaped response travelling through the bridge: what a
// source produced, what a transform receives, and what it returns.
//
// Body is streamed: whoever receives a Message owns Body and must close it.
// A nil Body means no body (HEAD, 204, 304, 1xx).
type Message struct {
	Status int    // e.g. 200
	Reason string // optional; "" means the standard text for Status
	Header Header
	// Length is the body length in bytes when known, -1 when unknown (the
	// body then ends at EOF of Body). It is what framing uses: a known
	// length is sent as Content-Length, an unknown one chunked.
	Length int64
	Body   io.ReadCloser
}

// BodyAllowed reports whether a message with this status may carry a body.
func BodyAllowed(status int) bool {
	return !(status >= 100 && status < 200) && status != 204 && status != 304
}
