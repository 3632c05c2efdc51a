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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// h1Conn is one connection to the upstream. Only the request using it
// touches it, except for the cancel hook, which sets deadlines.
type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	rc        syscall.RawConn // nc's, for the idle check; nil when nc has none
	peek      func(fd uintptr) bool
	quietNow  bool // the last idle check's answer, set by peek
	idleSince time.Time
	reused    bool
	cancelled atomic.Bool // the request's context ended: deadlines stay in the past
}

var aLongTimeAgo = time.Unix(1, 0)

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

// get returns a kept connection that is still sound, or dials a new one.
func (c *h1Client) get(ctx context.Context) (*h1Conn, error) {
	now := time.Now()
	for {
		c.mu.Lock()
		if len(c.idle) == 0 {
			c.mu.Unlock()
			break
		}
		cn := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		c.mu.Unlock()
		if (c.idleTimeout > 0 && now.Sub(cn.idleSince) > c.idleTimeout) || !cn.quiet() {
			cn.nc.Close()
			continue
		}
		cn.reused = true
		return cn, nil
	}
	nc, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	return newH1Conn(nc), nil
}

func newH1Conn(nc net.Conn) *h1Conn {
	cn := &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10)}
	// The raw connection and the probe are made once per connection: each
	// SyscallConn call and each closure would otherwise cost an allocation
	// on every reuse.
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			cn.rc = rc
			cn.peek = func(fd uintptr) bool {
				var b [1]byte
				_, _, perr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				cn.quietNow = perr == syscall.EAGAIN || perr == syscall.EWOULDBLOCK
				return true // never wait: this is a probe
			}
		}
	}
	return cn
}

// quiet reports whether an idle connection has nothing to say: no bytes
// (an upstream that sent more than its response said, which the next request
// would take for its answer) and no end (the upstream closed it meanwhile,
// as Node does after 5 idle seconds). One non-blocking peek; net/http learns
// the same from a reader goroutine per connection, which costs more.
func (cn *h1Conn) quiet() bool {
	if cn.br.Buffered() > 0 {
		return false
	}
	if _, ok := cn.nc.(syscall.Conn); !ok {
		return true
	}
	if cn.rc == nil {
		return false
	}
	cn.quietNow = false
	err := cn.rc.Read(cn.peek)
	return err == nil && cn.quietNow
}

// put keeps cn for the next request, or closes it.
func (c *h1Client) put(cn *h1Conn) {
	if cn.br.Buffered() > 0 || cn.cancelled.Load() {
		// Bytes past the response: the stream is out of step.
		cn.nc.Close()
		return
	}
	cn.idleSince = time.Now()
	c.mu.Lock()
	if c.closed || len(c.idle) >= c.maxIdle {
		c.mu.Unlock()
		cn.nc.Close()
		return
	}
	c.idle = append(c.idle, cn)
	if c.reaper == nil && c.idleTimeout > 0 {
		c.reaper = time.AfterFunc(c.idleTimeout, c.reap)
	}
	c.mu.Unlock()
}

// reap closes connections idle past idleTimeout, so the bridge does not sit
// on sockets the upstream has long closed.
func (c *h1Client) reap() {
	cutoff := time.Now().Add(-c.idleTimeout)
	c.mu.Lock()
	keep := c.idle[:0]
	var stale []*h1Conn
	for _, cn := range c.idle {
		if cn.idleSince.Before(cutoff) {
			stale = append(stale, cn)
		} else {
			keep = append(keep, cn)
		}
	}
	clear(c.idle[len(keep):])
	c.idle = keep
	c.reaper = nil
	if len(c.idle) > 0 && !c.closed {
		c.reaper = time.AfterFunc(c.idleTimeout, c.reap)
	}
	c.mu.Unlock()
	for _, cn := range stale {
		cn.nc.Close()
	}
}

func (c *h1Client) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	if c.reaper != nil {
		c.reaper.Stop()
	}
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
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

// inputError is a failure to read the request body, as opposed to a failure
// to write it to the upstream.
type inputError struct{ err error }

