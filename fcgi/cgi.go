package fcgi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// CGIResponse is the parsed output of a FastCGI responder: the status, the
// header block in order (without the Status line) and the body that follows.
type CGIResponse struct {
	Status int
	Reason string
	Header []Pair // in the order received; duplicates kept
	// Length is the Content-Length the application sent, -1 without one.
	Length int64
	Body   io.Reader
}

// Get returns the value of the first header named name (case-insensitive), or "".
func (r *CGIResponse) Get(name string) string {
	for _, p := range r.Header {
		if httpmsg.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// MaxCGIHeaderBytes is the header block size ReadCGIResponse accepts. nginx
// rejects blocks over its 4-8 KiB buffer, so a real application stays far
// below; the limit only stops a broken one from making us buffer without end.
const MaxCGIHeaderBytes = 64 << 10

// ErrCGIHeaderTooLarge is returned when the header block exceeds the limit.
var ErrCGIHeaderTooLarge = errors.New("fcgi: CGI header block too large")

// CGIError describes a malformed CGI header block.
type CGIError struct {
	Line   int    // 1-based line of the header block, 0 when not about one line
	Reason string // what is wrong
}

func (e *CGIError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("fcgi: malformed CGI response: header line %d: %s", e.Line, e.Reason)
	}
	return "fcgi: malformed CGI response: " + e.Reason
}

// ReadCGIResponse parses the CGI header block at the start of r (a
// responder's STDOUT) with the default size limit. See ReadCGIResponseLimit.
func ReadCGIResponse(r io.Reader) (*CGIResponse, error) {
	return ReadCGIResponseLimit(r, MaxCGIHeaderBytes)
}

// ReadCGIResponseLimit parses the CGI header block at the start of r with
// httpmsg's CGI syntax. Lines may end in CRLF or LF. The Status line is
// optional: without it the status is 200, or 302 when a Location header is
// present (what nginx and lighttpd do with a "local redirect"). The returned
// Body reads what follows the blank line, including bytes already buffered.
// maxHeader bounds the header block (<= 0 means MaxCGIHeaderBytes).
func ReadCGIResponseLimit(r io.Reader, maxHeader int) (*CGIResponse, error) {
	if maxHeader <= 0 {
		maxHeader = MaxCGIHeaderBytes
	}
	br := getReader(r, maxHeader)
	o := httpmsg.Options{Syntax: httpmsg.CGI, Limits: httpmsg.Limits{HeadBytes: maxHeader, Fields: maxHeader}}
	var h httpmsg.Head
	if err := httpmsg.ReadHead(br, &o, &h); err != nil {
		putReader(br, maxHeader)
		return nil, cgiError(err, maxHeader)
	}
	resp := &CGIResponse{Status: h.Status, Reason: h.Reason, Length: h.Length}
	if resp.Reason == "" {
		resp.Reason = http.StatusText(resp.Status)
	}
	if len(h.Header) > 0 {
		resp.Header = make([]Pair, len(h.Header))
		for i, f := range h.Header {
			resp.Header[i] = Pair{Name: f.Name, Value: f.Value}
		}
	}
	if br.Buffered() == 0 {
		putReader(br, maxHeader)
		resp.Body = r
	} else {
		resp.Body = &cgiBody{br: br, r: r, size: maxHeader}
	}
	return resp, nil
}

// cgiError turns a fault of the header block into a CGIError, or into
// ErrCGIHeaderTooLarge or the read error that ended the block.
func cgiError(err error, maxHeader int) error {
	var perr *httpmsg.Error
	switch {
	case errors.Is(err, httpmsg.ErrTooLarge):
		return fmt.Errorf("%w (over %d bytes)", ErrCGIHeaderTooLarge, maxHeader)
	case err == io.EOF:
		return &CGIError{Reason: "empty output (no header block)"}
	case !errors.As(err, &perr):
		return fmt.Errorf("fcgi: read CGI header block: %w", err)
	case perr.Err == io.ErrUnexpectedEOF:
		return &CGIError{Line: perr.Line, Reason: "output ended inside the header block: expected " + perr.Want}
	case perr.Err != nil:
		return fmt.Errorf("fcgi: read CGI header block: %w", err)
	}
	return &CGIError{Line: perr.Line, Reason: "expected " + perr.Want + ", got " + strconv.Quote(perr.Got)}
}

// Readers of the default size are pooled: a header block is parsed per
// request, and its reader goes back as soon as the body no longer needs
// the bytes it buffered.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, MaxCGIHeaderBytes) }}

func getReader(r io.Reader, size int) *bufio.Reader {
	if size != MaxCGIHeaderBytes {
		// A line may be as long as the whole block.
		return bufio.NewReaderSize(r, size)
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader, size int) {
	if size == MaxCGIHeaderBytes {
		br.Reset(nil)
		readers.Put(br)
	}
}

// cgiBody reads the body bytes buffered with the header block, then r.
type cgiBody struct {
	br   *bufio.Reader // nil once its bytes were read
	r    io.Reader
	size int
}

func (b *cgiBody) Read(p []byte) (int, error) {
	if b.br != nil {
		if b.br.Buffered() > 0 {
			return b.br.Read(p)
		}
		putReader(b.br, b.size)
		b.br = nil
	}
	return b.r.Read(p)
}
