package fcgi

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// ResponseWriter builds the CGI response of one request: a header block that
// always starts with an explicit "Status: NNN reason" line, then the body, on
// FCGI_STDOUT, plus optional FCGI_STDERR.
//
// If the handler sets no Content-Type on a response that may carry a body, the
// server sends "Content-Type: text/plain; charset=utf-8" and
// "X-Content-Type-Options: nosniff": it never guesses from the body (the
// CVE-2020-24553 lesson: a guessed text/html turned uploaded data into script).
//
// Header fields whose names are not tokens, and a "Status" field (the status
// line is the server's), are not sent; a control character in a value goes
// out as a space, so a value never spans lines.
//
// Writes are coalesced into records of up to 65535 bytes; Flush sends what is
// buffered. A handler that writes nothing still produces a complete header
// block (Status 200, or what it set) before END_REQUEST. After the handler
// returns, or the request is aborted, writes fail and send nothing.
type ResponseWriter interface {
	Header() http.Header
	WriteHeader(code int)
	Write(p []byte) (int, error)
	Stderr() io.Writer
	Flush() error
}

// HeadWriter is implemented by the server's ResponseWriter. WriteHead is
// WriteHeader for a handler that holds its fields in a list already (the
// bridge passing on an upstream's): they go out in their order, without
// passing through the map Header returns; fields set in that map follow
// them. Names and values are checked as for Header, and the default
// Content-Type applies when neither sets one.
type HeadWriter interface {
	WriteHead(code int, fields httpmsg.Header)
}

// Aborter is implemented by the server's ResponseWriter. Abort ends the
// request as failed, for a handler whose output broke after it began (a
// transform that crashed halfway): the web server must not present what was
// sent as a complete response, and nothing may be made up to complete it.
//
// Abort drops STDOUT not yet sent and writes one sanitized line naming err to
// FCGI_STDERR, which the web server logs. Then:
//
//   - on a connection that has only ever carried this one request at a time
//     (nginx, Apache, lighttpd: id 1), a record header of version 0 follows
//     and the connection is closed, without the empty STDOUT record and
//     without END_REQUEST: nginx and Apache then abort the client's response
//     (no final chunk, short Content-Length body), whereas a well-formed
//     END_REQUEST, whatever its appStatus, makes them present the truncated
//     body as complete, and nginx without fastcgi_keep_conn takes a bare
//     close for the normal end of the response;
//   - on a multiplexed connection (HAProxy) that would kill the other
//     requests, so the request ends with an empty STDERR, an empty STDOUT and
//     END_REQUEST{REQUEST_COMPLETE, appStatus 1}.
//
// The package doc ("Ending a request with an error") has what was measured.
//
// After Abort, writes fail with ErrRequestEnded and the handler's return sends
// nothing more. Abort after the request ended does nothing.
type Aborter interface {
	Abort(err error)
}

// Handler serves one FastCGI request. It runs in its own goroutine; it must
// return when r.Context() is cancelled.
type Handler interface {
	ServeFCGI(w ResponseWriter, r *Request)
}

// RoleServer is implemented by a Handler that does not play every role. When
// ServesRole returns false for a request's role, the server answers
// END_REQUEST{FCGI_UNKNOWN_ROLE} at BEGIN_REQUEST and never calls the handler,
// as the specification asks of an application that does not play the role.
// It is asked once per request, from the connection's read loop, so it must
// be quick and must not block.
type RoleServer interface {
	ServesRole(role Role) bool
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

func (f HandlerFunc) ServeFCGI(w ResponseWriter, r *Request) { f(w, r) }

var recordBufPool = sync.Pool{New: func() any { return newRecordBuf() }}

// response is the ResponseWriter. Its fields are guarded by mu, taken by the
// handler's calls and by the server when it ends the request (after the
// handler returned, or at Shutdown's deadline). aborted is set by the read loop.
type response struct {
	r *activeRequest
	c *conn

	mu          sync.Mutex
	header      http.Header
	wroteHeader bool
	bodyAllowed bool
	buf         *recordBuf // pending STDOUT content; nil until the first byte
	ended       bool
	stderrSent  int
	stderrUsed  bool
	stderrCut   bool

	aborted atomic.Bool
}

func (w *response) Header() http.Header {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *response) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader || w.ended || w.aborted.Load() {
		return
	}
	_ = w.writeHeaderLocked(code)
}

