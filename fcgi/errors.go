package fcgi

import (
	"errors"
	"fmt"
	"strings"
)

// ErrServerClosed is returned by Serve after Shutdown or Close, and is the
// cause of a request context cancelled by them.
var ErrServerClosed = errors.New("fcgi: server closed")

// Errors a handler sees from Request.Stdin or Request.Data, or from its
// ResponseWriter.
var (
	// ErrAborted: the web server sent FCGI_ABORT_REQUEST for the request or
	// closed the connection. It is also the request context's cause.
	ErrAborted = errors.New("fcgi: request aborted by the web server")

	// ErrInputOverflow: the handler left InputBuffer bytes unread while other
	// requests were active on the same connection, so the rest of its input was
	// dropped rather than stall them (see the package doc).
	ErrInputOverflow = errors.New("fcgi: request input dropped: handler did not read it and the connection is shared")

	// ErrInputTimeout: no STDIN or DATA arrived for the request within
	// Limits.InputIdleTimeout.
	ErrInputTimeout = errors.New("fcgi: request input idle timeout")

	// ErrHandlerTimeout: the request context's cause when the handler ran
	// longer than Limits.HandlerTimeout.
	ErrHandlerTimeout = errors.New("fcgi: handler timeout")

	// ErrInputClosed: a Read of Stdin or Data after the handler (or a
	// copier it handed the stream to) closed it.
	ErrInputClosed = errors.New("fcgi: request input closed")

	// ErrRequestEnded: a write after the request was ended (the handler
	// returned, or Shutdown's deadline ended it).
	ErrRequestEnded = errors.New("fcgi: write after the request ended")
)

// LengthError is what Request.Stdin or Request.Data return in place of io.EOF
// when the stream's length disagrees with the length the web server declared
// for it (CONTENT_LENGTH for STDIN, FCGI_DATA_LENGTH for DATA). A short stream
// is reported once all its bytes have been read; for a long stream the
// declared bytes are delivered, then the error, and the excess is dropped. A
// handler that updates something should treat either as "input incomplete".
type LengthError struct {
	Stream   string // "FCGI_STDIN" or "FCGI_DATA"
	Param    string // "CONTENT_LENGTH" or "FCGI_DATA_LENGTH"
	Declared int64
	Received int64 // for a long stream: at least this many
}

func (e *LengthError) Error() string {
	if e.Received > e.Declared {
		return fmt.Sprintf("fcgi: %s carried more than the %d bytes %s declared", e.Stream, e.Declared, e.Param)
	}
	return fmt.Sprintf("fcgi: %s ended after %d of the %d bytes %s declared", e.Stream, e.Received, e.Declared, e.Param)
}

// protocolError is malformed input that ends the connection; it is logged once.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "fcgi: protocol error: " + e.msg }

func protoErrorf(format string, args ...any) error {
	return &protocolError{strings.ReplaceAll(fmt.Sprintf(format, args...), "fcgi: ", "")}
}
