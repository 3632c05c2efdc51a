package filter

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// Phase says where in an exchange a transform failed.
type Phase string

// Phases, as a developer mode page and transform-check name them.
const (
	PhaseStart    Phase = "start"          // the process could not be started
	PhaseQueue    Phase = "queue"          // no process became free in time
	PhaseWrite    Phase = "write"          // writing the message to its stdin failed
	PhaseRead     Phase = "read reply"     // its output ended before the reply was complete
	PhaseTimeout  Phase = "timeout"        // no complete reply in time
	PhaseProtocol Phase = "protocol error" // the reply is not a valid message
	PhaseInput    Phase = "read input"     // the bridge could not read the content to send
	PhaseRequest  Phase = "request"        // request-derived values were refused
	PhaseCanceled Phase = "canceled"       // the client went away
)

// phase is e.Phase, or the phase its kind implies.
func (e *Error) phase() Phase {
	if e.Phase != "" {
		return e.Phase
	}
	switch e.Kind {
	case Start, Closed:
		return PhaseStart
	case Saturated:
		return PhaseQueue
	case Timeout:
		return PhaseTimeout
	case Protocol:
		return PhaseProtocol
	case Crash:
		return PhaseRead
	case Input:
		return PhaseInput
	case BadRequest:
		return PhaseRequest
	case Canceled:
		return PhaseCanceled
	}
	return PhaseRead
}

// Mistake is one of the reply faults transform authors make most often;
// each has a name and a hint that says what to change.
type Mistake int

// Mistakes the bridge recognises in a reply.
const (
	NoMistake       Mistake = iota
	BadStatusLine           // the first line is not "HTTP/1.1 NNN reason"
	NoBlankLine             // the body follows the headers without the blank line
	NoFraming               // neither Content-Length nor chunked nor Connection: close
	BodyShort               // fewer body bytes than Content-Length
	BodyLong                // more body bytes than Content-Length
	ReplyBeforeRead         // the reply was complete while its message was still unread
)

var mistakes = [...]struct{ name, hint string }{
	NoMistake: {},
	BadStatusLine: {"status line is not HTTP/1.1 NNN",
		`begin the reply with a status line such as "HTTP/1.1 200 OK"; anything printed to stdout before it (debug output, a CGI "Status:" header) breaks the protocol: write debug output to stderr; a line that looks like the end of a body is the rest of a reply longer than its Content-Length`},
	NoBlankLine: {"no blank line after the headers",
		`end the headers with an empty line ("\r\n") before the body: if this line is the start of the body, that blank line is missing`},
	NoFraming: {"no body framing",
		"say where the body ends: send Content-Length (the body's size in bytes) or Transfer-Encoding: chunked"},
	BodyShort: {"body shorter than Content-Length",
		"update Content-Length when you change the body (its size in bytes, not characters)"},
	BodyLong: {"body longer than Content-Length",
		"update Content-Length when you change the body (its size in bytes, not characters); the bytes past it were cut off"},
	ReplyBeforeRead: {"reply before reading the whole request",
		"read the message up to the end of its body before you finish the reply: the unread rest would be taken for the start of the next message"},
}

func (m Mistake) String() string {
	if m > 0 && int(m) < len(mistakes) {
		return mistakes[m].name
	}
	return ""
}

// Hint says what to change in the transform; "" for NoMistake.
func (m Mistake) Hint() string {
	if m > 0 && int(m) < len(mistakes) {
		return mistakes[m].hint
	}
	return ""
}

// mistake is the mistake recorded on e or on the protocol fault it wraps.
func (e *Error) mistake() Mistake {
	if e.Mistake != NoMistake {
		return e.Mistake
	}
	var pe *ProtocolError
	if errors.As(e.Err, &pe) {
		return pe.Mistake
	}
	return NoMistake
}

// outputPeek bounds Error.Output: enough to recognise what a transform
// printed, small enough for a log line.
const outputPeek = 512

// Diagnosis is everything known about a failed exchange, for a person
// writing a transform: the developer mode error page, the log and
// transform-check show it. Every string is raw text; whoever renders it
// escapes it for its format.
type Diagnosis struct {
	Route     string `json:"route,omitempty"` // set by the caller that knows it
	Transform string `json:"transform"`
	Pid       int    `json:"pid,omitempty"`
	Kind      string `json:"kind"`
	Phase     Phase  `json:"phase"`
	Status    int    `json:"status"`
	// Message says what happened, without the stderr lines.
	Message string `json:"message"`
	// Line and Offending locate a protocol fault in the reply head (line 1
	// is the status line); Line is 0 for a fault in the body. Offending and
	// Output are Printable text.
	Line      int    `json:"line,omitempty"`
	Offending string `json:"offending,omitempty"`
	Mistake   string `json:"mistake,omitempty"`
	Hint      string `json:"hint,omitempty"`
	// Exit is how the process ended: "exit status 1", "signal: killed".
	Exit string `json:"exit,omitempty"`
	// Stderr is the last lines the process wrote to stderr.
	Stderr []string `json:"stderr,omitempty"`
	// Output is the start of what the transform wrote after the offending
	// line, when its reply was not a valid message.
	Output string `json:"output,omitempty"`
}