func (w *response) WriteHead(code int, fields httpmsg.Header) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader || w.ended || w.aborted.Load() {
		return
	}
	_ = w.writeHeadLocked(code, fields)
}

func bodyAllowed(code int) bool {
	return !(code >= 100 && code < 200 || code == http.StatusNoContent || code == http.StatusNotModified)
}

func (w *response) writeHeaderLocked(code int) error { return w.writeHeadLocked(code, nil) }

func (w *response) writeHeadLocked(code int, fields httpmsg.Header) error {
	w.wroteHeader = true
	if code < 100 || code > 999 {
		w.c.log.Warn("fcgi: handler set an invalid status; sending 500", "remote", w.c.remote, "id", w.r.id, "status", code)
		code = http.StatusInternalServerError
	}
	w.bodyAllowed = bodyAllowed(code)
	var num [3]byte
	codeText := strconv.AppendInt(num[:0], int64(code), 10)
	reason := http.StatusText(code)
	for _, part := range [][]byte{[]byte("Status: "), codeText, []byte(" ")} {
		if err := w.stdout(part); err != nil {
			return err
		}
	}
	if reason == "" {
		if err := w.stdoutString("Status "); err != nil {
			return err
		}
		reason = string(codeText)
	}
	if err := w.stdoutString(reason); err != nil {
		return err
	}
	if err := w.stdoutString("\r\n"); err != nil {
		return err
	}
	for _, f := range fields {
		if err := w.writeField(f.Name, f.Value); err != nil {
			return err
		}
	}
	h := w.header
	if w.bodyAllowed && len(h["Content-Type"]) == 0 && !fields.Has("Content-Type") {
		// Written, not set in the map: a handler may never have made one.
		if err := w.writeField("Content-Type", "text/plain; charset=utf-8"); err != nil {
			return err
		}
		if len(h["X-Content-Type-Options"]) == 0 && !fields.Has("X-Content-Type-Options") {
			if err := w.writeField("X-Content-Type-Options", "nosniff"); err != nil {
				return err
			}
		}
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			if err := w.writeField(k, v); err != nil {
				return err
			}
		}
	}
	return w.stdoutString("\r\n")
}

// writeField writes one header line. "Status" is ours (a second Status line
// would be ambiguous) and a name that is not a token is dropped; a value goes
// out on one line whatever the handler put in it: a CR or LF would let
// request data inject fields or end the block.
func (w *response) writeField(name, value string) error {
	if !httpmsg.ValidName(name) || httpmsg.EqualFold(name, "Status") {
		return nil
	}
	for _, part := range [...]string{name, ": ", httpmsg.CleanValue(value), "\r\n"} {
		if err := w.stdoutString(part); err != nil {
			return err
		}
	}
	return nil
}

// stdout appends body or header bytes, sending full records as they fill.
func (w *response) stdout(p []byte) error { return appendStdout(w, p) }

// stdoutString is stdout for header text, without converting it to bytes.
func (w *response) stdoutString(s string) error { return appendStdout(w, s) }

func appendStdout[T string | []byte](w *response, p T) error {
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = recordBufPool.Get().(*recordBuf)
			w.buf.reset()
		}
		n := copy(w.buf.tail(), p)
		w.buf.grow(n)
		p = p[n:]
		if w.buf.free() == 0 {
			if err := w.sendLocked(); err != nil {
				return err
			}
		}
	}
	return nil
}

// filterGate holds back output of a FILTER request until its STDIN has ended,
// as the specification requires. Waiting gives up the STDIN the handler has
// not read, otherwise a handler that writes before reading STDIN would wait
// for the read loop while the read loop waits for it.
func (w *response) filterGate() error {
	r := w.r
	if r.req.Role != RoleFilter || r.stdin == nil {
		return nil
	}
	select {
	case <-r.stdin.ended:
		return nil
	default:
	}
	r.stdin.closeRead()
	select {
	case <-r.stdin.ended:
		return nil
	case <-r.req.ctx.Done():
		return ErrAborted
	}
}

