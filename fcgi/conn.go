package fcgi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// conn serves one connection. Its goroutine (serve, the read loop) owns rr,
// lastRecord, mgmt, held and every activeRequest's read-loop fields; it never waits
// for a handler except in the single-request flow control described in the
// package doc. Writes from any goroutine go through write, which holds wmu for
// exactly one Write call, so records never interleave.
type conn struct {
	srv    *Server
	lim    *Limits
	rwc    net.Conn
	remote string
	log    *slog.Logger
	rr     *recordReader
	// waitIdle waits, without a buffer, for the socket to become readable;
	// nil when the connection is not a socket.
	waitIdle func() error
	ctx      context.Context // cancelled when the connection ends (closeNow also cancels each request's own)
	cancel   context.CancelCauseFunc

	started    time.Time
	lastRecord time.Time
	mgmt       []byte // management reply buffer
	held       []byte // input held back during flow control, out of the read buffer

	wmu  sync.Mutex
	werr error // guarded by wmu: the first write failure; nothing is written after it

	mu            sync.Mutex
	reqs          map[uint16]*activeRequest // nil while empty
	begun         bool                      // a BEGIN_REQUEST has arrived
	inParams      int                       // requests in reqs whose PARAMS have not ended
	endsInFlight  int                       // requests removed whose END_REQUEST is being written
	idleSince     time.Time
	closeWhenIdle bool // a KEEP_CONN=0 request ended, or the server shuts down
	draining      bool // write side shut: read until EOF or drainDeadline, then close
	drainDeadline time.Time
	multiplexed   bool      // the peer used an id other than 1 or two requests at once
	evicted       bool      // guarded by srv.mu: closed to make room for a new connection
	armed         time.Time // the read deadline the read loop last set

	closeOnce sync.Once
	handlers  sync.WaitGroup
	ended     sync.WaitGroup // done when finish has run
}

var errConnClosing = errors.New("fcgi: connection closing")

func newConn(s *Server, rwc net.Conn) *conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	remote := "unknown"
	if a := rwc.RemoteAddr(); a != nil {
		remote = a.Network() + ":" + a.String()
	}
	now := time.Now()
	c := &conn{
		srv: s, lim: &s.lim, rwc: rwc, remote: remote, log: s.log,
		rr: newRecordReader(rwc), waitIdle: idleWaiter(rwc), ctx: ctx, cancel: cancel,
		started: now, idleSince: now,
	}
	c.ended.Add(1)
	return c
}

// write sends b, one or more whole records, with a single Write under the
// write deadline. After a failure the connection is closed and every later
// write returns the same error.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.lim.WriteTimeout > 0 {
		_ = c.rwc.SetWriteDeadline(time.Now().Add(c.lim.WriteTimeout))
	}
	if _, err := c.rwc.Write(b); err != nil {
		c.werr = err
		c.log.Debug("fcgi: write failed; closing connection", "remote", c.remote, "err", err)
		c.closeNow(ErrAborted)
		return err
	}
	return nil
}

// closeNow cancels every request of the connection and closes it.
func (c *conn) closeNow(cause error) {
	c.closeOnce.Do(func() {
		c.cancel(cause)
		c.mu.Lock()
		for _, r := range c.reqs {
			r.cancel(cause)
		}
		c.mu.Unlock()
		_ = c.rwc.Close()
	})
}

// closeGracefully shuts the write side, so the peer sees EOF right after our
// last END_REQUEST, and lets the read loop drain what the peer still sends for
// up to LingerTimeout: closing with unread input would send a reset that can
// destroy the response before the peer has read it.
func (c *conn) closeGracefully() {
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.startDrainingLocked()
	c.mu.Unlock()
	c.shutWrite()
}

// startDrainingLocked makes the read loop only drain from now on, for up to
// LingerTimeout; new requests are ignored. Called with mu held.
func (c *conn) startDrainingLocked() {
	c.draining = true
	c.drainDeadline = time.Now().Add(max(c.lim.LingerTimeout, 0))
	_ = c.rwc.SetReadDeadline(c.drainDeadline)
}

// shutWrite ends our side of the connection: nothing is written after it, and
// the peer reads EOF once it has read what was sent. Without a half close the
// connection is closed outright.
func (c *conn) shutWrite() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		c.werr = errConnClosing
	}
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.closeNow(errConnClosing)
}

