package filter

import (
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Buffers. One write buffer per exchange writer and one read buffer per
// exchange reader; nothing else grows with the body.
const (
	// ioBufferSize is the copy buffer. 256 KiB measured 15-25% faster than
	// 64 KiB for a 1 GiB body through cat (BenchmarkThroughput1GiB): the
	// kernel fills the pipe again as soon as cat drains it, without a
	// round through the scheduler. It is pooled and only held while an
	// exchange writes or copies, so it does not grow with body size.
	ioBufferSize = 256 << 10
	// chunkRoom is kept in front of the data in the write buffer for the
	// chunk-size line, so that a chunk goes out in one write.
	chunkRoom = 10 // 8 hex digits + CRLF
	// spliceMin is the remaining body size from which splice(2) is used
	// instead of read+write. Below it the extra syscalls and the readiness
	// polling cost more than the copy (see BenchmarkSplice).
	spliceMin = 32 << 10
)

var writeBuffers = sync.Pool{New: func() any { b := make([]byte, chunkRoom+ioBufferSize+2); return &b }}

// appendHead appends the message head a transform reads: the status line,
// m's headers in order (without framing and reserved ones), the
// request-describing headers, the framing header and the blank line.
func appendHead(dst []byte, m *Message, req *RequestInfo) ([]byte, error) {
	dst, err := httpmsg.AppendHead(dst, m.Status, m.Reason, m.Header, func(name string) bool {
		return httpmsg.IsFraming(name) || isReserved(name)
	})
	if err != nil {
		return dst, err
	}
	dst, err = appendRequestHeaders(dst, req)
	if err != nil {
		return dst, err
	}
	if n := bodyLength(m); n > 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, n, 10)
		dst = append(dst, "\r\n"...)
	} else {
		// An empty body, also that of a 204 or 304, is chunked with only
		// the last chunk: the npm subprocess-middleware parser completes a
		// "Content-Length: 0" message only when the next one arrives (a
		// deadlock), and reads a body without framing until EOF. Transforms
		// must follow the framing headers, not infer a body from the status.
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(dst, "\r\n"...), nil
}

const lastChunk = httpmsg.LastChunk

// bodyLength is the length the head announces: 0 when there is no body.
func bodyLength(m *Message) int64 {
	if m.Body == nil || !BodyAllowed(m.Status) {
		return 0
	}
	return m.Length
}

// writeFramed writes head, built by appendHead at the start of buf, and m's
// body framed as head announces.
func writeFramed(w io.Writer, head []byte, m *Message, buf []byte) error {
	if len(head) > len(buf)-chunkRoom-2 || &head[0] != &buf[0] {
		// A huge head does not fit the buffer; send it on its own.
		if _, err := w.Write(head); err != nil {
			return err
		}
		head = buf[:0]
	}
	n := bodyLength(m)
	switch {
	case n == 0:
		_, err := w.Write(append(head, lastChunk...))
		return err
	case n > 0:
		return writeSized(w, head, m.Body, n, buf)
	default:
		return writeChunked(w, head, m.Body, buf)
	}
}

// writeSized writes head and then exactly n body bytes. The first read of
// the body shares a write with the head, so a small message costs one
// syscall.
func writeSized(w io.Writer, head []byte, body io.Reader, n int64, buf []byte) error {
	h := len(head)
	k, err := io.ReadFull(body, buf[h:h+int(min(n, int64(len(buf)-h)))])
	if _, werr := w.Write(buf[:h+k]); werr != nil {
		return werr
	}
	n -= int64(k)
	if err != nil {
		return shortInput(err)
	}
	if n == 0 {
		return nil
	}
	if f, ok := w.(*os.File); ok && n >= spliceMin {
		if done, handled, err := spliceTo(f, body, n); handled {
			if err == nil && done < n {
				err = errShortInput
			}
			return err
		}
	}
	for n > 0 {
		k, err := io.ReadFull(body, buf[:min(n, int64(len(buf)))])
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
			n -= int64(k)
		}
		if err != nil && n > 0 {
			return shortInput(err)
		}
	}
	return nil
}

func shortInput(err error) error {
	// Identity, not errors.Is: an earlier stage's *Error may wrap
	// io.ErrUnexpectedEOF and must reach the caller as it is.
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = errShortInput
	}
	return &inputError{err}
}

// writeChunked writes head and the body as chunks, one chunk per read of
// the body, each in one write together with its size line.
func writeChunked(w io.Writer, head []byte, body io.Reader, buf []byte) error {
	h := len(head)
	first := true
	for {
		data := buf[h+chunkRoom : len(buf)-2]
		k, rerr := body.Read(data)
		if rerr != nil && rerr != io.EOF {
			return &inputError{rerr}
		}
		start := h + chunkRoom
		end := start + k
		if k > 0 {
			var size [16]byte
			line := httpmsg.AppendChunkSize(size[:0], k)
			start -= len(line)
			copy(buf[start:], line)
			end += copy(buf[end:], "\r\n")
		}
		if first && h > 0 {
			// Move the head next to the first chunk.
			copy(buf[start-h:start], buf[:h])
			start -= h
			first = false
		}
		if rerr == io.EOF {
			// The last chunk rides with the data when it fits.
			if len(buf)-end >= 5 {
				end += copy(buf[end:], lastChunk)
				_, err := w.Write(buf[start:end])
				return err
			}
		}
		if end > start {
			if _, err := w.Write(buf[start:end]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			_, err := w.Write([]byte(lastChunk))
			return err
		}
		h = 0
	}
}