// sendLocked sends the buffered content as one STDOUT record.
func (w *response) sendLocked() error {
	if w.buf == nil || w.buf.len() == 0 {
		return nil
	}
	if err := w.filterGate(); err != nil {
		return err
	}
	err := w.c.write(w.buf.finish(typeStdout, w.r.id))
	w.buf.reset()
	return err
}

func (w *response) check() error {
	if w.ended {
		return ErrRequestEnded
	}
	if w.aborted.Load() {
		return ErrAborted
	}
	return nil
}

func (w *response) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	if !w.wroteHeader {
		if err := w.writeHeaderLocked(http.StatusOK); err != nil {
			return 0, err
		}
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if err := w.stdout(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadFrom reads straight into the record being assembled, so a large body
// is copied once on its way from src to the connection.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	if !w.wroteHeader {
		if err := w.writeHeaderLocked(http.StatusOK); err != nil {
			return 0, err
		}
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	var total int64
	for {
		if w.buf == nil {
			w.buf = recordBufPool.Get().(*recordBuf)
			w.buf.reset()
		}
		if w.buf.free() == 0 {
			if err := w.sendLocked(); err != nil {
				return total, err
			}
		}
		n, err := src.Read(w.buf.tail())
		w.buf.grow(n)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if err := w.check(); err != nil {
			return total, err
		}
	}
}

func (w *response) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	if !w.wroteHeader {
		if err := w.writeHeaderLocked(http.StatusOK); err != nil {
			return err
		}
	}
	return w.sendLocked()
}

func (w *response) Stderr() io.Writer { return stderrWriter{w} }

// stderrWriter sends FCGI_STDERR records. Web servers copy them verbatim into
// their error log, so control characters other than tab and newline become
// '?' (no terminal escapes, no forged log lines with CR) and the total per
// request is capped at Limits.MaxStderr.
type stderrWriter struct{ w *response }

const stderrCutNote = "\n[fcgi: stderr truncated]\n"

func (s stderrWriter) Write(p []byte) (int, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	room := max(w.c.lim.MaxStderr-w.stderrSent, 0)
	cut := len(p) > room && !w.stderrCut
	if room == 0 && !cut {
		return len(p), nil
	}
	if err := w.filterGate(); err != nil {
		return 0, err
	}
	keep := p[:min(len(p), room)]
	clean := make([]byte, 0, len(keep)+len(stderrCutNote))
	for _, c := range keep {
		if (c < ' ' && c != '\n' && c != '\t') || c == 0x7f {
			c = '?'
		}
		clean = append(clean, c)
	}
	w.stderrSent += len(clean)
	if cut {
		w.stderrCut = true
		clean = append(clean, stderrCutNote...)
	}
	w.stderrUsed = true
	// MaxStderr may exceed one record.
	var frames []byte
	for len(clean) > 0 {
		n := min(len(clean), maxContent)
		frames = appendRecord(frames, typeStderr, w.r.id, clean[:n])
		clean = clean[n:]
	}
	if err := w.c.write(frames); err != nil {
		return 0, err
	}
	return len(p), nil
}

// end completes the request exactly once: the header block if none was sent,
// the rest of STDOUT, the empty STDOUT (and STDERR if used) records and
// END_REQUEST, all in one write when they fit. forced is Shutdown's deadline:
// a response that has not started becomes a 503.
func (w *response) end(appStatus uint32, fallbackStatus int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endLocked(appStatus, fallbackStatus)
}

func (w *response) endLocked(appStatus uint32, fallbackStatus int) {
	if w.ended {
		return
	}
	r, c := w.r, w.c
	var out []byte
	var small [2*headerLen + endBodyLen]byte
	if !w.aborted.Load() {
		err := error(nil)
		if !w.wroteHeader {
			if fallbackStatus == http.StatusServiceUnavailable {
				// Ended by Shutdown while the handler may still be running and
				// touching its own header map: leave that map alone.
				w.header = http.Header{"Retry-After": {"1"}}
			}
			err = w.writeHeaderLocked(fallbackStatus)
		}
		if err == nil {
			err = w.filterGate()
		}
		if err == nil {
			if w.buf == nil {
				w.buf = recordBufPool.Get().(*recordBuf)
				w.buf.reset()
			}
			had := w.buf.len() > 0
			out = w.buf.finish(typeStdout, r.id) // with no content this is the empty STDOUT itself
			if had {
				out = appendEmptyRecord(out, typeStdout, r.id)
			}
			if w.stderrUsed {
				out = appendEmptyRecord(out, typeStderr, r.id)
			}
		}
	}
	if out == nil {
		out = small[:0]
	}
	out = appendEndRequest(out, r.id, appStatus, StatusRequestComplete)
	w.ended = true
	// The id leaves the connection's table before END_REQUEST goes out: the
	// peer may reuse it the moment it reads END_REQUEST.
	c.removeForEnd(r)
	_ = c.write(out)
	w.releaseBuf()
	if c.endWritten() {
		c.closeGracefully()
	}
}

