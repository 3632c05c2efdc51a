package filter

import (
	"io"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Field is one header line. Names keep the case they arrived with; lookups
// are case-insensitive.
type Field = httpmsg.Field

// Header is an ordered list of header fields. Order and duplicates (several
// Set-Cookie lines, say) are kept exactly, because transforms and clients may
// depend on both.
type Header = httpmsg.Header

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
func BodyAllowed(status int) bool { return httpmsg.BodyAllowed(status) }
