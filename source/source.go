// Package source produces the content a route transforms: one
// *httpmsg.Message per request, from the FILTER role's data stream, the request
// body, a file under a root, an HTTP upstream or a FastCGI upstream (php-fpm),
// or, for the AUTHORIZER role, a description of the request itself.
//
// Data enters as a *Request (the parts of a FastCGI request a source reads,
// among them its Target: method, scheme, host, URI, path and query, read
// from the CGI params once by NewTarget) and leaves as a Message whose Body
// streams; nothing is buffered whole.
// Failures to reach an upstream are *Error values that say which HTTP status
// the client should get (502, 504), so the bridge maps them without guessing.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Request is what a source reads from one FastCGI request. The bridge fills
// it from the fcgi server's request; tests fill it directly.
type Request struct {
	Role   fcgi.Role
	Params map[string]string
	// Target is NewTarget(Params), which the bridge reads once per request
	// for routing as well. Left empty (tests), sources read it from Params.
	Target Target
	// ParamOrder, when known, names each of Params once in the order the
	// web server sent them, and header fields go upstream in that order
	// (some applications read the first of several fields, or sign the
	// head). Without it they go sorted by name, the same for every request.
	ParamOrder []string
	// ContentLength is the parsed CONTENT_LENGTH, -1 when absent or invalid.
	ContentLength int64
	Stdin         io.Reader
	// Spooled says the request body was read to its end before Fetch
	// (request buffering): ContentLength is then its true length, whatever
	// the web server declared, and Stdin reads exactly that many bytes (a
	// ReadCloser the source hands on and closes).
	Spooled bool
	// FILTER role only.
	Data        io.Reader
	DataLength  int64 // -1 unknown
	DataLastMod time.Time
	RemoteAddr  net.Addr
	// Identity asks an upstream for an uncompressed body (its
	// Accept-Encoding is not forwarded): set when a transform will read
	// the content. The web server compresses the final answer anyway.
	Identity bool
}

// target is r.Target when the bridge filled it (its URI is never empty),
// else read from r.Params now, for requests that tests build. r is not
// changed, so a Request may be read from several goroutines.
func (r *Request) target() Target {
	if r.Target.URI != "" {
		return r.Target
	}
	return NewTarget(r.Params)
}

// Source fetches the content for a request. Fetch may be called from many
// goroutines at once. The returned Message's Body (nil when there is none)
// belongs to the caller, who must close it.
type Source interface {
	Name() string
	Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error)
	// Close releases idle connections and open directories; in-flight
	// fetches finish normally.
	Close() error
}

// Error is a failure to obtain the content, with the status the client
// should see: 502 when the upstream is unreachable or answers garbage, 504
// when it times out, 400 when the request itself cannot be forwarded.
type Error struct {
	Source string // upstream or source name
	Op     string // "connect", "request", "response"
	Status int
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("source %q: %s: %v", e.Source, e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the upstream took too long (the client gets 504).
func (e *Error) Timeout() bool { return e.Status == 504 }

// classify wraps err from talking to an upstream into an *Error. A cancelled
// ctx (the web server went away) is returned as is: nobody gets a status.
func classify(ctx context.Context, name, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return err
	}
	status := 502
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		status = 504
	}
	return &Error{Source: name, Op: op, Status: status, Err: err}
}

// New builds the source for an [upstream.NAME] table.
func New(u *conf.Upstream) (Source, error) {
	switch u.Kind {
	case conf.UpstreamHTTP:
		return NewHTTP(u)
	case conf.UpstreamFastCGI:
		return NewFastCGI(u)
	case conf.UpstreamFile:
		return NewFile(u)
	case conf.UpstreamBody:
		return NewBody(u.Name, u.ContentType), nil
	case conf.UpstreamData:
		return NewData(u.ContentType), nil
	}
	return nil, fmt.Errorf("upstream %q: unknown kind %q", u.Name, u.Kind)
}

// Builtin returns the source a route names without an upstream table:
// "data", "body" or "request"; nil for other names.
func Builtin(name string) Source {
	switch name {
	case conf.SourceData:
		return NewData("application/octet-stream")
	case conf.SourceBody:
		return NewBody(conf.SourceBody, "application/octet-stream")
	case conf.SourceRequest:
		return NewRequestDescription()
	}
	return nil
}