// removeRequest takes r off the connection. Safe to call more than once.
// Whoever writes the END_REQUEST closes the connection after it when it is
// due (removeForEnd, endWritten).
func (c *conn) removeRequest(r *activeRequest) {
	c.mu.Lock()
	if r.removed {
		c.mu.Unlock()
		return
	}
	r.removed = true
	if !r.paramsEnded {
		c.inParams--
	}
	delete(c.reqs, r.id)
	if len(c.reqs) == 0 && c.multiplexed {
		// An idle kept connection holds no table that multiplexing may
		// have grown. One that only ever had one request at a time keeps
		// its small one (a single group, under 200 bytes) rather than
		// allocating it again on every request.
		c.reqs = nil
	}
	c.srv.activeReqs.Add(-1)
	if !r.req.KeepConn {
		c.closeWhenIdle = true
	}
	if len(c.reqs) == 0 {
		c.idleSince = time.Now()
		closing := c.closeWhenIdle || c.srv.inShutdown.Load()
		if !closing && !c.draining && c.lim.KeepAliveIdleTimeout > 0 &&
			(c.armed.IsZero() || c.armed.After(c.idleSince.Add(c.lim.KeepAliveIdleTimeout))) {
			// The read loop sleeps past the keep-alive deadline: wake it to arm
			// that. Normally it does not (see nextDeadlineLocked), which saves a
			// wake-up per request.
			_ = c.rwc.SetReadDeadline(time.Now())
		}
	}
	timer := r.timer
	c.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	r.cancel(nil)
	r.closeInput()
}

// serve runs the read loop until the connection ends, then finish. When no
// input is expected it hands the wait for the next bytes to a new goroutine
// (waitThenServe) and returns: the loop's stack grew while it served
// requests, and a kept connection waiting for its next request then costs
// only the waiting goroutine's small stack.
func (c *conn) serve() {
	if c.readRecords(false) {
		c.finish()
	}
}

// waitThenServe waits, without a buffer, for the peer to send again, then
// runs the read loop.
func (c *conn) waitThenServe() {
	err := c.waitIdle()
	if err != nil && !(errors.Is(err, os.ErrDeadlineExceeded) && c.onTimeout()) {
		c.onReadError(err)
		c.finish()
		return
	}
	// After a deadline that changes nothing (a wake-up) the loop may hand
	// the wait off again; after bytes it reads them, on a kept goroutine
	// whose stack has room for the records and the handler it starts (see
	// workers): this one ends with the small stack it had.
	readable := err == nil
	c.srv.workers.run(func() {
		if c.readRecords(readable) {
			c.finish()
		}
	})
}

// readRecords reads and handles records; it returns true when the connection
// has ended, false when it handed the wait for input to waitThenServe.
// readable is whether that wait has just seen bytes.
func (c *conn) readRecords(readable bool) (ended bool) {
	for ; ; readable = false {
		draining, idle := c.armReadDeadline()
		if !draining && idle && c.closingWhenIdle() && !c.inputPending() {
			// Shutting down with no request in flight and none sent: end
			// here. A request that had already arrived is served first.
			c.closeGracefully()
			continue
		}
		if draining {
			// Only drain: whatever arrives belongs to nothing we will answer.
			if _, _, err := c.rr.next(); err != nil {
				return true
			}
			continue
		}
		if idle && !readable && c.waitIdle != nil && !c.rr.complete() {
			// No body input expected and no whole record buffered: the wait
			// goes to a small goroutine until the peer sends again, and the
			// read buffer back to the pool unless part of a record is in it.
			c.rr.release()
			go c.waitThenServe()
			return false
		}
		h, content, err := c.rr.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.onTimeout() {
				continue
			}
			c.onReadError(err)
			return true
		}
		c.lastRecord = time.Now()
		if err := c.handleRecord(h, content); err != nil {
			c.log.Warn("fcgi: closing connection", "remote", c.remote, "err", err)
			return true
		}
	}
}

