package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// h1Client speaks HTTP/1.1 to a plain-http upstream on the calling
// goroutine. net/http's Transport runs a reader and a writer goroutine per
// connection and hands every request and response between them and the
// caller; for a proxy that forwards one request at a time per connection
// those hand-offs, and the wake-ups they cost, were a fifth of the bridge's
// CPU per pass-through request. Here a request without a body is written,
// and its answer read, by the handler itself; only a request body is
// written from a second goroutine, so an upstream that answers before
// reading it (413, a redirect) cannot deadlock the exchange.
type h1Client struct {
	addr            string // host:port dialled
	dialer          net.Dialer
	responseTimeout time.Duration
	idleTimeout     time.Duration
	maxIdle         int
	keepAlive       bool

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	closed bool
	reaper *time.Timer
}

// staleConnError marks a kept connection the upstream had already closed
// when the request went out: a replayable request is sent again on a new one.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string {
	return "the upstream closed the kept connection before answering: " + e.err.Error()
}
func (e *staleConnError) Unwrap() error { return e.err }

func newH1Client(host string, connect, response, idle time.Duration, maxIdle int, keepAlive bool) *h1Client {
	return &h1Client{
		addr:            host,
		dialer:          net.Dialer{Timeout: connect, KeepAlive: idle},
		responseTimeout: response,
		idleTimeout:     idle,
		maxIdle:         maxIdle,
		keepAlive:       keepAlive,
	}
}

// h1Request is what fetch1 sends: the head is complete, framing headers
// included.
type h1Request struct {
	method string
	head   []byte
	body   io.Reader // nil: none
	length int64     // -1: chunked
}

// replayable reports whether the request may be sent again after a kept
// connection turned out dead: no body, and a method that is safe to repeat
// (as net/http decides).
func (q *h1Request) replayable() bool {
	if q.body != nil {
		return false
	}
	switch q.method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// roundTrip sends q and reads the response head; the body is read through
// the returned message.
func (c *h1Client) roundTrip(ctx context.Context, q *h1Request) (*httpmsg.Message, error) {
	for attempt := 0; ; attempt++ {
		cn, err := c.get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &Error{Op: "connect", Status: http.StatusBadGateway, Err: err}
		}
		m, err := c.exchange(ctx, cn, q)
		var stale *staleConnError
		if errors.As(err, &stale) {
			// Each retry takes another kept connection or a new one, so
			// after an upstream restart the dead ones are used up here,
			// not by failing requests.
			if q.replayable() && attempt <= c.maxIdle {
				continue
			}
			err = &Error{Op: "request", Status: http.StatusBadGateway, Err: err}
		}
		return m, err
	}
}

// maxInterim bounds the 1xx answers skipped before the real one, as
// net/http does.
const maxInterim = 5

