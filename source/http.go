package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// httpSource forwards the request to an HTTP upstream (the app whose output
// is transformed) and returns its answer.
type httpSource struct {
	name      string
	base      *url.URL
	transport *http.Transport // https upstreams
	h1        *h1Client       // plain http upstreams

	basePath   string // the base URL's escaped path without its final '/'
	hostHeader string // Host when the request has none
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
	src := &httpSource{name: u.Name, base: base, transport: t,
		basePath:   strings.TrimSuffix(base.EscapedPath(), "/"),
		hostHeader: strings.TrimSuffix(base.Host, ":"),
	}
	if base.Scheme == "http" {
		addr := base.Host
		if base.Port() == "" {
			addr = net.JoinHostPort(base.Hostname(), "80")
		}
		src.h1 = newH1Client(addr, u.ConnectTimeout.Std(), u.ResponseTimeout.Std(), u.IdleConnTimeout.Std(), u.MaxIdleConns, u.KeepAlive)
	}
	return src, nil
}

func (s *httpSource) Name() string { return s.name }

func (s *httpSource) Close() error {
	s.transport.CloseIdleConnections()
	if s.h1 != nil {
		s.h1.close()
	}
	return nil
}

func (s *httpSource) Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	if s.h1 != nil {
		return s.fetchH1(ctx, r)
	}
	req, err := s.newRequest(ctx, r)
	if err != nil {
		return nil, &Error{Source: s.name, Op: "request", Status: http.StatusBadRequest, Err: err}
	}
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return nil, classify(ctx, s.name, "request", err)
	}
	m := &httpmsg.Message{Status: resp.StatusCode, Length: resp.ContentLength, Body: resp.Body}
	if _, reason, ok := strings.Cut(resp.Status, " "); ok && reason != http.StatusText(resp.StatusCode) {
		m.Reason = reason
	}
	m.Header = responseHeader(resp.Header)
	if req.Method == http.MethodHead || !httpmsg.BodyAllowed(resp.StatusCode) {
		resp.Body.Close()
		m.Body = nil
		if !httpmsg.BodyAllowed(resp.StatusCode) {
			m.Length = -1
		}
	}
	if m.Body != nil {
		m.Body = &upstreamBody{ReadCloser: resp.Body, ctx: ctx, name: s.name}
	}
	return m, nil
}

func (s *httpSource) fetchH1(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	bp := headPool.Get().(*[]byte)
	q, err := s.newH1Request(r, bp)
	if err != nil {
		headPool.Put(bp)
		return nil, &Error{Source: s.name, Op: "request", Status: http.StatusBadRequest, Err: err}
	}
	m, err := s.h1.roundTrip(ctx, q)
	if q.body == nil {
		// Written inline; a body's writer may still hold the head.
		headPool.Put(bp)
	}
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			se.Source = s.name
			return nil, se
		}
		return nil, classify(ctx, s.name, "request", err)
	}
	if m.Body != nil {
		m.Body = &upstreamBody{ReadCloser: m.Body, ctx: ctx, name: s.name}
	}
	return m, nil
}

