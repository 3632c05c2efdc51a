package httpmsg

import "io"

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
