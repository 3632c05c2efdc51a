package source

import (
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// HeaderName turns a CGI variable name into an HTTP header name:
// HTTP_ACCEPT_LANGUAGE -> Accept-Language. ok is false for names that are
// not HTTP_* variables.
func HeaderName(param string) (name string, ok bool) {
	if !strings.HasPrefix(param, "HTTP_") {
		return "", false
	}
	if name, ok := commonHeaderNames[param]; ok {
		return name, true
	}
	return headerName(param)
}

func headerName(param string) (string, bool) {
	rest, ok := strings.CutPrefix(param, "HTTP_")
	if !ok || rest == "" {
		return "", false
	}
	return textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(rest, "_", "-")), true
}

// commonHeaderNames maps the HTTP_* params browsers and web servers send on
// most requests to their header names, computed once by headerName itself,
// so the usual request builds no name strings (two allocations per header
// otherwise).
var commonHeaderNames = func() map[string]string {
	m := map[string]string{}
	for _, h := range []string{
		"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language",
		"Cookie", "Referer", "Connection", "Cache-Control", "Pragma",
		"If-None-Match", "If-Modified-Since", "Authorization", "Origin",
		"Upgrade-Insecure-Requests", "X-Forwarded-For", "X-Forwarded-Proto",
		"X-Forwarded-Host", "X-Real-Ip", "X-Requested-With", "Dnt", "Priority",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Content-Type",
		"Content-Length", "Range", "If-Range", "Te", "Keep-Alive", "Via",
	} {
		p := ParamName(h)
		if name, ok := headerName(p); ok {
			m[p] = name
		}
	}
	return m
}()

// ParamName is the reverse of HeaderName: Accept-Language -> HTTP_ACCEPT_LANGUAGE.
func ParamName(header string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(header, "-", "_"))
}

// notForwarded reports whether a field stays on its hop: the hop-by-hop
// fields (httpmsg), and Proxy, refused on the way in as well (httpoxy):
// some upstreams would read it as their proxy setting.
func notForwarded(name string) bool {
	return httpmsg.IsHopByHop(name) || httpmsg.EqualFold(name, "Proxy")
}

// RequestHeader returns the request's headers (the HTTP_* params, plus
// Content-Type and Content-Length from their CGI variables) without
// hop-by-hop ones, sorted by name because params carry no order.
func RequestHeader(params map[string]string) httpmsg.Header {
	var h httpmsg.Header
	for k, v := range params {
		name, ok := HeaderName(k)
		if !ok || notForwarded(name) {
			continue
		}
		h = append(h, httpmsg.Field{Name: name, Value: v})
	}
	if v := params["CONTENT_TYPE"]; v != "" {
		h = append(h, httpmsg.Field{Name: "Content-Type", Value: v})
	}
	sortHeader(h)
	return h
}

func sortHeader(h httpmsg.Header) {
	// Insertion sort: a few dozen fields; keeps duplicates in order.
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].Name < h[j-1].Name; j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}

// Target is what one request asks for, read from its CGI params once:
// routing, the access log, the sources and the transforms' request
// description all read this one value rather than the params again.
type Target struct {
	// Method is REQUEST_METHOD, "GET" when the web server sent none.
	Method string
	// Scheme is "https" when the web server says the client connection
	// is TLS, else "http".
	Scheme string
	// Host is the host (and port, when not the scheme's default) the
	// client asked for; see host.
	Host string
	// URI is the path and query as the client sent them: REQUEST_URI,
	// else rebuilt from the other params (see requestURI). Never empty.
	URI string
	// Path is URI's path, decoded, without the query.
	Path string
	// Query is the raw query string: QUERY_STRING when the web server
	// sent it, else the part of URI after "?".
	Query string
}

// NewTarget reads the request target from a request's CGI params. It
// allocates only for what the web server did not send as it is (a URI
// rebuilt from its parts, a path with escapes to decode, a host put
// together from SERVER_NAME and SERVER_PORT).
func NewTarget(params map[string]string) Target {
	t := Target{Method: params["REQUEST_METHOD"], Scheme: scheme(params), URI: requestURI(params)}
	if t.Method == "" {
		t.Method = http.MethodGet
	}
	t.Host = host(params, t.Scheme)
	p, q, _ := strings.Cut(t.URI, "?")
	t.Path = p
	if d, err := url.PathUnescape(p); err == nil {
		t.Path = d
	}
	t.Query = q
	if qs, ok := params["QUERY_STRING"]; ok {
		t.Query = qs
	}
	return t
}

// URL is the absolute URL the client asked for, e.g.
// https://example.org/page?x=1: what X-Request-URL carries.
func (t Target) URL() string {
	return t.Scheme + "://" + t.Host + t.URI
}

// scheme is "https" when the web server says the client connection is TLS.
func scheme(params map[string]string) string {
	if s := strings.ToLower(params["REQUEST_SCHEME"]); s == "https" || s == "http" {
		return s
	}
	switch strings.ToLower(params["HTTPS"]) {
	case "on", "1", "yes", "true":
		return "https"
	}
	return "http"
}

// host is the host (and port, when not the scheme's default) the client
// asked for. HTTP_HOST is the client's Host header, port included when the
// client used one, so it wins. Without it (HTTP/1.0, hand-made requests)
// the name comes from SERVER_NAME (else SERVER_ADDR) and the port from
// SERVER_PORT, left out when it is the scheme's default. HAProxy puts the
// port into SERVER_NAME already ("127.0.0.1:8080"); it is not added twice.
func host(params map[string]string, scheme string) string {
	if h := params["HTTP_HOST"]; validHost(h) {
		return h
	}
	host := params["SERVER_NAME"]
	if !validHost(host) {
		host = params["SERVER_ADDR"]
	}
	if !validHost(host) {
		host = "localhost"
	}
	port := params["SERVER_PORT"]
	if strings.IndexByte(host, ':') >= 0 {
		// Only then: without a colon SplitHostPort fails anyway, and its
		// error costs an allocation on every request without a Host.
		if h, p, err := net.SplitHostPort(host); err == nil {
			host, port = h, p
		}
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // a bare IPv6 address
	}
	if port == "" || (port == "80" && scheme == "http") || (port == "443" && scheme == "https") {
		return host
	}
	return host + ":" + port
}

// validHost accepts what may stand between "//" and the path of a URL as a
// host[:port]: a Host header with "/", "@", spaces or controls would change
// what the URL means, so it is not used.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("/?#@\\\"<>`{}|^", c) >= 0 {
			return false
		}
	}
	return true
}

// requestURI is the path and query the client asked for: REQUEST_URI, else
// rebuilt from DOCUMENT_URI (else SCRIPT_NAME and PATH_INFO) and
// QUERY_STRING (Apache's mod_authnz_fcgi and some clients send no
// REQUEST_URI).
func requestURI(params map[string]string) string {
	if u := params["REQUEST_URI"]; u != "" {
		return u
	}
	p := params["DOCUMENT_URI"]
	if p == "" {
		p = params["SCRIPT_NAME"] + params["PATH_INFO"]
	}
	if p == "" {
		p = "/"
	}
	p = (&url.URL{Path: p}).EscapedPath()
	if q := params["QUERY_STRING"]; q != "" {
		return p + "?" + q
	}
	return p
}
