package filter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/internal/field"
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

// framing says how a reply body ends.
type framing int

const (
	framingNone    framing = iota // no body: 204, 304
	framingSized                  // Content-Length
	framingChunked                // Transfer-Encoding: chunked
	framingEOF                    // Connection: close, body until EOF
)

// replyHead is a parsed reply head. msg.Header holds what the client may
// see: framing and reserved headers are gone.
type replyHead struct {
	msg     Message
	framing framing
	length  int64 // framingSized
	close   bool  // Connection: close: the process retires after this reply
}

// headReader reads lines of a head, counting them and the bytes.
type headReader struct {
	br    *bufio.Reader
	line  int
	bytes int
}

// next returns the next line without its line ending (CRLF, or a bare LF,
// which is tolerated). The slice is valid until the next read from br.
func (h *headReader) next(want string) ([]byte, error) {
	h.line++
	b, err := h.br.ReadSlice('\n')
	h.bytes += len(b)
	switch {
	case err == bufio.ErrBufferFull:
		return nil, protoErr(h.line, 0, want+" in a line shorter than "+strconv.Itoa(readBufferSize)+" bytes", b, nil)
	case err == io.EOF && len(b) == 0 && h.line == 1:
		return nil, io.EOF
	case err == io.EOF:
		return nil, protoErr(h.line, 0, want, b, io.ErrUnexpectedEOF)
	case err != nil && len(b) > 0:
		// Woken mid-line (a timeout, a cancel): the part of the line that
		// came tells why the reply stalled.
		return nil, protoErr(h.line, 0, want, b, err)
	case err != nil:
		return nil, err
	case h.bytes > MaxHeadBytes:
		return nil, protoErr(h.line, 0, "a head shorter than "+strconv.Itoa(MaxHeadBytes)+" bytes", b, nil)
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b, nil
}

const wantStatus = `a status line "HTTP/1.1 <3-digit code> <reason>"`

// readReplyHead reads a reply's status line and headers. It returns io.EOF
// when the output ended before the first byte (the process is gone or closed
// stdout), and a *ProtocolError for anything the protocol does not allow.
func readReplyHead(br *bufio.Reader) (*replyHead, error) {
	hr := headReader{br: br}
	line, err := hr.next(wantStatus)
	if err != nil {
		var pe *ProtocolError
		if errors.As(err, &pe) && pe.Got != "" {
			if _, _, serr := parseStatusLine([]byte(pe.Got)); serr != nil {
				pe.Mistake = BadStatusLine
			}
		}
		return nil, err
	}
	r := &replyHead{}
	if r.msg.Status, r.msg.Reason, err = parseStatusLine(line); err != nil {
		return nil, err
	}
	var contentLength, transferEncoding []string
	for {
		line, err := hr.next(`a header line "Name: value" or the blank line ending the head`)
		if err != nil {
			// A partial line where a header should be is most often a
			// body that followed the headers without the blank line.
			var pe *ProtocolError
			if errors.As(err, &pe) && pe.Got != "" {
				pe.Mistake = NoBlankLine
			}
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if len(r.msg.Header) >= MaxHeaderFields {
			return nil, protoErr(hr.line, 0, "at most "+strconv.Itoa(MaxHeaderFields)+" header lines", line, nil)
		}
		name, value, err := parseHeaderLine(line, hr.line)
		if err != nil {
			if line[0] != ' ' && line[0] != '\t' {
				err.(*ProtocolError).Mistake = NoBlankLine
			}
			return nil, err
		}
		switch {
		case strings.EqualFold(name, "Content-Length"):
			contentLength = append(contentLength, value)
		case strings.EqualFold(name, "Transfer-Encoding"):
			transferEncoding = append(transferEncoding, value)
		case strings.EqualFold(name, "Connection"):
			for _, tok := range strings.Split(value, ",") {
				if strings.EqualFold(strings.TrimSpace(tok), "close") {
					r.close = true
				}
			}
		case strings.EqualFold(name, "Keep-Alive"), isReserved(name):
		default:
			r.msg.Header = append(r.msg.Header, Field{Name: name, Value: value})
		}
	}
	if err := r.decideFraming(contentLength, transferEncoding, hr.line); err != nil {
		return nil, err
	}
	switch r.framing {
	case framingSized:
		r.msg.Length = r.length
	case framingNone:
		r.msg.Length = 0
	default:
		r.msg.Length = -1
	}
	return r, nil
}

func parseStatusLine(line []byte) (int, string, error) {
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, "", protoErr(1, 0, wantStatus, line, nil).as(BadStatusLine)
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, "", protoErr(1, 0, wantStatus, line, nil).as(BadStatusLine)
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 {
		return 0, "", protoErr(1, 0, "a final status (200-999); informational replies are not part of the protocol", line, nil)
	}
	var reason string
	if len(line) > 13 {
		reason = string(line[13:])
		if !field.Value(reason) {
			return 0, "", protoErr(1, 0, "a reason phrase without control characters", line, nil)
		}
	}
	return code, reason, nil
}

func parseHeaderLine(line []byte, n int) (name, value string, err error) {
	const want = `a header line "Name: value"`
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", protoErr(n, 0, want+" (folded continuation lines are not allowed)", line, nil)
	}
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", "", protoErr(n, 0, want, line, nil)
	}
	name = string(line[:i])
	if !field.Token(name) {
		return "", "", protoErr(n, 0, want+" whose name is a token", line, nil)
	}
	v := bytes.Trim(line[i+1:], " \t")
	value = string(v)
	if !field.Value(value) {
		return "", "", protoErr(n, 0, want+" whose value has no control characters", line, nil)
	}
	return name, value, nil
}

