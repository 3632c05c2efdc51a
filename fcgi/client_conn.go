package fcgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

var (
	// errConnLost is the connection ending while a request was in flight.
	errConnLost = errors.New("fcgi: connection lost before the request ended")

	errClientConnDone    = errors.New("fcgi: connection no longer needed")
	errClientIdleTimeout = errors.New("fcgi: idle connection timed out")
)

// clientConn is one connection to the application. The read loop goroutine
// owns rr; writers take wlock; mu guards the rest.
type clientConn struct {
	client *Client
	nc     net.Conn
	rr     *recordReader
	wlock  chan struct{} // one token: a write lock that can be waited for with a deadline
	done   chan struct{} // closed when the read loop has exited

	gvMu sync.Mutex // one GET_VALUES in flight per connection

	mu        sync.Mutex
	streams   map[uint16]*clientStream
	reserved  int   // request ids in use, including requests whose body is still being written
	used      bool  // has carried a request before: a send failure means it went stale
	err       error // why the connection closed; nil while usable
	idleTimer *time.Timer
	gv        chan getValuesResult
}

type getValuesResult struct {
	vals map[string]string
	err  error
}

func newClientConn(c *Client, nc net.Conn) *clientConn {
	cc := &clientConn{
		client:  c,
		nc:      nc,
		rr:      newRecordReader(nc),
		wlock:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		streams: make(map[uint16]*clientStream),
	}
	cc.wlock <- struct{}{}
	return cc
}

// reserve allocates a request id and its stream, or returns nil when the
// connection is closed or full.
func (cc *clientConn) reserve(stderr io.Writer) *clientStream {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil || cc.reserved >= cc.client.maxReqs() {
		return nil
	}
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
		cc.idleTimer = nil
	}
	id := uint16(1)
	for cc.streams[id] != nil {
		id++
	}
	st := &clientStream{cc: cc, id: id, reused: cc.used, refs: 1, startCh: make(chan struct{}),
		stderr: stderr, stderrLeft: cc.client.stderrLimit(), bufLimit: cc.client.responseBuffer()}
	st.cond.L = &st.mu
	st.resp.Stdout = st
	cc.used = true
	cc.streams[id] = st
	cc.reserved++
	return st
}

// release frees st's id once both its END_REQUEST (or failure) and its body
// writer are done, and pools the connection when nothing else uses it.
func (cc *clientConn) release(st *clientStream) {
	cc.mu.Lock()
	if cc.streams[st.id] == st {
		delete(cc.streams, st.id)
		cc.reserved--
	}
	reusable := cc.err == nil && cc.reserved == 0
	cc.mu.Unlock()
	if reusable {
		cc.client.putIdle(cc)
	}
}

func (cc *clientConn) idle() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil && cc.reserved == 0
}

func (cc *clientConn) armIdleTimer() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
	}
	cc.idleTimer = time.AfterFunc(cc.client.idleTimeout(), func() {
		cc.mu.Lock()
		idle := cc.err == nil && cc.reserved == 0
		cc.mu.Unlock()
		if idle {
			cc.close(errClientIdleTimeout)
		}
	})
}

// close gives the connection up: every request still in flight fails with err.
func (cc *clientConn) close(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
	}
	streams := make([]*clientStream, 0, len(cc.streams))
	for _, st := range cc.streams {
		streams = append(streams, st)
	}
	gv := cc.gv
	cc.mu.Unlock()

	cc.nc.Close()
	cc.client.forget(cc)
	lost := fmt.Errorf("%w (%s): %w", errConnLost, cc.nc.RemoteAddr(), err)
	for _, st := range streams {
		st.fail(lost)
	}
	if gv != nil {
		select {
		case gv <- getValuesResult{err: lost}:
		default:
		}
	}
}

func (cc *clientConn) closedErr() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err
}

// write sends whole records. It fails without writing once the connection
// is closed.
func (cc *clientConn) write(b []byte) error {
	select {
	case <-cc.wlock:
	case <-cc.done:
		return cc.closedErr()
	}
	defer func() { cc.wlock <- struct{}{} }()
	if err := cc.closedErr(); err != nil {
		return err
	}
	_, err := cc.nc.Write(b)
	return err
}