func (c *conn) onReadError(err error) {
	var ve *versionError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// onTimeout logged why.
	case errors.Is(err, net.ErrClosed):
	case errors.Is(err, io.EOF):
		// nginx closes the connection when its client goes away: routine.
		if n := c.activeCount(); n > 0 {
			c.log.Debug("fcgi: peer closed the connection; cancelling its requests", "remote", c.remote, "requests", n)
		} else {
			c.log.Debug("fcgi: peer closed the connection", "remote", c.remote)
		}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED):
		// lighttpd, HAProxy and Caddy reset idle connections as their way of
		// closing them: only a reset that cuts requests short is worth a line.
		if n := c.activeCount(); n > 0 {
			c.log.Info("fcgi: peer reset the connection; cancelling its requests", "remote", c.remote, "requests", n)
		} else {
			c.log.Debug("fcgi: peer reset the connection", "remote", c.remote)
		}
	case errors.As(err, &ve), errors.Is(err, io.ErrUnexpectedEOF):
		c.log.Warn("fcgi: closing connection", "remote", c.remote, "err", err)
	default:
		c.log.Info("fcgi: connection read failed", "remote", c.remote, "err", err)
	}
}

// evict closes the connection to make room for a new one: at once when it
// stalled in its params, gracefully when it was idle between requests.
func (c *conn) evict(why string) {
	if why == evictIdle {
		c.mu.Lock()
		c.closeWhenIdle = true
		if len(c.reqs) == 0 && !c.draining {
			_ = c.rwc.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
		return
	}
	c.log.Debug("fcgi: closing a connection that stalled before the end of its params, to serve a new one", "remote", c.remote)
	c.closeNow(errEvicted)
}

var errEvicted = errors.New("fcgi: connection closed to make room for a new one")

// closingWhenIdle reports whether the connection, with no request and no
// END_REQUEST being written, is to close: the server is shutting down, room
// is needed, or the last request said so.
func (c *conn) closingWhenIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closingWhenIdleLocked()
}

func (c *conn) closingWhenIdleLocked() bool {
	return len(c.reqs) == 0 && c.endsInFlight == 0 && !c.draining && (c.closeWhenIdle || c.srv.inShutdown.Load())
}

// removeForEnd is removeRequest for a caller that writes the request's
// END_REQUEST next and then calls endWritten: until then the read loop does
// not close the connection under that write.
func (c *conn) removeForEnd(r *activeRequest) {
	c.mu.Lock()
	c.endsInFlight++
	c.mu.Unlock()
	c.removeRequest(r)
}

// endWritten follows removeForEnd once END_REQUEST is written; it reports
// whether the caller is to close the connection now.
func (c *conn) endWritten() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endsInFlight--
	return c.closingWhenIdleLocked()
}

// inputPending reports whether the peer has sent bytes not yet read: a
// request that must not be lost when the connection is about to close. Read
// loop only.
func (c *conn) inputPending() bool {
	return len(c.rr.buffered()) > c.rr.consume || peerSent(c.rwc)
}

// activeCount is the number of requests the connection still has.
func (c *conn) activeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

// finish runs when the read loop ends: every request still active is
// cancelled, the connection closed, and serve returns once the handlers have.
func (c *conn) finish() {
	c.mu.Lock()
	reqs := make([]*activeRequest, 0, len(c.reqs))
	for _, r := range c.reqs {
		reqs = append(reqs, r)
	}
	c.mu.Unlock()
	c.closeNow(ErrAborted)
	for _, r := range reqs {
		r.w.aborted.Store(true)
		r.failInput(ErrAborted)
		if r.phase == phaseParams {
			c.removeRequest(r) // no handler will end it
		}
	}
	c.handlers.Wait()
	for _, r := range reqs {
		c.removeRequest(r)
	}
	c.srv.forget(c)
	c.ended.Done()
}

// armReadDeadline sets the read deadline for the next record: the earliest of
// the keep-alive idle time, each request's PARAMS deadline, and each request's
// input idle time. Computed and set under mu, so a handler ending a request
// cannot interleave a stale deadline. idle is whether no request is
// receiving STDIN or DATA: between requests, while handlers answer requests
// whose input has all arrived, or while params are awaited.
//
// When the next record is already buffered whole, reading it cannot wait
// for the peer, so no deadline applies and none is set: a request's records
// usually arrive in one read, and setting a deadline per record was 4% of
// the server's CPU. Every read that may wait is preceded by one that is set.
func (c *conn) armReadDeadline() (draining, idle bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return true, false
	}
	idle = true
	for _, r := range c.reqs {
		if r.phase == phaseStdin || r.phase == phaseData {
			idle = false
			break
		}
	}
	if !c.rr.complete() {
		c.armed = c.nextDeadlineLocked()
		_ = c.rwc.SetReadDeadline(c.armed)
	}
	return false, idle
}