// Diagnose describes the transform failure err carries, or returns nil
// when err carries no *Error.
func Diagnose(err error) *Diagnosis {
	var e *Error
	if !errors.As(err, &e) {
		return nil
	}
	d := &Diagnosis{
		Transform: e.Transform,
		Pid:       e.Pid,
		Kind:      e.Kind.String(),
		Phase:     e.phase(),
		Status:    e.Status,
		Exit:      e.Exit,
		Stderr:    e.StderrTail,
		Output:    Printable(e.Output),
	}
	if m := e.mistake(); m != NoMistake {
		d.Mistake, d.Hint = m.String(), m.Hint()
	}
	var pe *ProtocolError
	if errors.As(e.Err, &pe) && pe.Line > 0 {
		d.Line, d.Offending = pe.Line, Printable([]byte(pe.Got))
	}
	var se *pool.StartError
	switch {
	case errors.As(e.Err, &se):
		d.Message = fmt.Sprintf("cannot start %s: %v", se.Path, se.Err)
		d.Exit, d.Stderr = se.Exit, se.Stderr
		if d.Hint == "" {
			d.Hint = se.Hint()
		}
	case e.Err != nil:
		d.Message = fmt.Sprintf("transform %q %s: %v", e.Transform, kindPhrases[e.Kind], e.Err)
	default:
		d.Message = fmt.Sprintf("transform %q %s", e.Transform, kindPhrases[e.Kind])
	}
	return d
}

// Title is the one-line heading of a diagnosis.
func (d *Diagnosis) Title() string {
	if d.Transform == "" {
		return fmt.Sprintf("%d %s: %s failed", d.Status, http.StatusText(d.Status), d.Phase)
	}
	return fmt.Sprintf("%d %s: transform %q failed (%s)", d.Status, http.StatusText(d.Status), d.Transform, d.Phase)
}

// WriteText writes d for a terminal or a text/plain answer. Bytes that are
// not printable text are shown as Go escapes (\r, \x00), so that a missing
// "\r\n" is visible.
func (d *Diagnosis) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString(d.Title() + "\n\n")
	row := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-10s %s\n", name+":", value)
		}
	}
	row("route", d.Route)
	row("transform", d.Transform)
	if d.Pid > 0 {
		row("pid", fmt.Sprint(d.Pid))
	}
	row("phase", string(d.Phase))
	row("error", d.Message)
	row("exit", d.Exit)
	if d.Line > 0 {
		row(fmt.Sprintf("line %d", d.Line), d.Offending)
	}
	row("mistake", d.Mistake)
	row("hint", d.Hint)
	if len(d.Stderr) > 0 {
		fmt.Fprintf(&b, "\nstderr (last %d lines):\n", len(d.Stderr))
		for _, l := range d.Stderr {
			b.WriteString("  " + Printable([]byte(l)) + "\n")
		}
	}
	if len(d.Output) > 0 {
		b.WriteString("\nthe reply went on with:\n  " + strings.ReplaceAll(d.Output, "\n", "\n  ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Printable renders bytes a transform wrote as readable text: valid UTF-8
// stays as it is, \r and \t and other control bytes and invalid bytes are
// written as Go escapes, and \n as `\n` followed by a line break.
func Printable(p []byte) string {
	var b strings.Builder
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		switch {
		case r == '\n':
			b.WriteString(`\n` + "\n")
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size == 1, r < 0x20, r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, p[0])
		default:
			b.Write(p[:size])
		}
		p = p[size:]
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ServedMistake reports the mistake found in a reply that was served all
// the same (see the Mistake constants BodyLong and ReplyBeforeRead), once
// body, the Body that Apply or Run returned, has been read and closed.
func ServedMistake(body io.ReadCloser) Mistake {
	if rb, ok := body.(*runBody); ok {
		body = rb.body
	}
	if x, ok := body.(*exchange); ok {
		m, _ := x.servedMistake()
		return m
	}
	return NoMistake
}
