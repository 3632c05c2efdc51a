package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/field"
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
func (c *h1Client) roundTrip(ctx context.Context, q *h1Request) (*filter.Message, error) {
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

func (c *h1Client) exchange(ctx context.Context, cn *h1Conn, q *h1Request) (*filter.Message, error) {
	x := &h1Body{c: c, cn: cn, ctx: ctx, awaiting: true}
	if ctx.Done() != nil {
		x.stop = context.AfterFunc(ctx, func() {
			cn.cancelled.Store(true)
			_ = cn.nc.SetDeadline(aLongTimeAgo)
		})
	}
	fail := func(op string, err error) (*filter.Message, error) {
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
	h, err := readResponseHead(cn.br, q.method)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && !cn.cancelled.Load() {
			x.discard()
			err = fmt.Errorf("no response within response_timeout (%v): %w", c.responseTimeout, err)
			return nil, &Error{Op: "request", Status: http.StatusGatewayTimeout, Err: err}
		}
		if h.started {
			return fail("response", err)
		}
		return fail("request", err)
	}
	x.headDone()
	x.reusable = c.keepAlive && h.keepAlive
	m := &filter.Message{Status: h.status, Reason: h.reason, Header: h.header, Length: h.length}
	switch {
	case h.noBody:
		// HEAD keeps the length a GET would have had; 1xx, 204 and 304
		// have none.
		x.done()
		if !filter.BodyAllowed(h.status) {
			m.Length = -1
		}
		return m, nil
	case h.chunked:
		x.r = httputil.NewChunkedReader(cn.br)
		x.chunked = true
		m.Length = -1
	case h.length >= 0:
		x.left = h.length
		if x.left == 0 {
			x.done()
			m.Body = http.NoBody
			return m, nil
		}
	default:
		x.r = cn.br // to the connection's end
		x.reusable = false
		m.Length = -1
	}
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
	r        io.Reader  // chunked or close-delimited; nil: Content-Length
	left     int64      // Content-Length bytes still to read
	chunked  bool
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
	var n int
	var err error
	if x.r == nil {
		if int64(len(p)) > x.left {
			p = p[:x.left]
		}
		n, err = x.cn.br.Read(p)
		x.left -= int64(n)
		if x.left == 0 {
			x.done()
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	} else {
		n, err = x.r.Read(p)
		if err == io.EOF {
			if x.chunked {
				if terr := skipTrailers(x.cn.br); terr != nil {
					x.reusable = false
					err = terr
				}
			}
			if err == io.EOF {
				x.done()
				return n, io.EOF
			}
		}
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

// skipTrailers reads a chunked body's trailer section up to its empty line;
// trailers are not passed on (nor are they by net/http's Body).
func skipTrailers(br *bufio.Reader) error {
	for range 1000 {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
			return nil
		}
	}
	return errors.New("too many trailer fields")
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

// responseHead is a parsed status line and header section.
type responseHead struct {
	started   bool // some of the response arrived
	status    int
	reason    string
	header    filter.Header
	length    int64 // -1 unknown
	chunked   bool
	noBody    bool
	keepAlive bool
	http10    bool // an HTTP/1.0 answer: Transfer-Encoding is ignored
}

// maxHeadBytes bounds a response head, as net/http's default does for the
// same reason: an upstream cannot make the bridge buffer without end.
const maxHeadBytes = 1 << 20

var headBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// readResponseHead reads the status line and the header section, skipping
// interim (1xx) responses, and works out how the body is framed (RFC 9112
// section 6.3).
func readResponseHead(br *bufio.Reader, method string) (responseHead, error) {
	var h responseHead
	bp := headBuffers.Get().(*[]byte)
	defer func() { *bp = (*bp)[:0]; headBuffers.Put(bp) }()
	for interim := 0; ; interim++ {
		raw, err := readHeadBlock(br, (*bp)[:0], &h.started)
		*bp = raw
		if err != nil {
			return h, err
		}
		// One string for the whole head: the fields are cut out of it
		// instead of costing a string each.
		s := string(raw)
		line, rest, _ := strings.Cut(s, "\n")
		if err := h.parseStatus(strings.TrimSuffix(line, "\r")); err != nil {
			return h, err
		}
		if h.status >= 100 && h.status < 200 {
			if h.status == http.StatusSwitchingProtocols {
				return h, errors.New("upstream switched protocols, which the bridge does not relay")
			}
			if interim == maxInterim {
				return h, fmt.Errorf("more than %d interim (1xx) answers", maxInterim)
			}
			continue // 100 Continue, 103 Early Hints: the real answer follows
		}
		if err := h.parseFields(rest); err != nil {
			return h, err
		}
		if method == http.MethodHead || !filter.BodyAllowed(h.status) {
			h.noBody, h.chunked = true, false
		}
		return h, nil
	}
}

// readHeadBlock appends lines up to and including the empty line that ends
// a head.
func readHeadBlock(br *bufio.Reader, dst []byte, started *bool) ([]byte, error) {
	for partial := false; ; {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			*started = true
		}
		if len(dst)+len(line) > maxHeadBytes {
			return dst, fmt.Errorf("response head larger than %d bytes", maxHeadBytes)
		}
		dst = append(dst, line...)
		if err == bufio.ErrBufferFull {
			partial = true
			continue // a long line: the rest follows
		}
		if err != nil {
			if err == io.EOF && *started {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
		if partial {
			// The end of a long line, which may be just its "\r\n" or
			// "\n": not an empty line.
			partial = false
			continue
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			if len(dst) == len(line) {
				// A stray empty line before the status line is tolerated
				// (RFC 9112 section 2.2).
				dst = dst[:0]
				continue
			}
			return dst, nil
		}
	}
}

func (h *responseHead) parseStatus(line string) error {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || len(rest) < 3 {
		return fmt.Errorf("malformed status line %q", truncate(line))
	}
	switch proto {
	case "HTTP/1.1":
		h.keepAlive, h.http10 = true, false
	case "HTTP/1.0":
		h.keepAlive, h.http10 = false, true
	default:
		return fmt.Errorf("unsupported protocol in status line %q", truncate(line))
	}
	code, reason, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || n < 100 {
		return fmt.Errorf("malformed status code in %q", truncate(line))
	}
	if !field.Value(reason) {
		return fmt.Errorf("control character in status line %q", truncate(line))
	}
	h.status = n
	h.reason = ""
	if reason != "" && reason != http.StatusText(n) {
		h.reason = reason
	}
	return nil
}

// parseFields fills the header without hop-by-hop fields and decides the
// framing. Field values are substrings of block.
func (h *responseHead) parseFields(block string) error {
	h.header, h.length, h.chunked = nil, -1, false
	if strings.Contains(block, "\n ") || strings.Contains(block, "\n\t") {
		// obs-fold: continuation lines belong to the field above, whatever
		// becomes of it; RFC 9112 section 5.2 has a proxy replace each
		// fold with a space.
		var err error
		if block, err = unfold(block); err != nil {
			return err
		}
	}
	var connection []string
	hasTE, hasCL := false, false
	fields := make(filter.Header, 0, 8)
	for block != "" {
		var line string
		line, block, _ = strings.Cut(block, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !field.Token(name) {
			return fmt.Errorf("malformed header line %q", truncate(line))
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		value = strings.Trim(value, " \t")
		if !field.Value(value) {
			// A bare CR would be a line break to the next reader of the
			// head; net/http refuses these too.
			return fmt.Errorf("control character in header %s", name)
		}
		switch name {
		case "Content-Length":
			n, ok := parseDigits(value)
			if !ok || (hasCL && n != h.length) {
				return fmt.Errorf("invalid Content-Length %q", truncate(value))
			}
			h.length, hasCL = n, true
			continue
		case "Transfer-Encoding":
			// net/http's rules (RFC 9112 section 6.1), since an upstream
			// and the bridge that disagree on where a body ends would take
			// the rest of it for the next answer on a kept connection.
			if h.http10 {
				// HTTP/1.0 has no transfer codings: the field is ignored
				// and the body framed by Content-Length or the close.
				continue
			}
			if hasTE {
				return errors.New("more than one Transfer-Encoding field: the body's end is ambiguous")
			}
			hasTE = true
			if !strings.EqualFold(value, "chunked") {
				// A coding other than chunked alone ("gzip, chunked",
				// "chunked, chunked") would either be passed on
				// undeclared or decoded twice.
				return fmt.Errorf("unsupported Transfer-Encoding %q: only \"chunked\" alone frames a body", truncate(value))
			}
			h.chunked = true
			continue
		case "Connection":
			var closing bool
			if connection, closing = connectionOptions(connection, value); closing {
				h.keepAlive = false
			}
			continue
		}
		if hopByHop[name] {
			continue
		}
		fields = append(fields, filter.Field{Name: name, Value: value})
	}
	if hasTE {
		// Transfer-Encoding overrides Content-Length; a message with both
		// may be an attempt at smuggling, so its connection is not reused
		// (RFC 9112 section 6.3).
		h.length = -1
		if hasCL {
			h.keepAlive = false
		}
	}
	if len(connection) > 0 {
		kept := fields[:0]
		for _, f := range fields {
			if !connectionNamed(connection, f.Name) {
				kept = append(kept, f)
			}
		}
		fields = kept
	}
	if len(fields) > 0 {
		h.header = fields
	}
	return nil
}

// unfold joins continuation lines to the line above with one space.
func unfold(block string) (string, error) {
	var b strings.Builder
	b.Grow(len(block))
	first := true
	for block != "" {
		var line string
		line, block, _ = strings.Cut(block, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if first {
				return "", fmt.Errorf("malformed header line %q", truncate(line))
			}
			b.WriteByte(' ')
			b.WriteString(strings.Trim(line, " \t"))
			continue
		}
		if !first {
			b.WriteString("\r\n")
		}
		b.WriteString(line)
		first = false
	}
	b.WriteString("\r\n")
	return b.String(), nil
}

// parseDigits parses a Content-Length: digits only (no sign, no spaces).
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
