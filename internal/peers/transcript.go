package peers

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
)

// Transcripts are what a web server sent a FastCGI application, kept in
// testdata so that tests replay them where the server is not installed.
// The file format is the one fcgi/testdata/peers uses: "FCGIPEER1\n", then
// per connection a 4-byte big-endian length and the bytes the peer sent on
// it, in accept order.
const transcriptMagic = "FCGIPEER1\n"

// Recorder wraps a listener and keeps every byte each accepted connection
// receives from the peer, in accept order.
type Recorder struct {
	net.Listener
	mu    sync.Mutex
	conns []*bytes.Buffer
}

// NewRecorder records what l's connections receive.
func NewRecorder(l net.Listener) *Recorder { return &Recorder{Listener: l} }

// Accept accepts a connection whose reads are recorded.
func (r *Recorder) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err != nil {
		return nil, err
	}
	buf := &bytes.Buffer{}
	r.mu.Lock()
	r.conns = append(r.conns, buf)
	r.mu.Unlock()
	return &recordingConn{Conn: c, mu: &r.mu, buf: buf}, nil
}

// Transcript returns a copy of what each connection received so far.
func (r *Recorder) Transcript() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.conns))
	for i, b := range r.conns {
		out[i] = bytes.Clone(b.Bytes())
	}
	return out
}

type recordingConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.buf.Write(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// CloseWrite keeps a server's graceful close working through the wrapper.
func (c *recordingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// WriteTranscript writes conns (empty ones left out) to path.
func WriteTranscript(path string, conns [][]byte) error {
	var b bytes.Buffer
	b.WriteString(transcriptMagic)
	for _, c := range conns {
		if len(c) == 0 {
			continue
		}
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(c)))
		b.Write(n[:])
		b.Write(c)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ReadTranscript reads a file WriteTranscript wrote.
func ReadTranscript(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(data, []byte(transcriptMagic)) {
		return nil, fmt.Errorf("%s: not a peer transcript", path)
	}
	data = data[len(transcriptMagic):]
	var conns [][]byte
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, fmt.Errorf("%s: truncated", path)
		}
		n := binary.BigEndian.Uint32(data)
		data = data[4:]
		if uint32(len(data)) < n {
			return nil, fmt.Errorf("%s: truncated", path)
		}
		conns = append(conns, data[:n])
		data = data[n:]
	}
	return conns, nil
}
