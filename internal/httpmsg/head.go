package httpmsg

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Syntax says how a head begins and where its status comes from.
type Syntax uint8

const (
	// StatusLine heads begin with "HTTP/1.x NNN reason".
	StatusLine Syntax = iota
	// CGI heads are fields only (RFC 3875 section 6.2): the status comes
	// from an optional "Status: NNN reason" field (100-599), else it is 302
	// with a Location field and 200 without. The body is the rest of the
	// input; a Content-Length, when present, must be valid and gives Length.
	CGI
)

// FoldPolicy says what to do with an obs-fold continuation line (a field
// line that begins with a space or tab).
type FoldPolicy uint8

const (
	// RejectFold refuses a continuation line, as RFC 9112 section 5.2
	// allows outside message/http.
	RejectFold FoldPolicy = iota
	// JoinFold appends it to the previous field's value with one space, as
	// net/http does.
	JoinFold
)

// Limits bound one head. They are checked while reading: nothing is copied
// beyond them, and a line never grows past the bufio.Reader's buffer.
type Limits struct {
	// HeadBytes bounds the bytes of the head, line endings included, and
	// of a chunked body's trailer section. 0 means 64 KiB.
	HeadBytes int
	// Fields bounds the number of field lines (and of trailer lines).
	// 0 means 256.
	Fields int
	// Interim is how many 1xx heads (other than 101) are skipped before
	// the final one; with 0 a 1xx head is an error. 101 always is: this
	// package does not switch protocols.
	Interim int
}

// Options are one caller's choices, set once and shared by every read.
type Options struct {
	Syntax Syntax
	Limits Limits
	Fold   FoldPolicy
	// Method is the request method the head answers; "HEAD" means no body
	// whatever the head says.
	Method string
	// Canonical rewrites field names as net/textproto canonicalises them
	// ("content-type" -> "Content-Type"); otherwise they keep their case.
	Canonical bool
	// RequireFraming refuses a head that allows a body but frames it with
	// neither Content-Length, nor chunked, nor Connection: close: on a
	// connection meant to be kept, reading to EOF would wait for ever.
	// Without it such a body is read to EOF, as net/http does.
	RequireFraming bool
	// IdentityTE takes "Transfer-Encoding: identity" as no transfer coding
	// instead of an error, for senders written against RFC 2616.
	IdentityTE bool
}

// Framing says how a body ends. The values are stable: goldens print them.
type Framing uint8

const (
	None     Framing = iota // no body: 1xx, 204, 304, a reply to HEAD
	Sized                   // Content-Length
	Chunked                 // Transfer-Encoding: chunked
	UntilEOF                // the body runs to the end of the input
)

// Head is one parsed head. Reason and the fields are substrings of one string
// per head, so they stay valid after the next ReadHead; ReadHead reuses the
// capacity of Header, so set Header to nil first when the previous Header is
// still in use elsewhere.
type Head struct {
	Status int
	Reason string // as sent; "" when the line or the Status field had none
	HTTP10 bool   // the status line said HTTP/1.0
	// Close is set when a Connection field lists "close".
	Close bool
	// Conflict is set when both Transfer-Encoding: chunked and
	// Content-Length came; chunked was used (RFC 9112 section 6.3). The
	// sender is broken or an attack is attempted: a connection should not
	// be reused after it.
	Conflict bool
	// Header holds every field as it came, in order, framing fields
	// included (except CGI's Status); callers drop what they do not pass on.
	Header  Header
	Framing Framing
	// Length is the body length for Sized, 0 for None, else -1 (CGI: the
	// Content-Length when one came, else -1).
	Length int64
	// Lines is the number of lines read, the blank line included.
	Lines int

	limits   Limits
	fold     FoldPolicy
	*scratch // while ReadHead runs
}

// scratch is where a head is gathered before it becomes one string; it is
// pooled, so a head costs that string and, when the caller does not reuse
// one, its Header.
type scratch struct {
	buf   []byte
	spans []span
}

var scratchPool = sync.Pool{New: func() any { return &scratch{buf: make([]byte, 0, 2048), spans: make([]span, 0, 32)} }}

// span locates one field in Head.buf.
type span struct{ name, value, end int32 }

// Wants, for errors.
const (
	wantStatus = `a status line "HTTP/1.1 <3-digit code> <reason>"`
	wantField  = `a header line "Name: value"`
	wantLine   = wantField + " or the blank line ending the head"
	wantFramed = "a framed body: Content-Length, Transfer-Encoding: chunked, or Connection: close with the body until EOF"
)