// newRequest maps the FastCGI params onto an HTTP request to the upstream
// (net/http, for https upstreams).
func (s *httpSource) newRequest(ctx context.Context, r *Request) (*http.Request, error) {
	p := r.Params
	t := r.target()
	method := t.Method
	ref, err := url.Parse(t.URI)
	if err != nil {
		return nil, fmt.Errorf("bad request URI %q: %w", t.URI, err)
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
	forwardFields(r, t.Scheme, func(name, v string) {
		if prior, dup := req.Header[name]; dup {
			req.Header[name] = append(prior, v)
			return
		}
		vals = append(vals, v)
		req.Header[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	})
	if h := p["HTTP_HOST"]; h != "" {
		req.Host = h
	}
	if _, ok := p["HTTP_USER_AGENT"]; !ok {
		// Go would otherwise add its own; the upstream should see none.
		req.Header["User-Agent"] = nil
	}
	return req, nil
}

// forwardSorted calls client for the HTTP_* params of p sorted by name. It
// is apart from forwardFields, and never inlined there, so that the key
// buffer does not enlarge forwardFields' frame: on the usual path (the
// params' order known) that frame is at the deepest point of a handler's
// stack, and a larger one made every handler goroutine grow, and copy, its
// stack once more.
//
//go:noinline
func forwardSorted(p map[string]string, client func(k, v string)) {
	var keyBuf [48]string
	keys := keyBuf[:0]
	for k := range p {
		if strings.HasPrefix(k, "HTTP_") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		client(k, p[k])
	}
}

// forwardFields calls add for every header field sent upstream except Host
// and the body's framing: the client's own fields, in the order they came
// (Request.ParamOrder) or else sorted by name, without hop-by-hop ones and
// without those its Connection field names; then Content-Type and the
// X-Forwarded-* fields the bridge sets, X-Forwarded-Proto being scheme
// (the request's Target.Scheme).
func forwardFields(r *Request, scheme string, add func(name, value string)) {
	p := r.Params
	ct, host, remote := p["CONTENT_TYPE"], p["HTTP_HOST"], p["REMOTE_ADDR"]
	// Fields the client's Connection field names stay on its hop too.
	connection := p["HTTP_CONNECTION"]
	named := func(name string) bool { return connection != "" && httpmsg.HasToken(connection, name) }
	client := func(k, v string) {
		name, ok := HeaderName(k)
		if !ok || notForwarded(name) || named(name) {
			return
		}
		switch name {
		case "Host", "Content-Length", "X-Forwarded-Proto":
			return
		case "Content-Type":
			if ct != "" {
				return
			}
		case "Accept-Encoding":
			if r.Identity {
				return
			}
		case "X-Forwarded-Host":
			if host != "" {
				return
			}
		case "X-Forwarded-For":
			if remote != "" {
				return
			}
		}
		add(name, v)
	}
	if r.ParamOrder != nil {
		for _, k := range r.ParamOrder {
			if v, ok := p[k]; ok {
				client(k, v)
			}
		}
	} else {
		forwardSorted(p, client)
	}
	if ct != "" && !named("Content-Type") {
		add("Content-Type", ct)
	}
	if host != "" {
		add("X-Forwarded-Host", host)
	}
	if remote != "" {
		if prior := p["HTTP_X_FORWARDED_FOR"]; prior != "" && !named("X-Forwarded-For") {
			remote = prior + ", " + remote
		}
		add("X-Forwarded-For", remote)
	}
	add("X-Forwarded-Proto", scheme)
}

var headPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// newH1Request writes the request head for the HTTP/1.1 client; the caller
// puts bp back once the request is sent.
func (s *httpSource) newH1Request(r *Request, bp *[]byte) (*h1Request, error) {
	p := r.Params
	t := r.target()
	method := t.Method
	if !httpmsg.ValidName(method) {
		return nil, fmt.Errorf("bad method %q", truncate(method))
	}
	b := append((*bp)[:0], method...)
	b = append(b, ' ')
	b, err := s.appendTarget(b, t.URI)
	if err != nil {
		return nil, err
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := p["HTTP_HOST"]
	if host == "" {
		host = s.hostHeader
	}
	if !httpmsg.ValidValue(host) {
		return nil, errors.New("bad Host")
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	var bad string
	forwardFields(r, t.Scheme, func(name, v string) {
		if !httpmsg.ValidName(name) || !httpmsg.ValidValue(v) {
			bad = name
			return
		}
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	})
	if bad != "" {
		return nil, fmt.Errorf("header %q: a name or value that cannot be forwarded", truncate(bad))
	}
	body, length, err := requestBody(r)
	if err != nil {
		return nil, err
	}
	q := &h1Request{method: method, body: body, length: length}
	switch {
	case body == http.NoBody:
		q.body, q.length = nil, 0
		if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case length >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, length, 10)
		b = append(b, "\r\n"...)
	default:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if !s.h1.keepAlive {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	*bp = b
	q.head = b
	return q, nil
}

// appendTarget appends the request target: the base URL's path joined with
// the request's. A usual REQUEST_URI, as the client sent it, goes through
// byte for byte; anything unusual is parsed and escaped again.
func (s *httpSource) appendTarget(b []byte, uri string) ([]byte, error) {
	plain := strings.HasPrefix(uri, "/")
	for i := 0; plain && i < len(uri); i++ {
		// Bytes a request-target may not hold as they are: these are
		// escaped on the parsed path, as net/url would.
		if c := uri[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("#\"<>\\^`{|}", c) >= 0 {
			plain = false
		}
	}
	if plain {
		return append(append(b, s.basePath...), uri...), nil
	}
	ref, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("bad request URI %q: %w", truncate(uri), err)
	}
	b = append(b, s.basePath...)
	path := ref.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		b = append(b, '/')
	}
	b = append(b, path...)
	if ref.RawQuery != "" {
		for i := 0; i < len(ref.RawQuery); i++ {
			if c := ref.RawQuery[i]; c <= ' ' || c == 0x7f {
				return nil, fmt.Errorf("bad request URI %q: a control or space character in the query", truncate(uri))
			}
		}
		b = append(b, '?')
		b = append(b, ref.RawQuery...)
	}
	return b, nil
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
func responseHeader(h http.Header) httpmsg.Header {
	// A usual response has a handful of fields: names stays on the stack
	// and out is allocated once.
	var buf [16]string
	names := buf[:0]
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(httpmsg.Header, 0, len(h))
	for _, n := range names {
		for _, v := range h[n] {
			out = append(out, httpmsg.Field{Name: n, Value: v})
		}
	}
	return passedOn(out)
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
