package source

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// dataSource serves the FILTER role: the file the web server sends on
// FCGI_DATA.
type dataSource struct{ contentType string }

// NewData returns the FILTER role's source. The Content-Type is taken from
// the param FCGI_DATA_CONTENT_TYPE when the client sends one, else from the
// extension of the filtered file's name (SCRIPT_FILENAME, PATH_TRANSLATED,
// SCRIPT_NAME), else contentType.
func NewData(contentType string) Source { return &dataSource{contentType: contentType} }

func (s *dataSource) Name() string { return "data" }
func (s *dataSource) Close() error { return nil }

func (s *dataSource) Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	// The spec has the application read all of STDIN before FCGI_DATA; the
	// request information lives in params, so STDIN is drained unread.
	if r.Stdin != nil {
		if _, err := io.Copy(io.Discard, r.Stdin); err != nil {
			return nil, fmt.Errorf("FILTER request: read stdin: %w", err)
		}
	}
	m := &httpmsg.Message{Status: http.StatusOK, Length: -1}
	if !r.DataLastMod.IsZero() {
		mod := r.DataLastMod.UTC()
		m.Header.Add("Last-Modified", mod.Format(http.TimeFormat))
		// The client's copy is current: answer from FCGI_DATA_LAST_MOD
		// without reading the data (the fcgi server discards it).
		if ims, err := http.ParseTime(r.Params["HTTP_IF_MODIFIED_SINCE"]); err == nil && !mod.After(ims) {
			m.Status = http.StatusNotModified
			return m, nil
		}
	}
	if r.DataLength >= 0 {
		m.Length = r.DataLength
	}
	m.Header.Add("Content-Type", s.typeFor(r.Params))
	data := r.Data
	if data == nil {
		data = strings.NewReader("")
	}
	m.Body = readCloser(data)
	if m.Length >= 0 {
		m.Body = exactBody(data, m.Length, "FCGI_DATA")
	}
	return m, nil
}

func (s *dataSource) typeFor(params map[string]string) string {
	if ct := params["FCGI_DATA_CONTENT_TYPE"]; ct != "" {
		return ct
	}
	for _, p := range []string{"SCRIPT_FILENAME", "PATH_TRANSLATED", "SCRIPT_NAME"} {
		if ext := path.Ext(params[p]); ext != "" {
			if ct := mime.TypeByExtension(ext); ct != "" {
				return ct
			}
		}
	}
	return s.contentType
}

// bodySource serves the request body as the content.
type bodySource struct {
	name        string
	contentType string
}

// NewBody returns a source whose content is the request body (STDIN), typed
// by CONTENT_TYPE or contentType when the request has none.
func NewBody(name, contentType string) Source {
	return &bodySource{name: name, contentType: contentType}
}

func (s *bodySource) Name() string { return s.name }
func (s *bodySource) Close() error { return nil }

func (s *bodySource) Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	m := &httpmsg.Message{Status: http.StatusOK, Length: -1}
	ct := r.Params["CONTENT_TYPE"]
	if ct == "" {
		ct = s.contentType
	}
	m.Header.Add("Content-Type", ct)
	stdin := r.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	if r.Spooled {
		// The length is known and true; the spooled reader is passed as it
		// is, so a file-backed body can be spliced into the transform.
		m.Length = r.ContentLength
		m.Body = readCloser(stdin)
		return m, nil
	}
	// CONTENT_LENGTH is advisory (nginx keeps it for de-chunked bodies,
	// Apache drops it): trust it only for plain bodies, and then hold the
	// stream to it so the length sent to the transform is true.
	if r.ContentLength >= 0 && !strings.Contains(strings.ToLower(r.Params["HTTP_TRANSFER_ENCODING"]), "chunked") {
		m.Length = r.ContentLength
		m.Body = exactBody(stdin, r.ContentLength, "request body")
		return m, nil
	}
	m.Body = readCloser(stdin)
	return m, nil
}

// requestSource describes the request for an AUTHORIZER transform: status
// 200, the request's headers, no body. Method, URL and chosen params travel
// as the request-describing headers the filter adds.
type requestSource struct{}

// NewRequestDescription returns the AUTHORIZER role's source.
func NewRequestDescription() Source { return requestSource{} }

func (requestSource) Name() string { return "request" }
func (requestSource) Close() error { return nil }

func (requestSource) Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	if r.Stdin != nil {
		// mod_authnz_fcgi sends none; anything sent is not part of the decision.
		if _, err := io.Copy(io.Discard, r.Stdin); err != nil {
			return nil, fmt.Errorf("AUTHORIZER request: read stdin: %w", err)
		}
	}
	h := RequestHeader(r.Params)
	h.Del("Content-Length")
	return &httpmsg.Message{Status: http.StatusOK, Header: h, Length: 0, Body: io.NopCloser(strings.NewReader(""))}, nil
}

// exactBody reads exactly n bytes from r: a short stream is an error
// (io.ErrUnexpectedEOF) instead of a silently shorter body, and bytes beyond
// n are not passed on, so a declared length is always true.
func exactBody(r io.Reader, n int64, what string) io.ReadCloser {
	return &exactReader{r: r, left: n, what: what}
}

type exactReader struct {
	r    io.Reader
	left int64
	what string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, fmt.Errorf("%s ended %d bytes short of its declared length: %w", e.what, e.left, io.ErrUnexpectedEOF)
		}
		if n > 0 {
			err = nil
		}
	}
	if e.left == 0 && err == nil {
		return n, nil
	}
	return n, err
}

func (e *exactReader) Close() error { return closeReader(e.r) }

// readCloser passes r's own Close on. The request's streams have one that
// stops a Read blocked on a stalled web server, which is how an aborted
// exchange frees its transform without waiting for the peer.
func readCloser(r io.Reader) io.ReadCloser {
	if rc, ok := r.(io.ReadCloser); ok {
		return rc
	}
	return io.NopCloser(r)
}

func closeReader(r io.Reader) error {
	if c, ok := r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
