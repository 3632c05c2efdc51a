package filter

import (
	"bufio"
	"errors"
	"io"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Limits on a reply head. A transform that exceeds them is broken or
// hostile; either way the bridge must not buffer without bound.
const (
	// MaxHeadBytes bounds the status line and header lines of a reply
	// together (and the trailer of a chunked body).
	MaxHeadBytes = 64 << 10
	// MaxHeaderFields bounds the number of header lines of a reply.
	MaxHeaderFields = 256
	// readBufferSize is the reply read buffer; it also bounds one line.
	readBufferSize = 32 << 10
)

// replyOptions is how a reply is read: a status line with a final status,
// every body framed (a reply to keep the process for must say where it
// ends), and "Transfer-Encoding: identity" taken as no coding, as earlier
// releases of the bridge did.
var replyOptions = httpmsg.Options{
	Syntax:         httpmsg.StatusLine,
	Limits:         httpmsg.Limits{HeadBytes: MaxHeadBytes, Fields: MaxHeaderFields},
	RequireFraming: true,
	IdentityTE:     true,
}

// replyHead is a parsed reply head. msg.Header holds what the client may
// see: framing and reserved headers are gone.
type replyHead struct {
	msg     Message
	framing httpmsg.Framing
	close   bool // Connection: close: the process retires after this reply
	head    httpmsg.Head
}

// readReplyHead reads a reply's status line and headers. It returns io.EOF
// when the output ended before the first byte (the process is gone or closed
// stdout), and a *ProtocolError for anything the protocol does not allow.
func readReplyHead(br *bufio.Reader) (*replyHead, error) {
	r := &replyHead{}
	if err := httpmsg.ReadHead(br, &replyOptions, &r.head); err != nil {
		return nil, protocolError(err)
	}
	h := &r.head
	// With both chunked and Content-Length (h.Conflict), chunked was used
	// and the process is kept: Node sends both when a transform sets
	// Content-Length on a message that came chunked, since the npm
	// subprocess-middleware copies the request's Transfer-Encoding header
	// into its response.
	r.msg = Message{Status: h.Status, Reason: h.Reason, Header: h.Header, Length: h.Length}
	r.msg.Header.DelFunc(func(name string) bool { return httpmsg.IsFraming(name) || isReserved(name) })
	if len(r.msg.Header) == 0 {
		r.msg.Header = nil
	}
	r.framing, r.close = h.Framing, h.Close
	return r, nil
}

// protocolError turns a fault found by httpmsg into the filter's
// *ProtocolError, naming the transform mistake its shape suggests. Other
// errors pass unchanged.
func protocolError(err error) error {
	var e *httpmsg.Error
	if !errors.As(err, &e) {
		return err
	}
	pe := &ProtocolError{Line: e.Line, Offset: e.Offset, Want: e.Want, Got: e.Got, Err: e.Err}
	switch e.Fault {
	case httpmsg.FaultStatusLine:
		pe.Mistake = BadStatusLine
	case httpmsg.FaultFieldLine:
		// A partial line where a header should be is most often a body
		// that followed the headers without the blank line.
		if e.Got != "" && e.Got[0] != ' ' && e.Got[0] != '\t' {
			pe.Mistake = NoBlankLine
		}
	case httpmsg.FaultNoFraming:
		pe.Mistake = NoFraming
	case httpmsg.FaultShortBody:
		pe.Mistake = BodyShort
	}
	if e.Err == httpmsg.ErrTooLarge {
		// A crossed limit is a protocol fault, not an output that ended:
		// a ProtocolError without Err is what makes the exchange a
		// Protocol failure rather than a Crash.
		pe.Err = nil
	}
	return pe
}

// bodyReader reads one reply body, enforcing its framing. It returns io.EOF
// exactly when the body is complete, and a *ProtocolError (wrapping
// io.ErrUnexpectedEOF when the output just stopped) otherwise.
type bodyReader struct{ httpmsg.Body }

func newBodyReader(br *bufio.Reader, h *replyHead) *bodyReader {
	b := &bodyReader{}
	b.Reset(br, &h.head)
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if err != nil && err != io.EOF {
		err = protocolError(err)
	}
	return n, err
}

// shortBody is the fault of a reply whose output ended before the body its
// Content-Length announced.
func shortBody(offset, remain int64) *ProtocolError {
	return protocolError(httpmsg.ShortBody(offset, remain)).(*ProtocolError)
}