// tryWrite is write with a bound on the wait for the lock, for ABORT: a body
// writer blocked on a peer that stopped reading must not hold the abort.
func (cc *clientConn) tryWrite(b []byte, wait time.Duration) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-cc.wlock:
	case <-cc.done:
		return cc.closedErr()
	case <-t.C:
		return errors.New("fcgi: connection write blocked")
	}
	defer func() { cc.wlock <- struct{}{} }()
	cc.nc.SetWriteDeadline(time.Now().Add(wait))
	defer cc.nc.SetWriteDeadline(time.Time{})
	_, err := cc.nc.Write(b)
	return err
}

// start sends the request head on the reserved stream st and waits for the
// reply to begin.
func (cc *clientConn) start(ctx context.Context, st *clientStream, head []byte, req *ClientRequest, inline, replayable bool) (*Response, error) {
	if !inline {
		st.mu.Lock()
		st.refs++ // the body writer's
		st.mu.Unlock()
	}
	setRecordIDs(head, st.id)
	if err := cc.write(head); err != nil {
		// Closing fails st, which drops its END reference.
		cc.close(err)
		if !inline {
			st.unref()
		}
		if st.reused {
			return nil, fmt.Errorf("%w: %v", errStaleConn, err)
		}
		return nil, fmt.Errorf("fcgi: send request to %s: %w", cc.nc.RemoteAddr(), err)
	}
	if !inline {
		role := req.Role
		if role == 0 {
			role = RoleResponder
		}
		go cc.writeBody(st, req.Stdin, req.Data, role)
	}
	stop := context.AfterFunc(ctx, func() { st.cancel(context.Cause(ctx)) })
	st.mu.Lock()
	if st.refs == 0 {
		// Already finished and released: nothing left to cancel.
		st.mu.Unlock()
		stop()
	} else {
		st.stopCtx = stop
		st.mu.Unlock()
	}

	select {
	case <-st.startCh:
	case <-ctx.Done():
		st.cancel(context.Cause(ctx))
		return nil, ctx.Err()
	}
	st.mu.Lock()
	failed := len(st.chunks) == 0 && st.err != nil && st.err != io.EOF
	err := st.err
	if st.cancelErr != nil {
		failed, err = true, st.cancelErr
	}
	gotRecord := st.gotRecord // the read loop writes it, under mu
	st.mu.Unlock()
	if failed {
		// An *EndRequestError (OVERLOADED and the like) or a lost connection
		// before any output.
		st.Close()
		if replayable && st.reused && !gotRecord && errors.Is(err, errConnLost) {
			// A kept connection the application closed as the request
			// went out (php-fpm recycling a child after pm.max_requests):
			// nothing came back, and the request is safe to send again.
			return nil, fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return nil, err
	}
	return &st.resp, nil
}

// writeBody streams STDIN (and DATA for FILTER) as records, each read
// becoming one record, so the application sees the body as it comes.
func (cc *clientConn) writeBody(st *clientStream, stdin, data io.Reader, role Role) {
	defer st.unref()
	buf := clientGetRecordBuf()
	defer clientPutRecordBuf(buf)
	err := cc.copyStream(st, typeStdin, stdin, buf)
	if err == nil && role == RoleFilter {
		err = cc.copyStream(st, typeData, data, buf)
	}
	var bodyErr *requestBodyError
	switch {
	case err == nil, errors.Is(err, errClientStreamStopped):
	case errors.As(err, &bodyErr):
		// The application must not take a truncated body for a whole one:
		// abort, and keep the id until its END_REQUEST.
		st.cancel(err)
	default:
		cc.close(err)
	}
}

var errClientStreamStopped = errors.New("fcgi: request already ended")

type requestBodyError struct {
	what string
	err  error
}

func (e *requestBodyError) Error() string {
	return "fcgi: read request " + e.what + ": " + e.err.Error()
}
func (e *requestBodyError) Unwrap() error { return e.err }

func (cc *clientConn) copyStream(st *clientStream, t recType, r io.Reader, buf *recordBuf) error {
	if r != nil {
		for {
			if st.stopped() {
				return errClientStreamStopped
			}
			buf.reset()
			n, rerr := r.Read(buf.tail())
			if n > 0 {
				buf.grow(n)
				if err := cc.write(buf.finish(t, st.id)); err != nil {
					return err
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				what := "body"
				if t == typeData {
					what = "data"
				}
				return &requestBodyError{what: what, err: rerr}
			}
		}
	}
	if st.stopped() {
		return errClientStreamStopped
	}
	return cc.write(appendEmptyRecord(nil, t, st.id))
}

var clientRecordBufPool = sync.Pool{New: func() any { return newRecordBuf() }}

func clientGetRecordBuf() *recordBuf  { return clientRecordBufPool.Get().(*recordBuf) }
func clientPutRecordBuf(b *recordBuf) { b.reset(); clientRecordBufPool.Put(b) }

// readLoop reads the application's records until the connection ends.
func (cc *clientConn) readLoop() {
	defer close(cc.done)
	for {
		h, content, err := cc.rr.next()
		if err != nil {
			cc.close(fmt.Errorf("read: %w", err))
			return
		}
		if err := cc.dispatch(h, content); err != nil {
			cc.close(err)
			return
		}
	}
}

func (cc *clientConn) lookup(id uint16) *clientStream {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.streams[id]
}

func (cc *clientConn) dispatch(h recordHeader, content []byte) error {
	switch h.Type {
	case typeStdout, typeStderr, typeEndRequest:
		if h.ID == nullRequestID {
			return fmt.Errorf("fcgi: protocol error: %v record for request id 0", h.Type)
		}
		st := cc.lookup(h.ID)
		if st == nil {
			// A late record for a request already given up (aborted and
			// timed out, or ended): nothing is waiting for it.
			return nil
		}
		switch h.Type {
		case typeStdout:
			st.deliver(content)
		case typeStderr:
			st.writeStderr(content)
		case typeEndRequest:
			if len(content) < endBodyLen {
				return fmt.Errorf("fcgi: protocol error: END_REQUEST body of %d bytes, want %d", len(content), endBodyLen)
			}
			app := uint32(content[0])<<24 | uint32(content[1])<<16 | uint32(content[2])<<8 | uint32(content[3])
			st.end(app, content[4])
		}
		return nil
	case typeGetValuesResult:
		vals := make(map[string]string)
		err := decodePairs(content, pairLimits{MaxPairs: 64}, func(name, value []byte) error {
			vals[string(name)] = string(value)
			return nil
		})
		if err != nil {
			err = fmt.Errorf("fcgi: malformed GET_VALUES_RESULT: %w", err)
		}
		cc.deliverValues(getValuesResult{vals: vals, err: err})
		return nil
	case typeUnknownType:
		t := "?"
		if len(content) > 0 {
			t = recType(content[0]).String()
		}
		cc.deliverValues(getValuesResult{err: fmt.Errorf("fcgi: the application answered UNKNOWN_TYPE for %s", t)})
		return nil
	}
	return fmt.Errorf("fcgi: protocol error: the application sent a %v record (request %d), which only web servers send", h.Type, h.ID)
}

func (cc *clientConn) deliverValues(r getValuesResult) {
	cc.mu.Lock()
	gv := cc.gv
	cc.gv = nil
	cc.mu.Unlock()
	if gv != nil {
		gv <- r
	}
}

func (cc *clientConn) getValues(ctx context.Context, msg []byte) (map[string]string, error) {
	cc.gvMu.Lock()
	defer cc.gvMu.Unlock()
	ch := make(chan getValuesResult, 1)
	cc.mu.Lock()
	reused := cc.used
	cc.gv = ch
	cc.mu.Unlock()
	if err := cc.write(msg); err != nil {
		cc.close(err)
		if reused {
			return nil, fmt.Errorf("%w: %v", errStaleConn, err)
		}
		return nil, fmt.Errorf("fcgi: send GET_VALUES to %s: %w", cc.nc.RemoteAddr(), err)
	}
	select {
	case r := <-ch:
		return r.vals, r.err
	case <-ctx.Done():
		// The answer may still come; without a way to tell it from a later
		// one, the connection is given up.
		cc.close(ctx.Err())
		return nil, ctx.Err()
	}
}

// clientChunkSize is the size of the buffers a response's STDOUT is copied
// into. Records are packed into them back to back whatever their size, so
// what a response holds is its payload rounded up to a chunk, never a buffer
// per record.
const clientChunkSize = 16 << 10

var clientChunkPool = sync.Pool{New: func() any { return new([clientChunkSize]byte) }}

// clientChunk is a pooled buffer holding b[r:w] of unread STDOUT.
type clientChunk struct {
	b    *[clientChunkSize]byte
	r, w int
}

// clientStream is one request on a connection and its Response.Stdout.
type clientStream struct {
	cc      *clientConn
	id      uint16
	reused  bool
	startCh chan struct{} // closed at the first STDOUT bytes, END_REQUEST or failure
	stopCtx func() bool

	// Set before the stream is visible to the read loop.
	stderr     io.Writer
	stderrLeft int64 // read loop only
	bufLimit   int

	mu         sync.Mutex
	cond       sync.Cond
	resp       Response
	chunks     []clientChunk
	buffered   int // unread payload bytes in chunks
	started    bool
	gotRecord  bool  // a STDOUT, STDERR or END_REQUEST record arrived for the stream
	ended      bool  // END_REQUEST arrived or the connection failed: no more records
	err        error // what Read returns once chunks are drained
	cancelErr  error // context cancellation: returned at once
	closed     bool  // the caller closed Stdout
	aborted    bool
	abortTimer *time.Timer
	refs       int // END (or failure) + body writer
}

func (st *clientStream) signalStart() {
	if !st.started {
		st.started = true
		close(st.startCh)
	}
}

// deliver copies a STDOUT record after what is already queued, waiting while
// the chunks held reach ResponseBuffer. What bounds memory is the chunks'
// capacity: records of one byte fill a chunk as densely as records of 64 KiB.
func (st *clientStream) deliver(content []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gotRecord = true
	for len(content) > 0 {
		if st.closed || st.ended || st.cancelErr != nil {
			return
		}
		if k := len(st.chunks); k > 0 && st.chunks[k-1].w < clientChunkSize {
			last := &st.chunks[k-1]
			n := copy(last.b[last.w:], content)
			last.w += n
			st.buffered += n
			content = content[n:]
			continue
		}
		if st.heldLocked() >= st.bufLimit {
			st.signalStart()
			st.cond.Broadcast()
			st.cond.Wait()
			continue
		}
		st.chunks = append(st.chunks, clientChunk{b: clientChunkPool.Get().(*[clientChunkSize]byte)})
	}
	if st.buffered > 0 {
		st.signalStart()
	}
	st.cond.Broadcast()
}

// heldLocked is the memory the stream holds for its caller.
func (st *clientStream) heldLocked() int { return len(st.chunks) * clientChunkSize }

func (st *clientStream) writeStderr(content []byte) {
	st.mu.Lock()
	st.gotRecord = true
	st.mu.Unlock()
	if st.stderr == nil || st.stderrLeft <= 0 || len(content) == 0 {
		return
	}
	n := int64(len(content))
	if n > st.stderrLeft {
		n = st.stderrLeft
	}
	st.stderrLeft -= n
	// A failing stderr writer must not fail the request.
	_, _ = st.stderr.Write(content[:n])
}

func (st *clientStream) end(appStatus uint32, protocolStatus uint8) {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return
	}
	st.ended = true
	st.gotRecord = true
	st.resp.AppStatus = appStatus
	st.resp.ProtocolStatus = protocolStatus
	var err error = io.EOF
	if protocolStatus != StatusRequestComplete {
		err = &EndRequestError{ProtocolStatus: protocolStatus, AppStatus: appStatus}
	}
	if st.abortTimer != nil {
		st.abortTimer.Stop()
	}
	st.mu.Unlock()
	// Release the connection before the caller can see EOF, so a caller
	// that sends its next request at once finds it idle instead of dialling.
	st.unref()
	st.mu.Lock()
	st.err = err
	st.signalStart()
	st.cond.Broadcast()
	st.mu.Unlock()
}

// fail ends the stream with err unless END_REQUEST already did.
func (st *clientStream) fail(err error) {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return
	}
	st.ended = true
	st.err = err
	if st.abortTimer != nil {
		st.abortTimer.Stop()
	}
	st.signalStart()
	st.cond.Broadcast()
	st.mu.Unlock()
	st.unref()
}