// Fault classifies an *Error by the shape of the input, so that callers can
// name the likely mistake without parsing Want.
type Fault uint8

const (
	FaultOther      Fault = iota
	FaultStatusLine       // the first line is not a status line
	FaultFieldLine        // a line where a field or the blank line was due is neither
	FaultNoFraming        // RequireFraming and no framing
	FaultShortBody        // a sized body ended early
	FaultLength           // a Content-Length that is not one decimal number
	FaultCoding           // a transfer coding other than chunked
)

// lineReader reads the lines of a head, counting lines and bytes.
type lineReader struct {
	br     *bufio.Reader
	line   int
	bytes  int
	budget int
	bareLF bool   // the last line ended in a bare LF
	long   []byte // a line longer than br's buffer, gathered
}

// next returns the next line without its line ending (CRLF, or a bare LF,
// which RFC 9112 section 2.2 lets a recipient accept in a head). The slice
// is valid until the next read from br or the next call.
//
// A line longer than br's buffer (a large Content-Security-Policy or
// Set-Cookie field) is gathered in a buffer of its own, as net/http
// reads one; what bounds it is the head's budget, checked as it grows, not
// the size of the read buffer.
func (r *lineReader) next(want string, first bool) ([]byte, error) {
	r.line++
	b, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.long = append(r.long[:0], b...)
		for err == bufio.ErrBufferFull {
			if r.bytes+len(r.long) > r.budget {
				return nil, newError(r.line, 0, "a head shorter than "+strconv.Itoa(r.budget)+" bytes", r.long, ErrTooLarge)
			}
			b, err = r.br.ReadSlice('\n')
			r.long = append(r.long, b...)
		}
		b = r.long
	}
	r.bytes += len(b)
	switch {
	case err == io.EOF && len(b) == 0 && first:
		return nil, io.EOF
	case err == io.EOF:
		return nil, newError(r.line, 0, want, b, io.ErrUnexpectedEOF)
	case err != nil && len(b) > 0:
		// Woken mid-line (a timeout, a cancel): the part of the line that
		// came tells why the input stalled.
		return nil, newError(r.line, 0, want, b, err)
	case err != nil:
		return nil, err
	case r.bytes > r.budget:
		return nil, newError(r.line, 0, "a head shorter than "+strconv.Itoa(r.budget)+" bytes", b, ErrTooLarge)
	}
	b = b[:len(b)-1]
	r.bareLF = true
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b, r.bareLF = b[:n-1], false
	}
	return b, nil
}

func (l *Limits) withDefaults() Limits {
	out := *l
	if out.HeadBytes <= 0 {
		out.HeadBytes = 64 << 10
	}
	if out.Fields <= 0 {
		out.Fields = 256
	}
	return out
}

// ReadHead reads one head from br into h. It returns io.EOF when br ended
// before the first byte, the read error when br failed before a byte of a
// line came, and an *Error for anything the protocol does not allow.
func ReadHead(br *bufio.Reader, o *Options, h *Head) error {
	lim := o.Limits.withDefaults()
	sc := scratchPool.Get().(*scratch)
	sc.buf, sc.spans = sc.buf[:0], sc.spans[:0]
	*h = Head{Header: h.Header[:0], scratch: sc, limits: lim, fold: o.Fold, Length: -1}
	defer func() {
		h.scratch = nil
		if cap(sc.buf) <= 64<<10 {
			scratchPool.Put(sc)
		}
	}()
	r := lineReader{br: br, budget: lim.HeadBytes}
	if o.Syntax == StatusLine {
		if err := h.readStatus(&r, o); err != nil {
			return err
		}
	}
	if err := h.readFields(&r, o, o.Syntax == CGI); err != nil {
		return err
	}
	h.Lines = r.line
	h.finish(o)
	return h.frame(o, r.line)
}

