package fcgi

// The client: sends requests in any role to a FastCGI application (php-fpm,
// this package's server, anything else) and streams the reply back.
//
// Each connection has one read loop goroutine that owns the record reader and
// hands records to the request they belong to; writes are serialised by the
// connection's write lock so records of concurrent requests never interleave.
// A request's STDIN and DATA are written by a goroutine of their own, so a big
// request body and a big response move at the same time and cannot deadlock.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Pair is one FastCGI name-value pair; the client sends params in order.
type Pair struct{ Name, Value string }

// Client sends FastCGI requests to one application address. Its zero value
// (with Network and Address set) opens a connection per request. A Client is
// safe for concurrent use; set the fields before the first request.
type Client struct {
	// Network and Address are what to dial: "tcp" "127.0.0.1:9000" or
	// "unix" "/run/app.sock".
	Network, Address string
	// DialTimeout bounds connecting (default 10s; the request's context
	// bounds it too).
	DialTimeout time.Duration
	// KeepConn sets FCGI_KEEP_CONN and keeps connections for reuse. Without it
	// the application closes the connection after each request.
	KeepConn bool
	// MaxIdleConns bounds the connections kept idle with KeepConn (default 8).
	MaxIdleConns int
	// Multiplex puts several requests in flight on one connection (needs
	// KeepConn, which it implies, and an application that multiplexes).
	Multiplex bool
	// MaxReqsPerConn bounds the requests in flight on one connection with
	// Multiplex (default 32).
	MaxReqsPerConn int
	// IdleTimeout closes connections that stay idle that long (default 60s).
	IdleTimeout time.Duration
	// StderrLimit bounds the FCGI_STDERR bytes passed on per request
	// (default 64 KiB); the rest is dropped so a chatty application cannot
	// make the caller buffer without end.
	StderrLimit int64
	// AbortTimeout is how long an aborted request waits for the
	// application's END_REQUEST before the connection is given up
	// (default 5s).
	AbortTimeout time.Duration
	// ResponseBuffer bounds the memory holding STDOUT for a request whose
	// caller reads slowly (default 256 KiB), counted in the 16 KiB chunks
	// records are packed into, whatever their sizes: at most ResponseBuffer
	// plus one chunk. Beyond it the connection's read loop waits, which on a multiplexed connection delays the other
	// requests: FastCGI has no per-request flow control.
	ResponseBuffer int
	// MaxConns bounds the connections open at once (0: no bound). A request
	// that finds none free waits for one, within its context. Set it to at
	// most the application's worker count for php-fpm with KeepConn: a
	// php-fpm child serves one connection until it closes, so connections
	// beyond the children wait in the listen queue behind idle kept ones.
	MaxConns int
	// Dial replaces net.Dialer, for tests and custom transports.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	mu      sync.Mutex
	idle    []*clientConn // KeepConn without Multiplex: connections with no request
	shared  []*clientConn // Multiplex: connections accepting more requests
	dialing *dialWait     // Multiplex: a connection being dialled
	open    int           // connections dialled and not yet closed
	// mpxRefused: the application answered FCGI_CANT_MPX_CONN, so Multiplex
	// falls back to one request per connection.
	mpxRefused atomic.Bool
	freed      chan struct{} // closed when a connection goes idle or closes
	closed     bool
}

// Errors for the protocol statuses an application may end a request with.
// Do and Stdout reads return them wrapped in an *EndRequestError.
var (
	ErrCantMpxConn = errors.New("fcgi: the application does not multiplex connections (FCGI_CANT_MPX_CONN)")
	ErrOverloaded  = errors.New("fcgi: the application is overloaded (FCGI_OVERLOADED)")
	ErrUnknownRole = errors.New("fcgi: the application does not play this role (FCGI_UNKNOWN_ROLE)")
	// ErrClientClosed is returned by Do after Close.
	ErrClientClosed = errors.New("fcgi: client closed")
)

// EndRequestError is an END_REQUEST whose protocol status is not
// FCGI_REQUEST_COMPLETE. errors.Is matches ErrCantMpxConn, ErrOverloaded and
// ErrUnknownRole.
type EndRequestError struct {
	ProtocolStatus uint8
	AppStatus      uint32
}

func (e *EndRequestError) Error() string {
	if base := e.Unwrap(); base != nil {
		return base.Error()
	}
	return fmt.Sprintf("fcgi: request ended with protocol status %d", e.ProtocolStatus)
}

func (e *EndRequestError) Unwrap() error {
	switch e.ProtocolStatus {
	case StatusCantMpxConn:
		return ErrCantMpxConn
	case StatusOverloaded:
		return ErrOverloaded
	case StatusUnknownRole:
		return ErrUnknownRole
	}
	return nil
}