func (st *clientStream) unref() {
	st.mu.Lock()
	st.refs--
	last := st.refs == 0
	stop := st.stopCtx
	st.mu.Unlock()
	if last {
		if stop != nil {
			stop()
		}
		st.cc.release(st)
	}
}

// stopped reports whether the body writer should stop sending.
func (st *clientStream) stopped() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ended || st.closed || st.cancelErr != nil
}

// Read returns STDOUT bytes as they arrive, then io.EOF after END_REQUEST
// (or the *EndRequestError of an unsuccessful protocol status, or the error
// that ended the connection or the context).
func (st *clientStream) Read(p []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for len(st.chunks) == 0 && st.err == nil && st.cancelErr == nil && !st.closed {
		st.cond.Wait()
	}
	if st.cancelErr != nil {
		return 0, st.cancelErr
	}
	if st.closed {
		return 0, errors.New("fcgi: read from closed response")
	}
	if len(st.chunks) == 0 {
		return 0, st.err
	}
	n := 0
	for n < len(p) && len(st.chunks) > 0 {
		c := &st.chunks[0]
		k := copy(p[n:], c.b[c.r:c.w])
		n += k
		c.r += k
		if c.r == c.w {
			// Read to the end of what it holds: give it back, even when the
			// next record would have had room in it.
			clientChunkPool.Put(c.b)
			st.chunks[0] = clientChunk{}
			st.chunks = st.chunks[1:]
		}
	}
	st.buffered -= n
	st.cond.Broadcast()
	return n, nil
}