// readStatus reads the status line, skipping up to Limits.Interim 1xx heads.
func (h *Head) readStatus(r *lineReader, o *Options) error {
	for interim := 0; ; interim++ {
		line, err := r.next(wantStatus, r.line == 0)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Got != "" {
				if _, _, _, ok := parseStatusLine([]byte(e.Got)); !ok {
					e.Fault = FaultStatusLine
				}
			}
			return err
		}
		code, http10, reason, ok := parseStatusLine(line)
		if !ok {
			e := newError(r.line, 0, wantStatus, line, nil)
			e.Fault = FaultStatusLine
			return e
		}
		if !validValueBytes(reason) {
			return newError(r.line, 0, "a reason phrase without control characters", line, nil)
		}
		if code >= 200 {
			h.Status, h.HTTP10 = code, http10
			h.buf = append(h.buf, reason...)
			h.Reason = "" // set by finish from buf[:len(reason)]
			h.spans = append(h.spans, span{0, 0, int32(len(reason))})
			return nil
		}
		switch {
		case code == 101:
			return newError(r.line, 0, "a final status; switching protocols is not supported", line, nil)
		case interim >= o.Limits.Interim && o.Limits.Interim == 0:
			return newError(r.line, 0, "a final status (200-999); informational replies are not part of the protocol", line, nil)
		case interim >= o.Limits.Interim:
			return newError(r.line, 0, "a final status after at most "+strconv.Itoa(o.Limits.Interim)+" informational heads", line, nil)
		}
		// An interim head's fields are read and dropped.
		if err := h.readFields(r, o, false); err != nil {
			return err
		}
		h.buf, h.spans = h.buf[:0], h.spans[:0]
	}
}

// parseStatusLine parses "HTTP/1.x SP 3DIGIT [SP reason]".
func parseStatusLine(line []byte) (code int, http10 bool, reason []byte, ok bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, false, nil, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, false, nil, false
	}
	if len(line) > 13 {
		reason = line[13:]
	}
	return code, line[7] == '0', reason, true
}

// readFields reads field lines up to the blank line. In a CGI head the
// Status field is taken into h.Status instead.
func (h *Head) readFields(r *lineReader, o *Options, cgi bool) error {
	fields := 0
	statusSeen := false
	for {
		line, err := r.next(wantLine, r.line == 0)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Got != "" {
				e.Fault = FaultFieldLine
			}
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if o.Fold == JoinFold && len(h.spans) > 0 && fields > 0 {
				v := bytes.Trim(line, " \t")
				if !validValueBytes(v) {
					return newError(r.line, 0, wantField+" whose value has no control characters", line, nil)
				}
				if r.bytes > h.limits.HeadBytes {
					return newError(r.line, 0, "a head shorter than "+strconv.Itoa(h.limits.HeadBytes)+" bytes", line, ErrTooLarge)
				}
				s := &h.spans[len(h.spans)-1]
				if len(v) > 0 {
					if s.end > s.value {
						h.buf = append(h.buf, ' ')
					}
					h.buf = append(h.buf, v...)
				}
				s.end = int32(len(h.buf))
				continue
			}
			return newError(r.line, 0, wantField+" (folded continuation lines are not allowed)", line, nil)
		}
		if fields >= h.limits.Fields {
			return newError(r.line, 0, "at most "+strconv.Itoa(h.limits.Fields)+" header lines", line, ErrTooLarge)
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			e := newError(r.line, 0, wantField, line, nil)
			e.Fault = FaultFieldLine
			return e
		}
		name, value := line[:i], bytes.Trim(line[i+1:], " \t")
		if !validNameBytes(name) {
			e := newError(r.line, 0, wantField+" whose name is a token", line, nil)
			e.Fault = FaultFieldLine
			return e
		}
		if !validValueBytes(value) {
			e := newError(r.line, 0, wantField+" whose value has no control characters", line, nil)
			e.Fault = FaultFieldLine
			return e
		}
		fields++
		if cgi && equalFold(name, "Status") {
			if statusSeen {
				return newError(r.line, 0, "one Status field", line, nil)
			}
			statusSeen = true
			code, reason, ok := parseCGIStatus(value)
			if !ok {
				return newError(r.line, 0, `a Status field "NNN reason" with a code from 100 to 599`, line, nil)
			}
			h.Status = code
			// The reason goes in front of the fields: finish finds it at span 0.
			h.buf = append(h.buf, reason...)
			h.spans = append(h.spans, span{-1, int32(len(h.buf) - len(reason)), int32(len(h.buf))})
			continue
		}
		start := int32(len(h.buf))
		h.buf = append(h.buf, name...)
		if o.Canonical {
			canonicalize(h.buf[start:])
		}
		v := int32(len(h.buf))
		h.buf = append(h.buf, value...)
		h.spans = append(h.spans, span{start, v, int32(len(h.buf))})
	}
}

