package httpmsg

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// Chunked bodies: a chunk-size line may be at most this long, and the bytes
// that are not data (size lines, extensions, CRLFs) may exceed 16 bytes per
// chunk plus twice the data by at most maxExcess, which stops a flood of
// one-byte chunks with long extensions.
const (
	maxChunkLine = 4096
	maxExcess    = 16 << 10
)

// Body reads one body from the bufio.Reader its head was read from,
// enforcing the head's framing. It returns io.EOF exactly when the body is
// complete (after the trailer section of a chunked body, which is checked
// and dropped), and an *Error, wrapping io.ErrUnexpectedEOF when the input
// just stopped, otherwise. Errors are sticky. A Body is reused with Reset.
type Body struct {
	br       *bufio.Reader
	framing  Framing
	remain   int64 // Sized: bytes left; Chunked: bytes left in the chunk
	offset   int64 // body bytes delivered
	excess   int64
	limits   Limits
	fold     FoldPolicy
	needCRLF bool // Chunked: the CRLF after chunk data is due
	done     bool
	err      error
}

// Reset makes b read the body that h frames from br.
func (b *Body) Reset(br *bufio.Reader, h *Head) {
	*b = Body{br: br, framing: h.Framing, limits: h.limits.withDefaults(), fold: h.fold}
	switch h.Framing {
	case None:
		b.done = true
	case Sized:
		b.remain = h.Length
		b.done = h.Length == 0
	}
}

// Framing is the framing of the body.
func (b *Body) Framing() Framing { return b.framing }

// Remaining is the number of body bytes still due for a Sized body.
func (b *Body) Remaining() int64 { return b.remain }

// Offset is the number of body bytes delivered so far.
func (b *Body) Offset() int64 { return b.offset }

// Done reports whether the body was read to its end.
func (b *Body) Done() bool { return b.done }

// Err is the sticky error, if any.
func (b *Body) Err() error { return b.err }

// Fail makes err the sticky error of every later Read.
func (b *Body) Fail(err error) { b.err = err }

// Advance accounts for n bytes of a Sized body moved past Read (spliced
// straight from the file under br, or taken from br's buffer).
func (b *Body) Advance(n int64) {
	b.remain -= n
	b.offset += n
	if b.remain == 0 && b.framing == Sized {
		b.done = true
	}
}

// ShortBody is the error of a Sized body that ended remain bytes early,
// after offset bytes.
func ShortBody(offset, remain int64) *Error {
	e := newError(0, offset, strconv.FormatInt(remain, 10)+" more body bytes (Content-Length)", nil, io.ErrUnexpectedEOF)
	e.Fault = FaultShortBody
	return e
}

func (b *Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.framing == Chunked && b.remain == 0 {
		if err := b.nextChunk(); err != nil {
			if err != io.EOF {
				b.err = err
			}
			return 0, err
		}
	}
	if b.framing != UntilEOF && int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.offset += int64(n)
	if b.framing == UntilEOF {
		if err == io.EOF {
			b.done = true
		}
		return n, err
	}
	b.remain -= int64(n)
	if err == io.EOF {
		if b.framing == Sized {
			err = ShortBody(b.offset, b.remain)
		} else {
			err = newError(0, b.offset, strconv.FormatInt(b.remain, 10)+" more bytes of the chunk", nil, io.ErrUnexpectedEOF)
		}
	}
	if err != nil {
		b.err = err
		return n, err
	}
	if b.remain == 0 {
		switch b.framing {
		case Sized:
			b.done = true
			return n, io.EOF
		case Chunked:
			b.needCRLF = true
		}
	}
	return n, nil
}

// nextChunk reads up to the next chunk's data, or through the trailer
// section after the last chunk (then it returns io.EOF).
func (b *Body) nextChunk() error {
	for b.remain == 0 {
		if b.needCRLF {
			line, err := b.chunkLine("CRLF after chunk data")
			if err != nil {
				return err
			}
			if len(line) != 0 {
				return newError(0, b.offset, "CRLF after chunk data", line, nil)
			}
			b.needCRLF = false
		}
		line, err := b.chunkLine("a chunk-size line")
		if err != nil {
			return err
		}
		b.excess += int64(len(line)) + 2
		size, ok := parseChunkSize(line)
		if !ok {
			return newError(0, b.offset, "a chunk-size line (hex digits)", line, nil)
		}
		b.excess = max(b.excess-16-2*size, 0)
		if b.excess > maxExcess {
			return newError(0, b.offset, "chunks with less overhead (size lines and extensions) per byte of data", line, ErrTooLarge)
		}
		if size == 0 {
			return b.trailer()
		}
		b.remain = size
	}
	return nil
}

// chunkLine reads one line of the chunked framing, which must end in CRLF
// with no other CR (a bare LF is refused here, unlike in a head: RFC 9112
// errata 7633).
func (b *Body) chunkLine(want string) ([]byte, error) {
	l, err := b.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull || len(l) > maxChunkLine+2:
		return nil, newError(0, b.offset, want+" shorter than "+strconv.Itoa(maxChunkLine)+" bytes", l, ErrTooLarge)
	case err == io.EOF:
		return nil, newError(0, b.offset, want, l, io.ErrUnexpectedEOF)
	case err != nil:
		return nil, newError(0, b.offset, want, l, err)
	}
	if len(l) < 2 || l[len(l)-2] != '\r' || bytes.IndexByte(l[:len(l)-2], '\r') >= 0 {
		return nil, newError(0, b.offset, want+" ending in CRLF", l, nil)
	}
	return l[:len(l)-2], nil
}

// trailer reads and checks the trailer section, bounded as a head is. Its
// lines are field lines: a bare LF ends one, as in a head, and obs-fold is
// treated as the head's Options said.
func (b *Body) trailer() error {
	const want = "a trailer line or the blank line ending the body"
	r := lineReader{br: b.br, line: 1, budget: b.limits.HeadBytes}
	for n := 0; ; n++ {
		line, err := r.next(want, false)
		if err != nil {
			if e, ok := err.(*Error); ok {
				e.Line, e.Offset = 0, b.offset
			}
			return err
		}
		if len(line) == 0 {
			// The CRLF that ends the chunked body is framing, not a field
			// line: a bare LF is refused here as in a chunk-size line.
			if r.bareLF {
				return newError(0, b.offset, "CRLF ending the chunked body", []byte("\n"), nil)
			}
			b.done = true
			return io.EOF
		}
		if n >= b.limits.Fields {
			return newError(0, b.offset, "a trailer section of at most "+strconv.Itoa(b.limits.Fields)+" lines", line, ErrTooLarge)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if b.fold != JoinFold || n == 0 || !validValueBytes(line) {
				return newError(0, b.offset, want, line, nil)
			}
			continue
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || !validNameBytes(line[:i]) || !validValueBytes(line[i+1:]) {
			return newError(0, b.offset, want, line, nil)
		}
	}
}

// parseChunkSize parses the hex size before any extension, as net/http
// does: trailing whitespace is allowed only after the extension is cut.
func parseChunkSize(line []byte) (int64, bool) {
	line = bytes.TrimRight(line, " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	if n > 1<<62 {
		return 0, false
	}
	return int64(n), true
}

// Discard reads the rest of the body and drops it.
func (b *Body) Discard() error {
	_, err := io.Copy(io.Discard, b)
	return err
}