// ClientRequest is one request to send.
type ClientRequest struct {
	Role   Role      // 0 means RESPONDER
	Params []Pair    // sent in this order
	Stdin  io.Reader // request body; nil sends an empty stream
	Data   io.Reader // FILTER only: the file data (FCGI_DATA)
	Stderr io.Writer // receives FCGI_STDERR (bounded); nil discards it
}

// Response is the application's reply. Stdout streams the raw CGI output
// (header block and body; see ReadCGIResponse). Close Stdout when done:
// closing it before io.EOF aborts the request (FCGI_ABORT_REQUEST).
type Response struct {
	Stdout io.ReadCloser
	// AppStatus and ProtocolStatus come from END_REQUEST; they are valid
	// after Stdout returned io.EOF.
	AppStatus      uint32
	ProtocolStatus uint8
}

func (c *Client) dialTimeout() time.Duration  { return clientDefault(c.DialTimeout, 10*time.Second) }
func (c *Client) idleTimeout() time.Duration  { return clientDefault(c.IdleTimeout, 60*time.Second) }
func (c *Client) abortTimeout() time.Duration { return clientDefault(c.AbortTimeout, 5*time.Second) }
func (c *Client) keepConn() bool              { return c.KeepConn || c.Multiplex }

func (c *Client) maxIdle() int {
	if c.MaxIdleConns > 0 {
		return c.MaxIdleConns
	}
	return 8
}

func (c *Client) maxReqs() int {
	if !c.Multiplex || c.mpxRefused.Load() {
		return 1
	}
	if c.MaxReqsPerConn > 0 {
		return min(c.MaxReqsPerConn, 65535)
	}
	return 32
}

func (c *Client) stderrLimit() int64 {
	if c.StderrLimit > 0 {
		return c.StderrLimit
	}
	return 64 << 10
}

func (c *Client) responseBuffer() int {
	if c.ResponseBuffer > 0 {
		return c.ResponseBuffer
	}
	return 256 << 10
}

func clientDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Do sends req and returns once the application has begun its reply (the
// first STDOUT bytes) or ended the request. The request body is streamed
// concurrently and may still be in flight when Do returns. ctx bounds the
// whole exchange: cancelling it aborts the request and makes Stdout reads
// fail.
//
// A failure to send on a reused connection (one the application closed while
// it sat idle) is retried on another connection: nothing of the request had
// reached the application then. So is a GET, HEAD, OPTIONS or TRACE
// request (by REQUEST_METHOD) with an in-memory body whose reused connection
// closed before any reply: php-fpm children that exit after pm.max_requests
// close their kept connection that way. Nothing else is retried.
func (c *Client) Do(ctx context.Context, req *ClientRequest) (*Response, error) {
	role := req.Role
	if role == 0 {
		role = RoleResponder
	}
	if req.Data != nil && role != RoleFilter {
		return nil, fmt.Errorf("fcgi: request Data is only sent in the FILTER role, not %v", role)
	}
	head, inlineBody, err := c.encodeHead(role, req)
	if err != nil {
		return nil, err
	}
	replayable := inlineBody && idempotent(req.Params)
	for attempt := 0; ; attempt++ {
		cc, st, err := c.getConn(ctx, req.Stderr)
		if err != nil {
			return nil, err
		}
		resp, err := cc.start(ctx, st, head, req, inlineBody, replayable)
		if err != nil && attempt < maxStaleRetries && errors.Is(err, errStaleConn) {
			// Only a reused connection fails this way, and it is closed
			// now: each retry takes another idle connection or dials a
			// new one, so this ends once the idle ones are used up.
			continue
		}
		if err != nil && attempt == 0 && c.Multiplex && inlineBody && errors.Is(err, ErrCantMpxConn) {
			// The application does not multiplex after all: one request
			// per connection from now on, and this one again, which is safe
			// as it was refused before it ran and its body is in memory.
			c.mpxRefused.Store(true)
			continue
		}
		return resp, err
	}
}

// idempotent reports whether the request's REQUEST_METHOD may be sent
// twice (RFC 9110 9.2.2, as net/http decides it for retries).
func idempotent(params []Pair) bool {
	method := ""
	for _, p := range params {
		if p.Name == "REQUEST_METHOD" {
			method = p.Value
		}
	}
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// maxStaleRetries bounds the retries on stale kept connections: several may
// have gone stale together (an application restarted, or recycling its
// children while the client held more than one idle connection).
const maxStaleRetries = 4

// errStaleConn marks a send that failed on a reused connection before any of
// the request could have been processed.
var errStaleConn = errors.New("fcgi: reused connection was closed by the application")

// encodeHead encodes BEGIN_REQUEST and PARAMS with a placeholder id (patched
// per attempt) and, when the body is small and already in memory, the whole
// STDIN and DATA streams too, so a typical request is a single Write.
func (c *Client) encodeHead(role Role, req *ClientRequest) (head []byte, inline bool, err error) {
	var flags byte
	if c.keepConn() {
		flags = flagKeepConn
	}
	head = make([]byte, 0, 512)
	var begin [headerLen + beginBodyLen]byte
	recordHeader{Version: version1, Type: typeBeginRequest, ContentLength: beginBodyLen}.put(begin[:])
	begin[8], begin[9], begin[10] = byte(role>>8), byte(role), flags
	head = append(head, begin[:]...)

	var content []byte
	for _, p := range req.Params {
		if len(p.Name) > maxPairLength || len(p.Value) > maxPairLength {
			return nil, false, fmt.Errorf("fcgi: param %.40q too long", p.Name)
		}
		// Keep pairs whole within a record where they fit, as Apache does;
		// some applications do not reassemble straddling pairs.
		if len(content) > 0 && len(content)+pairSize(p.Name, p.Value) > maxContent {
			head = appendRecord(head, typeParams, 0, content)
			content = content[:0]
		}
		content = appendPair(content, p.Name, p.Value)
		for len(content) > maxContent {
			head = appendRecord(head, typeParams, 0, content[:maxContent])
			content = append(content[:0], content[maxContent:]...)
		}
	}
	if len(content) > 0 {
		head = appendRecord(head, typeParams, 0, content)
	}
	head = appendEmptyRecord(head, typeParams, 0)

	stdin, ok1 := clientSmallBody(req.Stdin)
	data, ok2 := clientSmallBody(req.Data)
	if !ok1 || !ok2 {
		return head, false, nil
	}
	if len(stdin) > 0 {
		head = appendRecord(head, typeStdin, 0, stdin)
	}
	head = appendEmptyRecord(head, typeStdin, 0)
	if role == RoleFilter {
		if len(data) > 0 {
			head = appendRecord(head, typeData, 0, data)
		}
		head = appendEmptyRecord(head, typeData, 0)
	}
	return head, true, nil
}

// clientSmallBody returns the bytes of an in-memory body of at most one record,
// without consuming it when it is larger. ok is false when the body must be
// streamed.
func clientSmallBody(r io.Reader) (b []byte, ok bool) {
	if r == nil {
		return nil, true
	}
	type lener interface{ Len() int }
	l, isLener := r.(lener)
	if !isLener || l.Len() > 32<<10 {
		return nil, false
	}
	switch r.(type) {
	case interface{ Bytes() []byte }, io.Seeker:
	default:
		// Only buffers and readers over memory have a Len that is the rest of
		// the stream.
		return nil, false
	}
	b = make([]byte, l.Len())
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, false
	}
	return b, true
}

// setRecordIDs rewrites the request id of every record in b (a sequence of
// whole records built by encodeHead).
func setRecordIDs(b []byte, id uint16) {
	for len(b) >= headerLen {
		b[2], b[3] = byte(id>>8), byte(id)
		h := parseHeader(b)
		b = b[headerLen+int(h.ContentLength)+int(h.PaddingLength):]
	}
}

// getConn returns a connection with a request slot reserved.
func (c *Client) getConn(ctx context.Context, stderr io.Writer) (*clientConn, *clientStream, error) {
	if c.Multiplex {
		return c.getSharedConn(ctx, stderr)
	}
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return nil, nil, ErrClientClosed
		}
		for len(c.idle) > 0 {
			cc := c.idle[len(c.idle)-1]
			c.idle = c.idle[:len(c.idle)-1]
			if st := cc.reserve(stderr); st != nil {
				c.mu.Unlock()
				return cc, st, nil
			}
		}
		if c.MaxConns <= 0 || c.open < c.MaxConns {
			break
		}
		if err := c.waitFreedLocked(ctx); err != nil {
			return nil, nil, err
		}
	}
	c.open++
	c.mu.Unlock()
	cc, err := c.dial(ctx)
	if err != nil {
		c.mu.Lock()
		c.open--
		c.signalFreedLocked()
		c.mu.Unlock()
		return nil, nil, err
	}
	st := cc.reserve(stderr)
	go cc.readLoop()
	return cc, st, nil
}

// waitFreedLocked waits, with c.mu held on entry and on a nil return, until
// a connection goes idle or closes (MaxConns).
func (c *Client) waitFreedLocked(ctx context.Context) error {
	if c.freed == nil {
		c.freed = make(chan struct{})
	}
	ch := c.freed
	c.mu.Unlock()
	select {
	case <-ch:
		c.mu.Lock()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fcgi: waiting for one of %d connections to %s: %w", c.MaxConns, c.Address, ctx.Err())
	}
}