func parseCGIStatus(v []byte) (int, []byte, bool) {
	if len(v) < 3 || (len(v) > 3 && v[3] != ' ') {
		return 0, nil, false
	}
	code := 0
	for _, c := range v[:3] {
		if c < '0' || c > '9' {
			return 0, nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return 0, nil, false
	}
	return code, bytes.TrimLeft(v[3:], " "), true
}

// finish makes the one string of the head and the fields as its substrings.
func (h *Head) finish(o *Options) {
	s := string(h.buf)
	spans := h.spans
	if o.Syntax == StatusLine && len(spans) > 0 {
		h.Reason = s[:spans[0].end]
		spans = spans[1:]
	}
	n := len(spans)
	if cap(h.Header) < n {
		h.Header = make(Header, 0, n)
	}
	for _, sp := range spans {
		if sp.name < 0 { // CGI Status
			h.Reason = s[sp.value:sp.end]
			continue
		}
		h.Header = append(h.Header, Field{Name: s[sp.name:sp.value], Value: s[sp.value:sp.end]})
	}
	if o.Syntax == CGI && h.Status == 0 {
		h.Status = 200
		if h.Header.Has("Location") {
			h.Status = 302
		}
	}
}

// frame decides how the body ends (RFC 9112 section 6, in net/http's order).
func (h *Head) frame(o *Options, line int) error {
	var te, cl string
	teCount, clCount := 0, 0
	for _, f := range h.Header {
		switch {
		case equalFold(f.Name, "Transfer-Encoding"):
			teCount++
			te = f.Value
		case equalFold(f.Name, "Content-Length"):
			clCount++
			if clCount == 1 {
				cl = f.Value
			}
		case equalFold(f.Name, "Connection"):
			if HasToken(f.Value, "close") {
				h.Close = true
			}
		}
	}
	chunked := false
	if teCount > 0 && !h.HTTP10 && o.Syntax == StatusLine {
		switch {
		case teCount == 1 && equalFold(te, "chunked"):
			chunked = true
		case teCount == 1 && o.IdentityTE && equalFold(te, "identity"):
		default:
			e := newError(line, 0, `"Transfer-Encoding: chunked" as the only transfer coding`,
				[]byte("Transfer-Encoding: "+strings.Join(h.Header.Values("Transfer-Encoding"), ", ")), nil)
			e.Fault = FaultCoding
			return e
		}
	}
	length := int64(-1)
	if clCount > 0 {
		// Repeated values, in several fields or as a list, must be
		// identical (RFC 9110 section 8.6); the first then stands for all.
		first, _, _ := strings.Cut(cl, ",")
		first = trimOWS(first)
		for _, f := range h.Header {
			if !equalFold(f.Name, "Content-Length") {
				continue
			}
			for v := f.Value; ; {
				item, rest, more := strings.Cut(v, ",")
				if trimOWS(item) != first {
					e := newError(line, 0, "one Content-Length value",
						[]byte("Content-Length: "+strings.Join(h.Header.Values("Content-Length"), ", ")), nil)
					e.Fault = FaultLength
					return e
				}
				if !more {
					break
				}
				v = rest
			}
		}
		n, ok := ParseLength(first)
		if !ok {
			e := newError(line, 0, "a Content-Length of decimal digits",
				[]byte("Content-Length: "+strings.Join(h.Header.Values("Content-Length"), ", ")), nil)
			e.Fault = FaultLength
			return e
		}
		length = n
	}
	switch {
	case o.Syntax == CGI:
		h.Framing, h.Length = UntilEOF, length
	case !BodyAllowed(h.Status) || o.Method == "HEAD":
		h.Framing, h.Length = None, 0
	case chunked:
		h.Framing, h.Conflict = Chunked, clCount > 0
	case clCount > 0:
		h.Framing, h.Length = Sized, length
	case h.Close || !o.RequireFraming:
		h.Framing = UntilEOF
	default:
		e := newError(line, 0, wantFramed, []byte("end of head"), nil)
		e.Fault = FaultNoFraming
		return e
	}
	return nil
}

// ParseLength parses a Content-Length value: decimal digits only (no sign,
// no spaces), at most 2^63-1.
func ParseLength(s string) (int64, bool) {
	n, err := strconv.ParseUint(s, 10, 63)
	return int64(n), err == nil
}
