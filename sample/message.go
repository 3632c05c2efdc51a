package sample

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Field is one header line, kept in order with its original case.
type Field = httpmsg.Field

// Message is one HTTP-framed message of the pipe protocol, in either direction.
type Message struct {
	Status int
	Reason string
	Header httpmsg.Header
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
func (m *Message) Get(name string) string { return m.Header.Get(name) }

// Set replaces every field called name by one, appended at the end.
func (m *Message) Set(name, value string) {
	m.Header.Del(name)
	m.Header.Add(name, value)
}

// Del removes every field called name.
func (m *Message) Del(name string) { m.Header.Del(name) }

// readOptions is how a message is read: every body framed (the process
// must know where a message ends to answer it), a head of at most 1 MiB so
// that a runaway sender cannot make the transform allocate without limit.
var readOptions = httpmsg.Options{
	Syntax:         httpmsg.StatusLine,
	Limits:         httpmsg.Limits{HeadBytes: 1 << 20, Fields: 4096},
	RequireFraming: true,
}

// ReadMessage reads the next message from r. It returns io.EOF when r ends
// cleanly between messages. The caller must read Body to its end before
// reading the next message, since both come from the same stream.
func ReadMessage(r *bufio.Reader) (*Message, error) {
	var h httpmsg.Head
	if err := httpmsg.ReadHead(r, &readOptions, &h); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, explain(err)
	}
	m := &Message{Status: h.Status, Reason: h.Reason, Header: h.Header, Length: h.Length, Last: h.Close}
	// Whoever writes the message next frames it again.
	m.Header.DelFunc(httpmsg.IsFraming)
	if h.Framing != httpmsg.None {
		b := &body{}
		b.Reset(r, &h)
		m.Body = b
	}
	return m, nil
}

// faultWords name each kind of protocol fault in a transform author's words.
var faultWords = map[httpmsg.Fault]string{
	httpmsg.FaultOther:      "bad message",
	httpmsg.FaultStatusLine: "bad status line, want HTTP/1.1 CODE REASON",
	httpmsg.FaultFieldLine:  "bad header line",
	httpmsg.FaultNoFraming:  "message has no Content-Length, no chunked encoding and no Connection: close, so its end is unknown",
	httpmsg.FaultShortBody:  "body ended short of its Content-Length",
	httpmsg.FaultLength:     "bad Content-Length",
	httpmsg.FaultCoding:     "unsupported Transfer-Encoding",
}

// explain puts the protocol fault into a transform author's words.
func explain(err error) error {
	var e *httpmsg.Error
	if !errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", faultWords[e.Fault], err)
}

// body reads a message body and, at the end of a chunked one, its trailer
// section, so the stream is positioned at the next message.
type body struct{ httpmsg.Body }

func (b *body) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if err != nil && err != io.EOF {
		err = explain(err)
	}
	return n, err
}

// WriteMessage writes m to w: the status line, the headers, and the body
// framed by Content-Length when m.Length is known, chunked otherwise. It
// flushes w, so the bridge sees the whole message at once.
func WriteMessage(w *bufio.Writer, m *Message) error {
	head, err := httpmsg.AppendHead(w.AvailableBuffer(), m.Status, m.Reason, m.Header, nil)
	if err != nil {
		return err
	}
	w.Write(head)
	switch {
	case !httpmsg.BodyAllowed(m.Status):
		w.WriteString("\r\n")
	case m.Length >= 0:
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", m.Length)
		if m.Body != nil {
			n, err := io.CopyN(w, m.Body, m.Length)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("write body (%d of %d bytes): %w", n, m.Length, err)
			}
		}
	default:
		w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		if m.Body != nil {
			if _, err := io.Copy(chunkWriter{w}, m.Body); err != nil {
				return fmt.Errorf("write chunked body: %w", err)
			}
		}
		w.WriteString(httpmsg.LastChunk)
	}
	return w.Flush()
}

// chunkWriter writes each Write as one chunk.
type chunkWriter struct{ w *bufio.Writer }

func (c chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.w.Write(httpmsg.AppendChunkSize(c.w.AvailableBuffer(), len(p)))
	c.w.Write(p)
	_, err := c.w.WriteString("\r\n")
	return len(p), err
}