func (c *h1Client) exchange(ctx context.Context, cn *h1Conn, q *h1Request) (*httpmsg.Message, error) {
	x := &h1Body{c: c, cn: cn, ctx: ctx, awaiting: true}
	if ctx.Done() != nil {
		x.stop = context.AfterFunc(ctx, func() {
			cn.cancelled.Store(true)
			_ = cn.nc.SetDeadline(aLongTimeAgo)
		})
	}
	fail := func(op string, err error) (*httpmsg.Message, error) {
		x.discard()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if x.writeDone != nil {
			var ie *inputError
			if errors.As(x.writeErr, &ie) {
				// The request body failed (short of its length, or its
				// stream broke): that, not the upstream, ended it.
				return nil, &Error{Op: "request body", Status: http.StatusBadRequest, Err: ie.err}
			}
		}
		if cn.reused && op != "response" && isStale(err) {
			return nil, &staleConnError{err}
		}
		return nil, &Error{Op: op, Status: http.StatusBadGateway, Err: err}
	}
	if q.body == nil {
		if _, err := cn.nc.Write(q.head); err != nil {
			return fail("request", err)
		}
		x.armResponseTimeout()
	} else {
		// response_timeout counts from the end of the request, as
		// net/http's ResponseHeaderTimeout does: the writer arms it.
		x.writeDone, x.input = make(chan struct{}), q.body
		go x.writeBody(q)
	}
	h := &x.head
	err := readResponseHead(cn.br, q.method, h)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && !cn.cancelled.Load() {
			x.discard()
			err = fmt.Errorf("no response within response_timeout (%v): %w", c.responseTimeout, err)
			return nil, &Error{Op: "request", Status: http.StatusGatewayTimeout, Err: err}
		}
		var perr *httpmsg.Error
		if errors.As(err, &perr) {
			// Some of the response arrived: not a stale connection.
			return fail("response", fmt.Errorf("response head: %w", err))
		}
		return fail("request", err)
	}
	x.headDone()
	x.reusable = c.keepAlive && keepAlive(h)
	m := &httpmsg.Message{Status: h.Status, Length: h.Length}
	if h.Framing == httpmsg.None {
		// HEAD keeps the length a GET would have had; 1xx, 204 and 304
		// have none.
		m.Length = -1
		if q.method == http.MethodHead && httpmsg.BodyAllowed(h.Status) {
			m.Length = headLength(h)
		}
	}
	m.Header = passedOn(h.Header)
	if h.Reason != http.StatusText(h.Status) {
		m.Reason = h.Reason
	}
	h.Header = nil // the message owns it now
	switch h.Framing {
	case httpmsg.None:
		x.done()
		return m, nil
	case httpmsg.Sized:
		if h.Length == 0 {
			x.done()
			m.Body = http.NoBody
			return m, nil
		}
	case httpmsg.UntilEOF:
		x.reusable = false // the body ends with the connection
	}
	x.body.Reset(cn.br, h)
	m.Body = x
	return m, nil
}

// isStale tells a kept connection the upstream closed while it sat idle: the
// write or the first read of the response failed at once.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// maxHeadBytes bounds a response head, as net/http's default does for the
// same reason: an upstream cannot make the bridge buffer without end.
const maxHeadBytes = 1 << 20

// responseOptions are the client's choices for reading a response head:
// obs-fold joined and names canonicalised as net/http does, up to
// maxInterim 1xx answers skipped. headOptions answers a HEAD request.
var responseOptions, headOptions = h1Options(http.MethodGet), h1Options(http.MethodHead)

func h1Options(method string) httpmsg.Options {
	return httpmsg.Options{
		Syntax:    httpmsg.StatusLine,
		Limits:    httpmsg.Limits{HeadBytes: maxHeadBytes, Fields: maxHeadBytes, Interim: maxInterim},
		Fold:      httpmsg.JoinFold,
		Method:    method,
		Canonical: true,
	}
}

// readResponseHead reads the response head into h, skipping interim (1xx)
// answers; httpmsg decides the framing (RFC 9112 section 6.3).
func readResponseHead(br *bufio.Reader, method string, h *httpmsg.Head) error {
	o := &responseOptions
	if method == http.MethodHead {
		o = &headOptions
	}
	return httpmsg.ReadHead(br, o, h)
}

// keepAlive reports whether the connection may carry another request after
// the response h: an HTTP/1.1 answer that did not ask to close and whose
// framing was not in doubt (Transfer-Encoding with Content-Length may be an
// attempt at smuggling, RFC 9112 section 6.3).
func keepAlive(h *httpmsg.Head) bool {
	return !h.HTTP10 && !h.Close && !h.Conflict
}

// passedOn trims a response's fields to those passed on: no hop-by-hop
// fields, none its Connection field names, and no Content-Length, which
// Message.Length carries.
func passedOn(h httpmsg.Header) httpmsg.Header {
	httpmsg.RemoveHopByHop(&h)
	h.DelFunc(func(name string) bool { return notForwarded(name) || httpmsg.EqualFold(name, "Content-Length") })
	if len(h) == 0 {
		return nil
	}
	return h
}

// headLength is the body length a HEAD answer announces, -1 when it is
// chunked or unknown.
func headLength(h *httpmsg.Head) int64 {
	if !h.HTTP10 && h.Header.Has("Transfer-Encoding") {
		return -1
	}
	if v := h.Header.Get("Content-Length"); v != "" {
		// ReadHead checked that a list repeats one value.
		first, _, _ := strings.Cut(v, ",")
		if n, ok := httpmsg.ParseLength(strings.TrimSpace(first)); ok {
			return n
		}
	}
	return -1
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