func (c *conn) nextDeadlineLocked() time.Time {
	var earliest time.Time
	consider := func(from time.Time, d time.Duration) {
		if d <= 0 {
			return
		}
		if t := from.Add(d); earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	if len(c.reqs) == 0 {
		if c.lastRecord.IsZero() {
			consider(c.started, c.lim.ParamsTimeout)
		} else {
			idle := c.idleSince
			if c.lastRecord.After(idle) {
				idle = c.lastRecord
			}
			consider(idle, c.lim.KeepAliveIdleTimeout)
		}
		return earliest
	}
	for _, r := range c.reqs {
		if r.phase == phaseParams {
			consider(r.began, c.lim.ParamsTimeout)
		} else if r.awaitingInput() {
			consider(r.lastInput, c.lim.InputIdleTimeout)
		}
	}
	// With only handlers running nothing needs the loop, but a deadline no
	// later than the keep-alive one spares a wake-up when they end.
	consider(time.Now(), c.lim.KeepAliveIdleTimeout)
	return earliest
}

// onTimeout decides what an expired read deadline means; false closes the
// connection.
func (c *conn) onTimeout() bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return false
	}
	if len(c.reqs) == 0 {
		if d := c.nextDeadlineLocked(); !d.IsZero() && !now.Before(d) {
			c.log.Debug("fcgi: closing idle connection", "remote", c.remote)
			return false
		}
		return true
	}
	for _, r := range c.reqs {
		switch {
		case r.phase == phaseParams:
			if c.lim.ParamsTimeout > 0 && now.Sub(r.began) >= c.lim.ParamsTimeout {
				c.log.Warn("fcgi: closing connection: request params not complete within ParamsTimeout",
					"remote", c.remote, "id", r.id, "timeout", c.lim.ParamsTimeout)
				return false
			}
		case c.lim.InputIdleTimeout > 0 && r.awaitingInput() && now.Sub(r.lastInput) >= c.lim.InputIdleTimeout:
			c.log.Info("fcgi: request input idle timeout", "remote", c.remote, "id", r.id)
			s := r.stdin
			if r.phase == phaseData {
				s = r.data
			}
			s.fail(ErrInputTimeout, false)
		}
	}
	return true
}

// handleRecord dispatches one record; an error closes the connection.
func (c *conn) handleRecord(h recordHeader, content []byte) error {
	if h.ID == nullRequestID {
		return c.handleManagement(h, content)
	}
	switch h.Type {
	case typeBeginRequest:
		return c.handleBegin(h.ID, content)
	case typeAbortRequest:
		c.handleAbort(h.ID)
		return nil
	case typeParams, typeStdin, typeData:
		c.mu.Lock()
		r := c.reqs[h.ID]
		c.mu.Unlock()
		if r == nil {
			// Late input for a request we ended, or for an id never begun.
			return nil
		}
		switch h.Type {
		case typeParams:
			return c.handleParams(r, content)
		case typeStdin:
			return c.handleStdin(r, content)
		default:
			return c.handleData(r, content)
		}
	}
	return protoErrorf("unexpected %v record for request %d", h.Type, h.ID)
}

func (c *conn) handleManagement(h recordHeader, content []byte) error {
	switch {
	case h.Type == typeGetValues:
		return c.answerGetValues(content)
	case h.Type >= typeBeginRequest && h.Type <= typeUnknownType:
		return protoErrorf("%v record on the management id 0", h.Type)
	}
	var body [unknownBodyLen]byte
	body[0] = byte(h.Type)
	c.mgmt = appendRecord(c.mgmt[:0], typeUnknownType, nullRequestID, body[:])
	_ = c.write(c.mgmt)
	return nil
}

