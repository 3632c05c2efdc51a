package source

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
)

// httpSource forwards the request to an HTTP upstream (the app whose output
// is transformed) and returns its answer.
type httpSource struct {
	name      string
	base      *url.URL
	transport *http.Transport
}

// NewHTTP builds an HTTP upstream with one shared transport, so connections
// are kept alive across requests.
func NewHTTP(u *conf.Upstream) (Source, error) {
	base, err := url.Parse(u.URL)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("upstream %q: bad url %q", u.Name, u.URL)
	}
	dialer := &net.Dialer{Timeout: u.ConnectTimeout.Std(), KeepAlive: u.IdleConnTimeout.Std()}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   u.ConnectTimeout.Std(),
		ResponseHeaderTimeout: u.ResponseTimeout.Std(),
		DisableKeepAlives:     !u.KeepAlive,
		MaxIdleConns:          u.MaxIdleConns,
		MaxIdleConnsPerHost:   u.MaxIdleConns,
		IdleConnTimeout:       u.IdleConnTimeout.Std(),
		// The client's Accept-Encoding goes through untouched and so does
		// the answer: decompressing here would change what the site serves.
		DisableCompression: true,
		// An explicit proxy setting, never the environment's (httpoxy).
		Proxy: nil,
	}
	return &httpSource{name: u.Name, base: base, transport: t}, nil
}

func (s *httpSource) Name() string { return s.name }

func (s *httpSource) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

func (s *httpSource) Fetch(ctx context.Context, r *Request) (*filter.Message, error) {
	req, err := s.newRequest(ctx, r)
	if err != nil {
		return nil, &Error{Source: s.name, Op: "request", Status: http.StatusBadRequest, Err: err}
	}
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return nil, classify(ctx, s.name, "request", err)
	}
	m := &filter.Message{Status: resp.StatusCode, Length: resp.ContentLength, Body: resp.Body}
	if _, reason, ok := strings.Cut(resp.Status, " "); ok && reason != http.StatusText(resp.StatusCode) {
		m.Reason = reason
	}
	m.Header = responseHeader(resp.Header)
	if req.Method == http.MethodHead || !filter.BodyAllowed(resp.StatusCode) {
		resp.Body.Close()
		m.Body = nil
		if !filter.BodyAllowed(resp.StatusCode) {
			m.Length = -1
		}
	}
	if m.Body != nil {
		m.Body = &upstreamBody{ReadCloser: resp.Body, ctx: ctx, name: s.name}
	}
	return m, nil
}