func (e *inputError) Error() string { return "read request body: " + e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// h1Body is the response body, and the owner of the connection until the
// body ends: a body read to its end gives the connection back for reuse,
// one closed early closes it. Read and Close may run on different
// goroutines (a transform exchange aborts from a timer): mu serialises
// them, and relMu makes the one decision about the connection (back to the
// pool, or closed) exclusive with Close's wake-up of a blocked Read, so a
// pooled connection is never touched again.
type h1Body struct {
	c    *h1Client
	cn   *h1Conn
	ctx  context.Context
	stop func() bool

	mu       sync.Mutex // held by Read and by the release in Close
	head     httpmsg.Head
	body     httpmsg.Body // the framing the head announced
	reusable bool
	finished bool // no more reads: the body ended or failed
	err      error

	relMu     sync.Mutex
	released  bool        // the connection was handed back or closed
	abandoned atomic.Bool // Close came first: never reuse
	awaiting  bool        // the response head is still awaited (deadline owner)

	writeDone chan struct{} // nil when the request had no body
	writeErr  error         // valid once writeDone is closed
	input     io.Reader
}

// armResponseTimeout starts response_timeout once the request is out.
func (x *h1Body) armResponseTimeout() {
	x.relMu.Lock()
	defer x.relMu.Unlock()
	if x.c.responseTimeout > 0 && !x.released && x.awaiting {
		_ = x.cn.nc.SetReadDeadline(time.Now().Add(x.c.responseTimeout))
	}
}

// headDone ends response_timeout: the body may take as long as it takes.
func (x *h1Body) headDone() {
	x.relMu.Lock()
	defer x.relMu.Unlock()
	x.awaiting = false
	if x.c.responseTimeout > 0 && !x.released {
		_ = x.cn.nc.SetReadDeadline(time.Time{})
		if x.cn.cancelled.Load() {
			_ = x.cn.nc.SetDeadline(aLongTimeAgo)
		}
	}
}

func (x *h1Body) writeBody(q *h1Request) {
	var err error
	if q.length >= 0 {
		err = writeFixed(x.cn.nc, q.head, q.body, q.length)
	} else {
		err = writeChunked(x.cn.nc, q.head, q.body)
	}
	x.writeErr = err
	var ie *inputError
	if errors.As(err, &ie) {
		// The upstream would wait for the rest of the body and the
		// handler for its answer: end the exchange now. (A failed write
		// to the upstream needs nothing: the connection is broken and its
		// answer, often sent before it stopped reading, is still read.)
		x.relMu.Lock()
		if !x.released {
			// Marked before the deadline fires: the reader it wakes must
			// not take it for response_timeout (a 504).
			x.cn.cancelled.Store(true) // never reused
			_ = x.cn.nc.SetReadDeadline(aLongTimeAgo)
		}
		x.relMu.Unlock()
	} else if err == nil {
		x.armResponseTimeout()
	}
	close(x.writeDone)
}

func (x *h1Body) Read(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.finished {
		if x.err != nil {
			return 0, x.err
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := x.body.Read(p)
	if err == io.EOF {
		x.done()
		return n, io.EOF
	}
	if err != nil {
		if x.ctx.Err() != nil {
			err = x.ctx.Err()
		} else if x.abandoned.Load() {
			err = errBodyClosed
		}
		x.err = err
		x.discard()
	}
	return n, err
}

var errBodyClosed = errors.New("read after the upstream body was closed")

// Close ends the exchange: a body not read to its end costs the connection.
// A Read blocked on another goroutine is woken first.
func (x *h1Body) Close() error {
	x.relMu.Lock()
	if !x.released {
		x.abandoned.Store(true)
		_ = x.cn.nc.SetReadDeadline(aLongTimeAgo)
	}
	x.relMu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.finished {
		x.err = errBodyClosed
	}
	x.discard()
	return nil
}

// done ends a complete response: the connection goes back to the pool when
// both sides of the exchange finished cleanly.
func (x *h1Body) done() {
	x.finished = true
	if x.stop != nil && !x.stop() {
		// The context ended meanwhile and its hook ran or is running.
		x.reusable = false
	}
	if x.writeDone != nil && x.reusable {
		// A complete answer usually comes after the whole request, but
		// the writer may not have seen its last write return yet.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-x.writeDone:
		case <-t.C:
		}
		t.Stop()
	}
	if x.writeDone != nil {
		select {
		case <-x.writeDone:
			if x.writeErr != nil {
				x.reusable = false
			}
		default:
			// The upstream answered without reading the whole body: the
			// connection is out of step.
			x.reusable = false
		}
	}
	x.relMu.Lock()
	if x.released {
		x.relMu.Unlock()
		return
	}
	x.released = true
	reuse := x.reusable && !x.abandoned.Load()
	x.relMu.Unlock()
	if reuse {
		x.c.put(x.cn)
		return
	}
	x.closeConn()
}

// discard ends a failed or abandoned exchange.
func (x *h1Body) discard() {
	x.finished = true
	if x.stop != nil {
		x.stop()
	}
	x.relMu.Lock()
	if x.released {
		x.relMu.Unlock()
		return
	}
	x.released = true
	x.relMu.Unlock()
	x.closeConn()
}

// closeConn closes the connection, which stops the writer, and the request
// input, which stops a writer waiting on the web server, then waits for the
// writer so nothing outlives the exchange.
func (x *h1Body) closeConn() {
	x.cn.nc.Close()
	if x.writeDone != nil {
		if c, ok := x.input.(io.Closer); ok {
			select {
			case <-x.writeDone:
			default:
				_ = c.Close()
			}
		}
		<-x.writeDone
	}
}

func writeFixed(w io.Writer, head []byte, body io.Reader, n int64) error {
	if _, err := w.Write(head); err != nil {
		return err
	}
	copied, err := io.Copy(w, inputReader{io.LimitReader(body, n)})
	if err != nil {
		return err
	}
	if copied < n {
		return &inputError{fmt.Errorf("request body ended %d bytes short of its length: %w", n-copied, io.ErrUnexpectedEOF)}
	}
	return nil
}

// writeChunked sends a body of unknown length with chunked framing, one
// chunk per read, so a streamed body reaches the upstream as it arrives.
func writeChunked(w io.Writer, head []byte, body io.Reader) error {
	buf := make([]byte, 32<<10)
	out := append(make([]byte, 0, len(head)+16), head...)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			out = strconv.AppendInt(out, int64(n), 16)
			out = append(out, '\r', '\n')
			if _, err := w.Write(out); err != nil {
				return err
			}
			out = out[:0]
			if _, err := w.Write(append(buf[:n:n], "\r\n"...)); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			out = append(out, "0\r\n\r\n"...)
			_, err := w.Write(out)
			return err
		}
		if rerr != nil {
			return &inputError{rerr}
		}
	}
}

// inputReader marks read errors of the request body as such, so io.Copy's
// error tells them from write errors.
type inputReader struct{ r io.Reader }

func (ir inputReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if err != nil && err != io.EOF {
		err = &inputError{err}
	}
	return n, err
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
