package filter

import (
	"fmt"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// RequestInfo is what a transform may need to know about the request whose
// response it transforms. It travels as request-describing headers in the
// message head:
//
//	X-Request-URL: http://example.org/items/1?format=html   (URL)
//	X-Bridge-Method: GET                                      (Method)
//	X-Bridge-Path: /items/1                                   (Path)
//	X-Bridge-Query: format=html                               (Query, when not empty)
//	X-Bridge-Param-REMOTE_ADDR: 192.0.2.1                     (each of Params)
//
// X-Request-URL is the header renderers built on subprocess_middleware (the
// ENCODE renderer, for one) read with res.getHeader('X-Request-URL').
// Headers with these names arriving from the source are dropped before the
// message is written, so that an upstream cannot spoof them, and they are
// removed from every reply before it reaches the client.
type RequestInfo struct {
	URL    string // absolute, e.g. http://host/path?q
	Method string
	Path   string
	Query  string
	Params []Field // selected FastCGI params to pass (X-Bridge-Param-<Name>)
}

// ReservedPrefix starts the names of the request-describing headers. Together
// with RequestURLHeader, these names are reserved: stripped from what the
// source sends and from every reply.
const ReservedPrefix = "X-Bridge-"

// RequestURLHeader carries RequestInfo.URL.
const RequestURLHeader = "X-Request-URL"

// isReserved reports whether a header name is one the bridge owns.
func isReserved(name string) bool {
	return httpmsg.EqualFold(name, RequestURLHeader) || httpmsg.HasPrefixFold(name, ReservedPrefix)
}

// isFraming reports whether a header describes the pipe rather than the
// message; the bridge writes and consumes these itself.
func isFraming(name string) bool { return httpmsg.IsFraming(name) }

// appendRequestHeaders appends the request-describing header lines.
func appendRequestHeaders(dst []byte, req *RequestInfo) ([]byte, error) {
	if req == nil {
		return dst, nil
	}
	var err error
	add := func(name, value string) {
		if err != nil {
			return
		}
		if !httpmsg.ValidValue(value) {
			err = fmt.Errorf("request %s contains a control character", name)
			return
		}
		dst, err = httpmsg.AppendField(dst, name, value)
	}
	if req.URL != "" {
		add(RequestURLHeader, req.URL)
	}
	if req.Method != "" {
		add(ReservedPrefix+"Method", req.Method)
	}
	if req.Path != "" {
		add(ReservedPrefix+"Path", req.Path)
	}
	if req.Query != "" {
		add(ReservedPrefix+"Query", req.Query)
	}
	for _, p := range req.Params {
		if !httpmsg.ValidName(p.Name) {
			return dst, fmt.Errorf("param name %q cannot be a header name", p.Name)
		}
		add(ReservedPrefix+"Param-"+p.Name, p.Value)
	}
	return dst, err
}