func (c *Client) signalFreedLocked() {
	if c.freed != nil {
		close(c.freed)
		c.freed = nil
	}
}

// dialWait lets multiplexed requests that found no free slot wait for the
// connection being dialled instead of each dialling one.
type dialWait struct{ done chan struct{} }

func (c *Client) getSharedConn(ctx context.Context, stderr io.Writer) (*clientConn, *clientStream, error) {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return nil, nil, ErrClientClosed
		}
		for _, cc := range c.shared {
			if st := cc.reserve(stderr); st != nil {
				c.mu.Unlock()
				return cc, st, nil
			}
		}
		if c.MaxConns > 0 && c.open >= c.MaxConns && c.dialing == nil {
			if err := c.waitFreedLocked(ctx); err != nil {
				return nil, nil, err
			}
			continue
		}
		if w := c.dialing; w != nil {
			c.mu.Unlock()
			select {
			case <-w.done:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			c.mu.Lock()
			continue
		}
		w := &dialWait{done: make(chan struct{})}
		c.dialing = w
		c.open++
		c.mu.Unlock()
		cc, err := c.dial(ctx)
		c.mu.Lock()
		c.dialing = nil
		close(w.done)
		if err != nil {
			c.open--
			c.signalFreedLocked()
			c.mu.Unlock()
			return nil, nil, err
		}
		st := cc.reserve(stderr)
		c.shared = append(c.shared, cc)
		c.mu.Unlock()
		go cc.readLoop()
		return cc, st, nil
	}
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.dialTimeout())
	defer cancel()
	var nc net.Conn
	var err error
	if c.Dial != nil {
		nc, err = c.Dial(dctx, c.Network, c.Address)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, c.Network, c.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("fcgi: connect to %s %s: %w", c.Network, c.Address, err)
	}
	// The caller reserves a request slot before starting the read loop, so
	// a connection the peer closes at once still carries the request's error.
	return newClientConn(c, nc), nil
}

// putIdle is called when a connection has no request in flight any more.
func (c *Client) putIdle(cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A request slot or a connection is free: wake a request waiting for
	// MaxConns.
	defer c.signalFreedLocked()
	if c.closed || !c.keepConn() {
		go cc.close(errClientConnDone)
		return
	}
	if c.Multiplex {
		idle := 0
		for _, o := range c.shared {
			if o.idle() {
				idle++
			}
		}
		if idle > c.maxIdle() {
			c.removeShared(cc)
			go cc.close(errClientConnDone)
			return
		}
		cc.armIdleTimer()
		return
	}
	if len(c.idle) >= c.maxIdle() {
		go cc.close(errClientConnDone)
		return
	}
	c.idle = append(c.idle, cc)
	cc.armIdleTimer()
}

// forget removes a connection that is closing from the pools.
func (c *Client) forget(cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	c.signalFreedLocked()
	for i, o := range c.idle {
		if o == cc {
			c.idle = append(c.idle[:i], c.idle[i+1:]...)
			break
		}
	}
	c.removeShared(cc)
}

func (c *Client) removeShared(cc *clientConn) {
	for i, o := range c.shared {
		if o == cc {
			c.shared = append(c.shared[:i], c.shared[i+1:]...)
			return
		}
	}
}

// Close closes the idle connections and makes later requests fail with
// ErrClientClosed. Requests in flight finish; their connections then close.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := append(append([]*clientConn(nil), c.idle...), c.shared...)
	c.idle, c.shared = nil, nil
	c.mu.Unlock()
	for _, cc := range conns {
		if cc.idle() {
			cc.close(ErrClientClosed)
		}
	}
	return nil
}

// GetValues asks the application for the FCGI_GET_VALUES variables names
// (ValueMaxConns, ValueMaxReqs, ValueMpxsConns) and returns the answer.
func (c *Client) GetValues(ctx context.Context, names ...string) (map[string]string, error) {
	var content []byte
	for _, n := range names {
		content = appendPair(content, n, "")
	}
	if len(content) > maxContent {
		return nil, errors.New("fcgi: GET_VALUES query does not fit one record")
	}
	msg := appendRecord(nil, typeGetValues, nullRequestID, content)
	for attempt := 0; ; attempt++ {
		cc, st, err := c.getConn(ctx, nil)
		if err != nil {
			return nil, err
		}
		vals, err := cc.getValues(ctx, msg)
		// The reserved slot only kept the connection to ourselves.
		cc.release(st)
		if err != nil && attempt < maxStaleRetries && errors.Is(err, errStaleConn) {
			// Only a reused connection fails this way, and it is closed
			// now: each retry takes another idle connection or dials a
			// new one, so this ends once the idle ones are used up.
			continue
		}
		return vals, err
	}
}
