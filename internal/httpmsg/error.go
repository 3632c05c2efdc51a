package httpmsg

import (
	"errors"
	"strconv"
)

// Error says where and how a message broke the protocol.
type Error struct {
	// Line is the 1-based line of the head (1 is the status line, or the
	// first field in CGI syntax), or 0 for a fault in the body.
	Line int
	// Offset is the body byte offset for a fault in the body.
	Offset int64
	Want   string // what the protocol expects there
	Got    string // what arrived, cut to 80 bytes
	// Err is io.ErrUnexpectedEOF when the input just stopped, ErrTooLarge
	// when a limit was crossed, or the read error that ended the input.
	Err error
	// Fault classifies the fault by the shape of the input.
	Fault Fault
}

// ErrTooLarge is wrapped by an *Error when a head, a line, a field count or
// a chunked body's overhead crossed its limit.
var ErrTooLarge = errors.New("message too large")

func (e *Error) Error() string {
	where := "body at byte " + strconv.FormatInt(e.Offset, 10)
	if e.Line > 0 {
		where = "line " + strconv.Itoa(e.Line)
	}
	switch {
	case e.Got == "" && e.Err != nil && e.Err != ErrTooLarge:
		return where + ": expected " + e.Want + ", got end of input"
	case e.Err != nil:
		return where + ": expected " + e.Want + ", got " + strconv.Quote(e.Got) + ": " + e.Err.Error()
	}
	return where + ": expected " + e.Want + ", got " + strconv.Quote(e.Got)
}

func (e *Error) Unwrap() error { return e.Err }

func newError(line int, offset int64, want string, got []byte, err error) *Error {
	if len(got) > 80 {
		got = got[:80]
	}
	return &Error{Line: line, Offset: offset, Want: want, Got: string(got), Err: err}
}