// answerGetValues replies with exactly the known names asked, once each, in
// the order asked.
func (c *conn) answerGetValues(content []byte) error {
	var body [128]byte
	pairs := body[:0]
	var seen [3]bool
	add := func(i int, name string, value int) {
		if !seen[i] {
			seen[i] = true
			var num [20]byte
			pairs = appendPair(pairs, name, string(appendInt(num[:0], value)))
		}
	}
	err := decodePairs(content, pairLimits{MaxName: 1024, MaxValue: 1024, MaxPairs: 256}, func(name, _ []byte) error {
		switch string(name) {
		case ValueMaxConns:
			add(0, ValueMaxConns, c.lim.MaxConns)
		case ValueMaxReqs:
			add(1, ValueMaxReqs, c.lim.MaxReqsPerConn)
		case ValueMpxsConns:
			mpxs := 0
			if c.lim.MaxReqsPerConn > 1 {
				mpxs = 1
			}
			add(2, ValueMpxsConns, mpxs)
		}
		return nil
	})
	if err != nil {
		return protoErrorf("GET_VALUES: %v", err)
	}
	c.mgmt = appendRecord(c.mgmt[:0], typeGetValuesResult, nullRequestID, pairs)
	_ = c.write(c.mgmt)
	return nil
}

func appendInt(dst []byte, v int) []byte {
	if v == 0 {
		return append(dst, '0')
	}
	var tmp [20]byte
	i := len(tmp)
	for v > 0 {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, tmp[i:]...)
}

func (c *conn) handleBegin(id uint16, content []byte) error {
	if len(content) != beginBodyLen {
		return protoErrorf("BEGIN_REQUEST for request %d has a %d-byte body, want 8", id, len(content))
	}
	role := Role(uint16(content[0])<<8 | uint16(content[1]))
	keep := content[2]&flagKeepConn != 0
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		return nil
	}
	if _, dup := c.reqs[id]; dup {
		c.mu.Unlock()
		return protoErrorf("BEGIN_REQUEST for request %d, which is still active", id)
	}
	if id != 1 || len(c.reqs) > 0 {
		c.multiplexed = true
	}
	active := len(c.reqs)
	c.mu.Unlock()

	switch {
	case role != RoleResponder && role != RoleAuthorizer && role != RoleFilter,
		!c.srv.servesRole(role):
		return c.refuse(id, keep, StatusUnknownRole)
	case active >= c.lim.MaxReqsPerConn:
		if c.lim.MaxReqsPerConn == 1 {
			return c.refuse(id, keep, StatusCantMpxConn)
		}
		return c.refuse(id, keep, StatusOverloaded)
	case !c.srv.acquireRequest():
		return c.refuse(id, keep, StatusOverloaded)
	}
	// During Shutdown a request that arrives on an open connection is still
	// served (the web server sent it before it could see us go); the
	// connection closes after its last response (removeRequest).

	// Not a child of c.ctx: a child would leave the parent a table of
	// children that outlives the request, on every kept connection.
	// closeNow cancels the requests of the connection itself.
	ctx, cancel := context.WithCancelCause(context.Background())
	now := time.Now()
	r := &activeRequest{c: c, id: id, cancel: cancel, began: now, lastInput: now}
	r.req = Request{
		// Params is made at the first pair: a request stalled in its
		// params holds as little as possible.
		ID: id, Role: role, KeepConn: keep,
		ContentLength: -1, DataLength: -1, RemoteAddr: c.rwc.RemoteAddr(), ctx: ctx,
	}
	r.params.limits = c.lim.pairLimits()
	r.w = &response{r: r, c: c}
	c.mu.Lock()
	if c.reqs == nil {
		c.reqs = make(map[uint16]*activeRequest)
	}
	c.reqs[id] = r
	c.begun = true
	c.inParams++
	c.mu.Unlock()
	if c.ctx.Err() != nil {
		// closeNow ran before the request was in the table.
		r.cancel(context.Cause(c.ctx))
	}
	return nil
}

// overloadedResponse is what an id-1 peer (nginx, Apache, lighttpd) gets when
// the server is over capacity: they turn a bare FCGI_OVERLOADED into a 502 or
// an empty 200, so they get a real 503 instead.
const overloadedResponse = "Status: 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nserver overloaded, retry later\n"

