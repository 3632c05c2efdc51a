package httpmsg

import (
	"fmt"
	"net/http"
	"strconv"
)

// LastChunk ends a chunked body that has no trailer.
const LastChunk = "0\r\n\r\n"

// AppendHead appends a status line and h's fields, in order, to dst, without
// the blank line that ends the head (callers add their own fields and the
// framing first). An empty reason is the standard text for status, or
// "Unknown". skip, when not nil, names fields left out (framing ones, a
// caller's reserved ones). Every name and value is checked, so a value
// cannot inject a line.
func AppendHead(dst []byte, status int, reason string, h Header, skip func(name string) bool) ([]byte, error) {
	if status < 100 || status > 999 {
		return dst, fmt.Errorf("status %d is not a three-digit code", status)
	}
	if reason == "" {
		reason = http.StatusText(status)
	}
	if reason == "" {
		reason = "Unknown"
	}
	if !ValidValue(reason) {
		return dst, fmt.Errorf("reason %q contains a control character", reason)
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	for _, f := range h {
		if skip != nil && skip(f.Name) {
			continue
		}
		var err error
		if dst, err = AppendField(dst, f.Name, f.Value); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// AppendField appends one checked field line.
func AppendField(dst []byte, name, value string) ([]byte, error) {
	if !ValidName(name) {
		return dst, fmt.Errorf("header name %q is not a token", name)
	}
	if !ValidValue(value) {
		return dst, fmt.Errorf("header %s: value contains a control character", name)
	}
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...), nil
}

// AppendChunkSize appends the size line of a chunk of n bytes.
func AppendChunkSize(dst []byte, n int) []byte {
	return append(strconv.AppendInt(dst, int64(n), 16), '\r', '\n')
}