// newRequest maps the FastCGI params onto an HTTP request to the upstream.
func (s *httpSource) newRequest(ctx context.Context, r *Request) (*http.Request, error) {
	p := r.Params
	method := p["REQUEST_METHOD"]
	if method == "" {
		method = http.MethodGet
	}
	ref, err := url.Parse(RequestURI(p))
	if err != nil {
		return nil, fmt.Errorf("bad request URI %q: %w", RequestURI(p), err)
	}
	target := *s.base
	target.Path = strings.TrimSuffix(s.base.Path, "/") + ref.Path
	target.RawPath = ""
	if ref.RawPath != "" {
		target.RawPath = strings.TrimSuffix(s.base.EscapedPath(), "/") + ref.RawPath
	}
	target.RawQuery = ref.RawQuery

	body, length, err := requestBody(r)
	if err != nil {
		return nil, err
	}
	// The URL is already in parts: formatting it only for
	// NewRequestWithContext to parse it again cost a string and a URL per
	// request, so the request gets an empty one replaced by target.
	req, err := http.NewRequestWithContext(ctx, method, "", body)
	if err != nil {
		return nil, err
	}
	target.Host = strings.TrimSuffix(target.Host, ":") // as NewRequest does: no empty port
	req.URL, req.Host = &target, target.Host
	req.ContentLength = length
	if body == http.NoBody {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	// Every value slice is cut from one array: Header.Add allocated one
	// per field. Names from HeaderName are canonical, as Add would make them.
	vals := make([]string, 0, 12) // when it grows, earlier fields keep the old array
	for k, v := range p {
		name, ok := HeaderName(k)
		if !ok || hopByHop[name] || name == "Host" || name == "Content-Length" {
			continue
		}
		if prior, dup := req.Header[name]; dup {
			req.Header[name] = append(prior, v)
			continue
		}
		vals = append(vals, v)
		req.Header[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if ct := p["CONTENT_TYPE"]; ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if r.Identity {
		req.Header.Del("Accept-Encoding")
	}
	if h := p["HTTP_HOST"]; h != "" {
		req.Host = h
		req.Header.Set("X-Forwarded-Host", h)
	}
	if ra := p["REMOTE_ADDR"]; ra != "" {
		if prior := p["HTTP_X_FORWARDED_FOR"]; prior != "" {
			ra = prior + ", " + ra
		}
		req.Header.Set("X-Forwarded-For", ra)
	}
	req.Header.Set("X-Forwarded-Proto", Scheme(p))
	if _, ok := p["HTTP_USER_AGENT"]; !ok {
		// Go would otherwise add its own; the upstream should see none.
		req.Header["User-Agent"] = nil
	}
	return req, nil
}

// requestBody returns the body to send upstream and its length (-1 =
// unknown, sent chunked). With no usable CONTENT_LENGTH the first byte is
// peeked, so a GET without a body is not sent as an empty chunked body.
func requestBody(r *Request) (io.Reader, int64, error) {
	if r.Stdin == nil || (r.Spooled && r.ContentLength <= 0) {
		return http.NoBody, 0, nil
	}
	if r.Spooled {
		return r.Stdin, r.ContentLength, nil
	}
	chunked := strings.Contains(strings.ToLower(r.Params["HTTP_TRANSFER_ENCODING"]), "chunked")
	if r.ContentLength == 0 && !chunked {
		return http.NoBody, 0, nil
	}
	if r.ContentLength > 0 && !chunked {
		return exactBody(r.Stdin, r.ContentLength, "request body"), r.ContentLength, nil
	}
	br := bufio.NewReader(r.Stdin)
	if _, err := br.Peek(1); err == io.EOF {
		return http.NoBody, 0, nil
	} else if err != nil {
		return nil, 0, fmt.Errorf("read request body: %w", err)
	}
	// The transport closes the body when the exchange fails; passing that
	// on stops its writer even when the web server stalls mid-body.
	return struct {
		io.Reader
		io.Closer
	}{br, readCloser(r.Stdin)}, -1, nil
}

// responseHeader copies the upstream's headers without hop-by-hop ones
// (including those the Connection header names) and without
// Content-Length, which Message.Length carries. Values of one name keep
// their order (several Set-Cookie); names are sorted since Go's map has none.
func responseHeader(h http.Header) filter.Header {
	drop := map[string]bool{}
	for _, v := range h.Values("Connection") {
		for _, n := range strings.Split(v, ",") {
			drop[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
		}
	}
	// A usual response has a handful of fields: names stays on the stack
	// and out is allocated once.
	var buf [16]string
	names := buf[:0]
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(filter.Header, 0, len(h))
	for _, n := range names {
		if hopByHop[n] || drop[n] || n == "Content-Length" {
			continue
		}
		for _, v := range h[n] {
			out = append(out, filter.Field{Name: n, Value: v})
		}
	}
	if len(out) == 0 {
		return nil // as before: no fields, no slice
	}
	return out
}

// upstreamBody turns read errors of the upstream body into *Error, so a
// stalled or reset upstream is told apart from a transform failure.
type upstreamBody struct {
	io.ReadCloser
	ctx  context.Context
	name string
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = classify(b.ctx, b.name, "response body", err)
	}
	return n, err
}