// refuse ends a request that was never registered.
func (c *conn) refuse(id uint16, keep bool, status uint8) error {
	var out []byte
	c.mu.Lock()
	multiplexed := c.multiplexed
	c.mu.Unlock()
	if status == StatusOverloaded && !multiplexed {
		out = appendRecord(out, typeStdout, id, []byte(overloadedResponse))
		out = appendEmptyRecord(out, typeStdout, id)
		status = StatusRequestComplete
	}
	out = appendEndRequest(out, id, 0, status)
	// Debug: under overload a line per refusal would flood the log.
	c.log.Debug("fcgi: request refused", "remote", c.remote, "id", id, "protocol_status", status)
	_ = c.write(out)
	if !keep {
		c.mu.Lock()
		c.closeWhenIdle = true
		idle := len(c.reqs) == 0
		c.mu.Unlock()
		if idle {
			c.closeGracefully()
		}
	}
	return nil
}

func (c *conn) handleAbort(id uint16) {
	c.mu.Lock()
	r := c.reqs[id]
	c.mu.Unlock()
	if r == nil {
		return // finished or unknown: nothing to end
	}
	r.w.aborted.Store(true)
	r.cancel(ErrAborted)
	r.failInput(ErrAborted)
	if r.phase == phaseParams {
		r.w.end(0, 0) // no handler yet: end it here
	}
}

func (c *conn) handleParams(r *activeRequest, content []byte) error {
	if r.phase != phaseParams {
		return protoErrorf("PARAMS for request %d after the end of its PARAMS", r.id)
	}
	if len(content) == 0 {
		if err := r.params.finish(); err != nil {
			return protoErrorf("request %d: %v", r.id, err)
		}
		r.params = pairDecoder{}
		r.lastInput = time.Now()
		// Under c.mu: Shutdown's deadline may end the request from another
		// goroutine right now, and its removal reads the input streams and
		// stops the timer that are set here. A request it already ended gets
		// neither a handler nor a timer.
		c.mu.Lock()
		if r.removed {
			c.mu.Unlock()
			return nil
		}
		r.paramsDone(c.lim)
		r.paramsEnded = true
		c.inParams--
		if d := c.lim.HandlerTimeout; d > 0 {
			r.timer = time.AfterFunc(d, func() { r.cancel(ErrHandlerTimeout) })
		}
		c.handlers.Add(1)
		c.mu.Unlock()
		c.srv.workers.run(func() { c.runHandler(r) })
		return nil
	}
	r.paramsBytes += len(content)
	if r.paramsBytes > c.lim.MaxParamsBytes {
		return protoErrorf("request %d: params exceed MaxParamsBytes (%d)", r.id, c.lim.MaxParamsBytes)
	}
	values := recordStrings{content: content}
	err := r.params.feed(content, func(name, value []byte) error {
		if len(name) > 0 {
			if r.req.Params == nil {
				r.req.Params = make(map[string]string, 32)
				r.req.ParamOrder = make([]string, 0, 32)
			}
			k := paramName(name)
			if _, again := r.req.Params[k]; !again {
				r.req.ParamOrder = append(r.req.ParamOrder, k)
			}
			r.req.Params[k] = values.value(value)
		}
		return nil
	})
	if err != nil {
		return protoErrorf("request %d: %v", r.id, err)
	}
	return nil
}

func (c *conn) handleStdin(r *activeRequest, content []byte) error {
	switch {
	case r.phase == phaseParams:
		return protoErrorf("STDIN for request %d before the end of its PARAMS", r.id)
	case r.phase != phaseStdin:
		return nil // AUTHORIZER, or STDIN after its end: nothing reads it
	}
	r.lastInput = time.Now()
	if len(content) == 0 {
		r.stdin.end()
		if r.req.Role == RoleFilter {
			r.phase = phaseData
		} else {
			r.phase = phaseInputDone
		}
		return nil
	}
	c.deliver(r, r.stdin, content)
	return nil
}

func (c *conn) handleData(r *activeRequest, content []byte) error {
	switch {
	case r.phase == phaseParams:
		return protoErrorf("DATA for request %d before the end of its PARAMS", r.id)
	case r.req.Role != RoleFilter:
		return nil // some clients (flup) send an empty DATA stream with RESPONDER
	case r.phase == phaseStdin:
		return protoErrorf("DATA for request %d before the end of its STDIN", r.id)
	case r.phase != phaseData:
		return nil
	}
	r.lastInput = time.Now()
	if len(content) == 0 {
		r.data.end()
		r.phase = phaseInputDone
		return nil
	}
	c.deliver(r, r.data, content)
	return nil
}