func (st *clientStream) dropChunksLocked() {
	for _, c := range st.chunks {
		clientChunkPool.Put(c.b)
	}
	st.chunks, st.buffered = nil, 0
}

// Close releases the response. Before END_REQUEST it aborts the request:
// FCGI_ABORT_REQUEST is sent and the rest of the reply is discarded.
func (st *clientStream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	st.dropChunksLocked()
	needAbort := !st.ended
	st.cond.Broadcast()
	st.mu.Unlock()
	if needAbort {
		st.sendAbort()
	}
	return nil
}

// cancel is Close for a cancelled context: reads fail with err at once.
func (st *clientStream) cancel(err error) {
	if err == nil {
		err = context.Canceled
	}
	st.mu.Lock()
	if st.ended || st.cancelErr != nil {
		st.mu.Unlock()
		return
	}
	st.cancelErr = err
	st.dropChunksLocked()
	st.signalStart()
	st.cond.Broadcast()
	st.mu.Unlock()
	st.sendAbort()
}

// sendAbort sends FCGI_ABORT_REQUEST once and gives the application
// AbortTimeout to end the request before the connection is dropped.
func (st *clientStream) sendAbort() {
	st.mu.Lock()
	if st.aborted || st.ended {
		st.mu.Unlock()
		return
	}
	st.aborted = true
	wait := st.cc.client.abortTimeout()
	st.abortTimer = time.AfterFunc(wait, func() {
		st.mu.Lock()
		ended := st.ended
		st.mu.Unlock()
		if !ended {
			st.cc.close(fmt.Errorf("fcgi: request %d not ended %v after FCGI_ABORT_REQUEST", st.id, wait))
		}
	})
	st.mu.Unlock()
	go func() {
		msg := appendEmptyRecord(nil, typeAbortRequest, st.id)
		if err := st.cc.tryWrite(msg, wait); err != nil {
			st.cc.close(fmt.Errorf("fcgi: send FCGI_ABORT_REQUEST: %w", err))
		}
	}()
}
