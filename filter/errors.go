package filter

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// Kind says what went wrong in an exchange, which decides the status the
// client gets and whether Run may retry or fail open.
type Kind int

// Kinds of failure. The comment gives the status the client gets.
const (
	Internal   Kind = iota // 502: a failure that fits no other kind
	Saturated              // 503: no process free within the queue timeout
	Start                  // 503: a process could not be started
	Closed                 // 503: the pool was closed (reload or shutdown)
	Timeout                // 504: the exchange exceeded its timeout; the process was killed
	Crash                  // 502: the process exited or closed its stdout before its reply was complete
	Protocol               // 502: the reply broke the pipe protocol
	BadRequest             // 400: request-derived values failed validation; nothing ran
	Canceled               // 499: the caller's context ended (client gone); nothing is sent
	Input                  // 502: reading the input body failed
)

var kindNames = [...]string{"internal", "saturated", "start", "closed", "timeout", "crash", "protocol", "bad-request", "canceled", "input"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Status returns the HTTP status a client gets for this kind of failure.
func (k Kind) Status() int {
	switch k {
	case Saturated, Start, Closed:
		return 503
	case Timeout:
		return 504
	case BadRequest:
		return 400
	case Canceled:
		return 499
	}
	return 502
}

// Error is what every transform returns when an exchange fails, from Apply
// or, once output began, from a Read of the returned Body.
type Error struct {
	Transform  string
	Pid        int // 0 when no process was involved
	Kind       Kind
	Status     int      // 400, 499, 502, 503 or 504
	StderrTail []string // the process's last stderr lines, oldest first
	Err        error

	// What a person debugging the transform needs beyond the sentence (see
	// Diagnose): the phase when the kind alone does not say it, how the
	// process ended, the reply bytes that followed a protocol fault, and
	// the common mistake recognised in the reply.
	Phase   Phase
	Exit    string // "exit status 1", "signal: killed"; "" when unknown
	Output  []byte // for a protocol error: reply bytes after the offending line
	Mistake Mistake
}

func newError(transform string, pid int, kind Kind, err error) *Error {
	return &Error{Transform: transform, Pid: pid, Kind: kind, Status: kind.Status(), Err: err}
}

var kindPhrases = map[Kind]string{
	Saturated:  "no process became free in time",
	Start:      "could not start a process",
	Closed:     "its pool is closed",
	Timeout:    "did not finish in time and was killed",
	Crash:      "ended before its reply was complete",
	Protocol:   "broke the pipe protocol",
	BadRequest: "rejected the request",
	Canceled:   "was abandoned because the request was canceled",
	Input:      "could not read its input",
	Internal:   "failed",
}

// Error reads as one sentence: which transform, which process, what
// happened, why, and the last stderr lines.
func (e *Error) Error() string { return e.sentence(true) }

// sentence is Error's text, with or without the quote of the stderr tail
// (left out where the whole tail is logged beside it).
func (e *Error) sentence(withStderr bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "transform %q", e.Transform)
	if e.Pid > 0 {
		fmt.Fprintf(&b, " (pid %d)", e.Pid)
	}
	b.WriteString(" " + kindPhrases[e.Kind])
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if m := e.mistake(); m != NoMistake {
		fmt.Fprintf(&b, " (%s: %s)", m, m.Hint())
	}
	if tail := pool.StderrSummary(e.StderrTail); withStderr && len(tail) > 0 {
		fmt.Fprintf(&b, "; its stderr ended with %q", strings.Join(tail, " | "))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ProtocolError describes where and how a reply broke the pipe protocol.
type ProtocolError struct {
	// Line is the 1-based line of the reply head (1 is the status line), or
	// 0 for a fault in the body.
	Line int
	// Offset is the body byte offset for a fault in the body.
	Offset int64
	Want   string // what the protocol expects there
	Got    string // what arrived, cut to 80 bytes
	// Err is io.ErrUnexpectedEOF when the reply just stopped, which usually
	// means the process died.
	Err error
	// Mistake names the common transform bug this fault looks like.
	Mistake Mistake
}

func (e *ProtocolError) Error() string {
	where := "reply body at byte " + strconv.FormatInt(e.Offset, 10)
	if e.Line > 0 {
		where = "reply line " + strconv.Itoa(e.Line)
	}
	if errors.Is(e.Err, os.ErrDeadlineExceeded) && e.Got == "" {
		return fmt.Sprintf("%s: expected %s, got nothing more in time", where, e.Want)
	}
	if e.Err != nil && e.Got == "" {
		return fmt.Sprintf("%s: expected %s, got end of output", where, e.Want)
	}
	return fmt.Sprintf("%s: expected %s, got %q", where, e.Want, e.Got)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// inputError marks a failure to read the input body, so that it is not
// blamed on the transform.
type inputError struct{ err error }

func (e *inputError) Error() string { return "read input body: " + e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// errShortInput is returned when an input body ends before its declared
// Length.
var errShortInput = errors.New("input body shorter than its declared length")
