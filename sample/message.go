package sample

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strconv"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/internal/field"
)

// Field is one header line, kept in order with its original case.
type Field struct{ Name, Value string }

// Message is one HTTP-framed message of the pipe protocol, in either direction.
type Message struct {
	Status int
	Reason string
	Header []Field
	// Length of Body in bytes, or -1 when it is sent chunked (or, on input,
	// delimited by the end of the stream).
	Length int64
	// Body is nil for a message without a body (1xx, 204, 304).
	Body io.Reader
	// Last is set on input when the sender said Connection: close: the body
	// runs to the end of the stream and no message follows.
	Last bool
	// Seq numbers the messages a process has read, from 1.
	Seq int
}

// Get returns the first value of the header name, or "".
func (m *Message) Get(name string) string {
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Set replaces every field called name by one, or appends it.
func (m *Message) Set(name, value string) {
	m.Del(name)
	m.Header = append(m.Header, Field{name, value})
}

// Del removes every field called name.
func (m *Message) Del(name string) {
	out := m.Header[:0]
	for _, f := range m.Header {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	m.Header = out
}

// bodyless reports the statuses that never carry a body.
func bodyless(status int) bool {
	return status < 200 || status == 204 || status == 304
}

// maxHeaderBytes bounds one message's head, so a runaway sender cannot make
// the transform allocate without limit.
const maxHeaderBytes = 1 << 20

// ReadMessage reads the next message from r. It returns io.EOF when r ends
// cleanly between messages. The caller must read Body to its end before
// reading the next message, since both come from the same stream.
func ReadMessage(r *bufio.Reader) (*Message, error) {
	line, err := readLine(r)
	if err != nil {
		if err == io.EOF && line == "" {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read status line: %w", noEOF(err))
	}
	m := &Message{Length: -1}
	proto, rest, _ := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 {
		return nil, fmt.Errorf("bad status line %q: want HTTP/1.1 CODE REASON", line)
	}
	if m.Status, err = strconv.Atoi(code); err != nil || m.Status < 100 {
		return nil, fmt.Errorf("bad status code in %q", line)
	}
	if !field.Value(reason) {
		return nil, fmt.Errorf("bad reason phrase in %q", line)
	}
	m.Reason = reason

	size := len(line)
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, fmt.Errorf("read header: %w", noEOF(err))
		}
		if line == "" {
			break
		}
		if size += len(line); size > maxHeaderBytes {
			return nil, fmt.Errorf("header larger than %d bytes", maxHeaderBytes)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || !field.Value(line) {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		m.Header = append(m.Header, Field{name, strings.TrimSpace(value)})
	}
	return m, frameBody(m, r)
}

// frameBody decides how the body ends, from the headers, and strips the
// framing headers: whoever writes the message next frames it again.
func frameBody(m *Message, r *bufio.Reader) error {
	te, cl := m.Get("Transfer-Encoding"), m.Get("Content-Length")
	m.Last = strings.EqualFold(m.Get("Connection"), "close")
	m.Del("Transfer-Encoding")
	m.Del("Content-Length")
	m.Del("Connection")
	switch {
	case bodyless(m.Status):
		m.Length = 0
	case strings.EqualFold(te, "chunked"):
		m.Body = &chunkedBody{r: r, cr: httputil.NewChunkedReader(r)}
	case te != "":
		return fmt.Errorf("unsupported Transfer-Encoding %q", te)
	case cl != "":
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad Content-Length %q", cl)
		}
		m.Length = n
		m.Body = &exactBody{r: io.LimitReader(r, n), left: n}
	case m.Last:
		m.Body = r
	default:
		return errors.New("message has no Content-Length, no chunked encoding and no Connection: close, so its end is unknown")
	}
	return nil
}

// readLine reads one CRLF- (or LF-) terminated line without its terminator.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return line, err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// exactBody turns a short Content-Length body into an error instead of a
// silent truncation.
type exactBody struct {
	r    io.Reader
	left int64
}

func (b *exactBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		return n, fmt.Errorf("body ended %d bytes short of its Content-Length: %w", b.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

// chunkedBody reads a chunked body and, at its end, the trailer section, so
// the stream is positioned at the next message.
type chunkedBody struct {
	r    *bufio.Reader
	cr   io.Reader
	done bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.cr.Read(p)
	if err == io.EOF {
		for {
			line, lerr := readLine(b.r)
			if lerr != nil {
				return n, fmt.Errorf("read chunked trailer: %w", noEOF(lerr))
			}
			if line == "" {
				break
			}
		}
		b.done = true
	}
	return n, err
}

// WriteMessage writes m to w: the status line, the headers, and the body
// framed by Content-Length when m.Length is known, chunked otherwise. It
// flushes w, so the bridge sees the whole message at once.
func WriteMessage(w *bufio.Writer, m *Message) error {
	reason := m.Reason
	if reason == "" {
		reason = "Status"
	}
	fmt.Fprintf(w, "HTTP/1.1 %03d %s\r\n", m.Status, reason)
	for _, f := range m.Header {
		if strings.ContainsAny(f.Name+f.Value, "\r\n") {
			return fmt.Errorf("header %q contains a line break", f.Name)
		}
		fmt.Fprintf(w, "%s: %s\r\n", f.Name, f.Value)
	}
	switch {
	case bodyless(m.Status):
		w.WriteString("\r\n")
	case m.Length >= 0:
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", m.Length)
		if m.Body != nil {
			n, err := io.CopyN(w, m.Body, m.Length)
			if err != nil {
				return fmt.Errorf("write body (%d of %d bytes): %w", n, m.Length, noEOF(err))
			}
		}
	default:
		w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(w)
		if m.Body != nil {
			if _, err := io.Copy(cw, m.Body); err != nil {
				return fmt.Errorf("write chunked body: %w", err)
			}
		}
		cw.Close()
		w.WriteString("\r\n") // no trailers
	}
	return w.Flush()
}