func (w *response) releaseBuf() {
	if w.buf != nil {
		w.buf.reset()
		recordBufPool.Put(w.buf)
		w.buf = nil
	}
}

// brokenRecord is what Abort sends on a connection it closes, after the
// STDERR line: a record header of version 0, which no FastCGI 1.0 peer
// accepts. nginx without fastcgi_keep_conn (its default) takes the end of the
// connection for the normal end of the response, completing a chunked body
// and keeping the client connection for the missing Content-Length bytes; a
// framing error is what makes it abort the client's response. Apache stops at
// it too ("Got bogus version").
var brokenRecord = [headerLen]byte{}

// abortLineMax bounds the FCGI_STDERR line Abort sends.
const abortLineMax = 256

// abortLine is the FCGI_STDERR line Abort sends: one line, no control
// characters, bounded, since web servers copy it into their error log.
func abortLine(id uint16, err error) []byte {
	msg := "aborted"
	if err != nil {
		msg = err.Error()
	}
	line := make([]byte, 0, abortLineMax+1)
	line = append(line, "fcgi: response "...)
	line = strconv.AppendUint(line, uint64(id), 10)
	line = append(line, " aborted: "...)
	for i := 0; i < len(msg) && len(line) < abortLineMax; i++ {
		c := msg[i]
		if c < ' ' || c == 0x7f {
			c = '?'
		}
		line = append(line, c)
	}
	return append(line, '\n')
}

// Abort implements Aborter; the package doc's "Ending a request with an
// error" says why it closes id-1 connections.
func (w *response) Abort(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.abortLocked(err)
}

// endOrAbort ends the request for the server rather than the handler (a
// panic, Shutdown's deadline): normally, or, when the header block has been
// written, as Abort does, since what was written cannot be completed and a
// normal end would pass a truncated body off as complete.
func (w *response) endOrAbort(appStatus uint32, fallbackStatus int, cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader {
		w.abortLocked(cause)
		return
	}
	w.endLocked(appStatus, fallbackStatus)
}

func (w *response) abortLocked(err error) {
	if w.ended {
		return
	}
	r, c := w.r, w.c
	w.releaseBuf() // unsent STDOUT: the response is broken anyway
	if w.aborted.Load() {
		// The peer has already given the request up: it wants END_REQUEST only.
		w.endLocked(1, 0)
		return
	}
	line := abortLine(r.id, err)
	c.log.Debug("fcgi: handler aborted its response", "remote", c.remote, "id", r.id, "err", err)

	c.mu.Lock()
	sole := !c.multiplexed && !c.draining && len(c.reqs) == 1 && c.reqs[r.id] == r
	if sole {
		// From here the read loop takes no new request: the connection ends
		// with this one.
		c.startDrainingLocked()
	}
	c.mu.Unlock()

	w.ended = true
	if sole {
		out := appendRecord(nil, typeStderr, r.id, line)
		_ = c.write(append(out, brokenRecord[:]...))
		c.removeRequest(r)
		c.shutWrite()
		return
	}
	var out []byte
	if w.filterGate() == nil {
		out = appendRecord(out, typeStderr, r.id, line)
		out = appendEmptyRecord(out, typeStderr, r.id)
		out = appendEmptyRecord(out, typeStdout, r.id)
	}
	out = appendEndRequest(out, r.id, 1, StatusRequestComplete)
	c.removeForEnd(r)
	_ = c.write(out)
	if c.endWritten() {
		c.closeGracefully()
	}
}
