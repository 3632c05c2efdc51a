package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// requestTemplate is everything needed to send the request, once or many
// times: params in order, and the body and data either in memory (replayed
// for each request) or, for a single request, streamed from their source.
type requestTemplate struct {
	role      fcgi.Role
	params    []fcgi.Pair
	body      []byte    // in memory; nil when streamed or absent
	bodyR     io.Reader // streamed body for a single request
	data      []byte
	dataR     io.Reader
	closeWith []io.Closer
}

func (t *requestTemplate) newRequest() *fcgi.ClientRequest {
	r := &fcgi.ClientRequest{Role: t.role, Params: t.params}
	switch {
	case t.bodyR != nil:
		r.Stdin = t.bodyR
	case t.body != nil:
		r.Stdin = bytes.NewReader(t.body)
	}
	switch {
	case t.dataR != nil:
		r.Data = t.dataR
	case t.data != nil:
		r.Data = bytes.NewReader(t.data)
	}
	return r
}

// Body lengths that are not a size.
const (
	noBody            = -1
	bodyUnknownLength = -2 // --stream from a pipe
)

func (t *requestTemplate) close() {
	for _, c := range t.closeWith {
		c.Close()
	}
}

// buildRequest works out the params: defaults from the URL, body and data,
// then --header and --param in order.
func buildRequest(o *options, stdin io.Reader) (*requestTemplate, error) {
	t := &requestTemplate{role: o.role}
	bodyLen := int64(noBody)
	if o.body != "" {
		r, size, err := openInput(o.body, stdin)
		if err != nil {
			return nil, fmt.Errorf("--body: %w", err)
		}
		// In load mode the body is replayed, and a body of unknown length
		// (a pipe) is read first so CONTENT_LENGTH can be true.
		if o.loadMode() || (size < 0 && !o.stream) {
			b, err := io.ReadAll(r)
			if err != nil {
				return nil, fmt.Errorf("--body %s: %w", o.body, err)
			}
			t.body, size = b, int64(len(b))
		} else {
			t.bodyR = r
		}
		if c, ok := r.(io.Closer); ok && r != stdin {
			t.closeWith = append(t.closeWith, c)
		}
		bodyLen = size
		if bodyLen < 0 {
			bodyLen = bodyUnknownLength
		}
	}
	var dataLen int64 = -1
	var dataMod int64
	if o.data != "" {
		f, err := os.Open(o.data)
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("--data: %w", err)
		}
		dataLen, dataMod = st.Size(), st.ModTime().Unix()
		if o.loadMode() {
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("--data %s: %w", o.data, err)
			}
			t.data = b
		} else {
			t.dataR = f
			t.closeWith = append(t.closeWith, f)
		}
	}

	ps, err := defaultParams(o, bodyLen)
	if err != nil {
		return nil, err
	}
	if dataLen >= 0 {
		ps = setParam(ps, "FCGI_DATA_LENGTH", strconv.FormatInt(dataLen, 10))
		ps = setParam(ps, "FCGI_DATA_LAST_MOD", strconv.FormatInt(dataMod, 10))
	}
	for _, h := range o.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("--header %q: want \"Name: value\"", h)
		}
		key := "HTTP_" + strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(name), "-", "_"))
		switch key {
		case "HTTP_CONTENT_TYPE":
			key = "CONTENT_TYPE"
		case "HTTP_CONTENT_LENGTH":
			key = "CONTENT_LENGTH"
		}
		ps = setParam(ps, key, strings.TrimSpace(value))
	}
	for _, p := range o.params {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--param %q: want NAME=VALUE", p)
		}
		ps = setParam(ps, name, value)
	}
	t.params = ps
	return t, nil
}

// openInput opens a body source: a file, or "-" for stdin. size is -1 when
// unknown (a pipe or terminal).
func openInput(name string, stdin io.Reader) (io.Reader, int64, error) {
	if name == "-" {
		if f, ok := stdin.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
				return f, st.Size(), nil
			}
		}
		return stdin, -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// defaultParams derives the CGI/1.1 meta-variables (RFC 3875) from the URL.
func defaultParams(o *options, bodyLen int64) ([]fcgi.Pair, error) {
	raw := o.url
	if raw == "" {
		raw = "/"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w", raw, err)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("URL %q: want http://host/path or /path", raw)
	}
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	method := strings.ToUpper(o.method)
	if method == "" {
		method = "GET"
		if bodyLen != noBody {
			method = "POST"
		}
	}
	requestURI := u.EscapedPath()
	if u.RawQuery != "" {
		requestURI += "?" + u.RawQuery
	}
	hostHeader := u.Host
	if hostHeader == "" {
		hostHeader = host
	}
	ps := []fcgi.Pair{
		{Name: "GATEWAY_INTERFACE", Value: "CGI/1.1"},
		{Name: "SERVER_SOFTWARE", Value: "fcgi-request"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "SERVER_NAME", Value: host},
		{Name: "SERVER_PORT", Value: port},
		{Name: "REQUEST_SCHEME", Value: scheme},
		{Name: "REQUEST_METHOD", Value: method},
		{Name: "REQUEST_URI", Value: requestURI},
		{Name: "SCRIPT_NAME", Value: u.Path},
		{Name: "QUERY_STRING", Value: u.RawQuery},
		{Name: "REMOTE_ADDR", Value: "127.0.0.1"},
		{Name: "HTTP_HOST", Value: hostHeader},
	}
	if scheme == "https" {
		ps = append(ps, fcgi.Pair{Name: "HTTPS", Value: "on"})
	}
	if o.docroot != "" {
		ps = append(ps,
			fcgi.Pair{Name: "DOCUMENT_ROOT", Value: o.docroot},
			fcgi.Pair{Name: "SCRIPT_FILENAME", Value: path.Join(o.docroot, u.Path)})
	}
	if bodyLen != noBody {
		ct := o.contentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		// A streamed body of unknown length gets an empty CONTENT_LENGTH,
		// as nginx sends for a chunked body it does not buffer.
		length := ""
		if bodyLen >= 0 {
			length = strconv.FormatInt(bodyLen, 10)
		}
		ps = append(ps,
			fcgi.Pair{Name: "CONTENT_LENGTH", Value: length},
			fcgi.Pair{Name: "CONTENT_TYPE", Value: ct})
	}
	return ps, nil
}

// setParam replaces the value of name where it is, or appends it.
func setParam(ps []fcgi.Pair, name, value string) []fcgi.Pair {
	for i := range ps {
		if ps[i].Name == name {
			ps[i].Value = value
			return ps
		}
	}
	return append(ps, fcgi.Pair{Name: name, Value: value})
}

// errKind sorts a failure into a small set of kinds for the load report.
func errKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, fcgi.ErrOverloaded):
		return "overloaded"
	case errors.Is(err, fcgi.ErrCantMpxConn):
		return "cant_mpx_conn"
	case errors.Is(err, fcgi.ErrUnknownRole):
		return "unknown_role"
	case errors.As(err, new(*fcgi.CGIError)), errors.Is(err, fcgi.ErrCGIHeaderTooLarge):
		return "bad_cgi_response"
	case strings.Contains(err.Error(), "connect to"):
		return "connect"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "lost before the request ended"):
		return "connection_lost"
	case strings.Contains(err.Error(), "protocol error"):
		return "protocol"
	}
	return "other"
}