func (r *replyHead) decideFraming(contentLength, transferEncoding []string, line int) error {
	chunked := false
	for _, te := range transferEncoding {
		for _, tok := range strings.Split(te, ",") {
			switch tok = strings.TrimSpace(tok); {
			case strings.EqualFold(tok, "chunked") && !chunked:
				chunked = true
			case strings.EqualFold(tok, "identity"), tok == "":
			default:
				return protoErr(line, 0, `"Transfer-Encoding: chunked" as the only transfer coding`, []byte("Transfer-Encoding: "+te), nil)
			}
		}
	}
	length := int64(-1)
	for _, cl := range contentLength {
		for _, v := range strings.Split(cl, ",") {
			v = strings.TrimSpace(v)
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || v[0] == '+' {
				return protoErr(line, 0, "a Content-Length of decimal digits", []byte("Content-Length: "+cl), nil)
			}
			if length >= 0 && n != length {
				return protoErr(line, 0, "one Content-Length value", []byte("Content-Length: "+strings.Join(contentLength, ", ")), nil)
			}
			length = n
		}
	}
	switch {
	case !BodyAllowed(r.msg.Status):
		r.framing = framingNone
	case chunked:
		// With both, chunked wins (RFC 9112, 6.3). Node sends both when a
		// transform sets Content-Length on a message that came chunked,
		// since the npm subprocess-middleware copies the request's
		// Transfer-Encoding header into its response.
		r.framing = framingChunked
	case length >= 0:
		r.framing, r.length = framingSized, length
	case r.close:
		r.framing = framingEOF
	default:
		return protoErr(line, 0, "a framed body: Content-Length, Transfer-Encoding: chunked, or Connection: close with the body until EOF", []byte("end of head"), nil).as(NoFraming)
	}
	return nil
}

// bodyReader reads one reply body, enforcing its framing. It returns io.EOF
// exactly when the body is complete, and a *ProtocolError (wrapping
// io.ErrUnexpectedEOF when the output just stopped) otherwise.
type bodyReader struct {
	br       *bufio.Reader
	framing  framing
	remain   int64 // sized: bytes left; chunked: bytes left in the chunk
	offset   int64 // body bytes delivered
	needCRLF bool  // chunked: the CRLF after chunk data is due
	done     bool
	err      error
}

func newBodyReader(br *bufio.Reader, h *replyHead) *bodyReader {
	b := &bodyReader{br: br, framing: h.framing, remain: h.length}
	if h.framing == framingNone || (h.framing == framingSized && h.length == 0) {
		b.done = true
	}
	if h.framing == framingChunked {
		b.remain = 0
	}
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.framing == framingChunked && b.remain == 0 {
		if err := b.nextChunk(); err != nil {
			if err != io.EOF {
				b.err = err
			}
			return 0, err
		}
	}
	if b.framing != framingEOF && int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.offset += int64(n)
	if b.framing == framingEOF {
		if err == io.EOF {
			b.done = true
		}
		return n, err
	}
	b.remain -= int64(n)
	if err == io.EOF {
		if b.framing == framingSized {
			err = shortBody(b.offset, b.remain)
		} else {
			err = protoErr(0, b.offset, strconv.FormatInt(b.remain, 10)+" more bytes of the chunk", nil, io.ErrUnexpectedEOF)
		}
	}
	if err != nil {
		b.err = err
		return n, err
	}
	if b.remain == 0 {
		switch b.framing {
		case framingSized:
			b.done = true
			return n, io.EOF
		case framingChunked:
			b.needCRLF = true
		}
	}
	return n, nil
}

// nextChunk reads up to the next chunk's data, or through the trailer after
// the last chunk (then it returns io.EOF).
func (b *bodyReader) nextChunk() error {
	hr := headReader{br: b.br, line: 1} // line > 1: EOF is never "clean" here
	for b.remain == 0 {
		if b.needCRLF {
			line, err := hr.next("CRLF after chunk data")
			if err != nil || len(line) != 0 {
				return b.bodyErr("CRLF after chunk data", line, err)
			}
			b.needCRLF = false
		}
		line, err := hr.next("a chunk-size line")
		if err != nil {
			return b.bodyErr("a chunk-size line", line, err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return b.bodyErr("a chunk-size line (hex digits)", line, nil)
		}
		if size == 0 {
			for n := 0; ; n++ {
				line, err := hr.next("a trailer line or the blank line ending the body")
				if err != nil || n > MaxHeaderFields {
					return b.bodyErr("a trailer line or the blank line ending the body", line, err)
				}
				if len(line) == 0 {
					b.done = true
					return io.EOF
				}
			}
		}
		b.remain = size
	}
	return nil
}

func (b *bodyReader) bodyErr(want string, got []byte, err error) error {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		pe.Line, pe.Offset, pe.Want = 0, b.offset, want
		return pe
	}
	if err != nil {
		return err
	}
	return protoErr(0, b.offset, want, got, nil)
}

func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// shortBody is the fault of a reply whose output ended before the body its
// Content-Length announced.
func shortBody(offset, remain int64) *ProtocolError {
	return protoErr(0, offset, strconv.FormatInt(remain, 10)+" more body bytes (Content-Length)", nil, io.ErrUnexpectedEOF).as(BodyShort)
}