// deliver hands input to a request's buffer. When the buffer is full and the
// request is the only one on the connection the read loop waits for the
// handler (flow control: nothing else can stall); when other requests share the
// connection the request's input fails with ErrInputOverflow instead.
func (c *conn) deliver(r *activeRequest, s *inputStream, p []byte) {
	var poll *time.Ticker
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	copied := false
	for {
		p = p[s.push(p):]
		if len(p) == 0 {
			return
		}
		c.mu.Lock()
		shared := len(c.reqs) > 1
		c.mu.Unlock()
		if shared {
			c.log.Info("fcgi: request input dropped: handler not reading and the connection is shared",
				"remote", c.remote, "id", r.id, "buffer", c.lim.InputBuffer)
			s.fail(ErrInputOverflow, false)
			return
		}
		if poll == nil {
			poll = time.NewTicker(peerPollInterval)
		}
		select {
		case <-s.writable:
		case <-c.ctx.Done():
			return
		case <-poll.C:
			if !copied {
				// p points into the read buffer, which looking ahead may shift.
				c.held = append(c.held[:0], p...)
				p, copied = c.held, true
			}
			switch c.lookAhead(r.id) {
			case peerAborted:
				c.log.Debug("fcgi: request aborted while its input was held back", "remote", c.remote, "id", r.id)
				r.w.aborted.Store(true)
				r.cancel(ErrAborted)
				r.failInput(ErrAborted) // what is left of p is dropped by push
			case peerClosed:
				c.log.Debug("fcgi: peer closed the connection while its request's input was held back", "remote", c.remote, "id", r.id)
				c.closeNow(ErrAborted)
				return
			}
		}
	}
}

// peerPollInterval is how often the read loop, while it holds back input,
// checks whether the peer is still there.
const peerPollInterval = 100 * time.Millisecond

type peerState int

const (
	peerPresent peerState = iota
	peerAborted           // an ABORT_REQUEST for the waiting request is already buffered
	peerClosed            // EOF or reset
)

// lookAhead is how the read loop, while it holds back input and so consumes
// nothing, still notices the peer: it pulls whatever has arrived into the
// free part of the read buffer without consuming it, and scans the complete
// records there for an ABORT_REQUEST for id; a read that meets EOF or an
// error means the peer is gone. When the buffer is full it falls back to
// peeking at the socket (peerGone).
func (c *conn) lookAhead(id uint16) peerState {
	if c.rr.full() {
		if peerGone(c.rwc) {
			return peerClosed
		}
		return peerPresent
	}
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		return peerPresent
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(time.Millisecond))
	c.mu.Unlock()
	if err := c.rr.readMore(); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return peerClosed
	}
	b := c.rr.buffered()[c.rr.consume:]
	for len(b) >= headerLen {
		h := parseHeader(b)
		n := headerLen + int(h.ContentLength) + int(h.PaddingLength)
		if h.Version != version1 || len(b) < n {
			break
		}
		if h.Type == typeAbortRequest && h.ID == id {
			return peerAborted
		}
		b = b[n:]
	}
	return peerPresent
}

func (c *conn) runHandler(r *activeRequest) {
	defer c.handlers.Done()
	appStatus, fallback := uint32(0), http.StatusOK
	panicked := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				c.log.Error("fcgi: handler panicked", "remote", c.remote, "id", r.id, "panic", p, "stack", string(debug.Stack()))
				appStatus, fallback, panicked = 1, http.StatusInternalServerError, true
			}
		}()
		h := c.srv.Handler
		if h == nil {
			fallback = http.StatusNotFound
			return
		}
		h.ServeFCGI(r.w, &r.req)
	}()
	if panicked {
		// A response the panic cut short must not reach the client as
		// complete; one that had not started becomes a 500.
		r.w.endOrAbort(appStatus, fallback, errHandlerPanicked)
		return
	}
	r.w.end(appStatus, fallback)
}

var errHandlerPanicked = errors.New("handler panicked")
