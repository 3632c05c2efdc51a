package fcgi

import (
	"context"
	"io"
	"net"
	"strconv"
	"time"
)

// Request is one FastCGI request as its handler sees it.
type Request struct {
	ID       uint16
	Role     Role
	KeepConn bool
	// Params holds the PARAMS stream; duplicate names: the last one wins, as in
	// php-fpm and net/http/fcgi. Empty values are kept (nginx sends
	// CONTENT_LENGTH="" for a chunked body).
	Params map[string]string
	// ParamOrder names each key of Params once, in the order the web server
	// first sent it, so that headers built from the HTTP_* params can go on
	// in the client's order.
	ParamOrder []string
	// ContentLength is CONTENT_LENGTH, -1 when absent, empty or invalid. It is
	// advisory: Stdin is read to its end record whatever it says, and a
	// mismatch is reported by Stdin as a *LengthError.
	ContentLength int64
	// DataLength is FCGI_DATA_LENGTH for FILTER requests, -1 when absent or
	// invalid (then DATA is delivered to its end record without a check).
	DataLength int64
	// DataLastMod is FCGI_DATA_LAST_MOD (seconds since the epoch) for FILTER
	// requests; zero when absent or invalid. A handler that can answer from a
	// cache may return without reading Data; the rest of DATA is discarded.
	DataLastMod time.Time
	// Stdin streams FCGI_STDIN and returns io.EOF at its empty record. For
	// AUTHORIZER requests it is always at EOF (the role has no STDIN; Apache's
	// mod_authnz_fcgi sends none) and any STDIN records are discarded.
	//
	// Stdin and Data stop waiting for the peer when the request context is
	// cancelled (the Read returns its cause), and both are io.Closers: Close
	// makes a Read blocked on another goroutine return ErrInputClosed, and
	// the rest of the stream is discarded.
	Stdin io.Reader
	// Data streams FCGI_DATA for FILTER requests; it is at EOF for other roles.
	// DATA follows STDIN on the wire, so the first Read of Data discards any
	// STDIN not read yet.
	Data       io.Reader
	RemoteAddr net.Addr

	ctx context.Context
}

// Context is cancelled when the web server aborts the request
// (FCGI_ABORT_REQUEST or closing the connection; cause ErrAborted), when the
// connection fails, and when Close or Shutdown's deadline ends the request
// (cause ErrServerClosed), and after Limits.HandlerTimeout (cause
// ErrHandlerTimeout). Use context.Cause to tell them apart.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// Request phases, as seen by the read loop.
type phase uint8

const (
	phaseParams    phase = iota // between BEGIN_REQUEST and the empty PARAMS
	phaseStdin                  // handler running, STDIN open
	phaseData                   // FILTER: STDIN ended, DATA open
	phaseInputDone              // all input received
)

// activeRequest is the server side of one request on a connection, from
// BEGIN_REQUEST until its END_REQUEST. The read loop owns phase, params,
// paramsBytes and lastInput; req is written by the read loop before the
// handler starts and read-only afterwards; the input streams and the
// response have their own locks.
type activeRequest struct {
	c      *conn
	id     uint16
	req    Request
	cancel context.CancelCauseFunc

	phase       phase
	params      pairDecoder
	paramsBytes int
	began       time.Time
	lastInput   time.Time

	stdin, data *inputStream
	w           *response
	timer       *time.Timer // HandlerTimeout; stopped when the request is removed

	removed     bool // guarded by conn.mu: no longer in conn.reqs
	paramsEnded bool // guarded by conn.mu: past its PARAMS (counted out of conn.inParams)
}

// parseLength reads a decimal byte count; -1 for anything else.
func parseLength(v string, ok bool) int64 {
	if !ok || v == "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// paramsDone fills in the derived request fields and the input streams once
// PARAMS has ended.
func (r *activeRequest) paramsDone(lim *Limits) {
	q := &r.req
	if q.Params == nil {
		q.Params = map[string]string{}
	}
	v, ok := q.Params["CONTENT_LENGTH"]
	q.ContentLength = parseLength(v, ok)
	q.DataLength = -1
	q.Data = noInput{}
	switch q.Role {
	case RoleAuthorizer:
		q.Stdin = noInput{}
		r.phase = phaseInputDone
		return
	case RoleFilter:
		v, ok = q.Params["FCGI_DATA_LENGTH"]
		q.DataLength = parseLength(v, ok)
		if v, ok = q.Params["FCGI_DATA_LAST_MOD"]; ok {
			if secs := parseLength(v, true); secs >= 0 {
				q.DataLastMod = time.Unix(secs, 0)
			}
		}
		r.data = newInputStream(q.ctx, "FCGI_DATA", "FCGI_DATA_LENGTH", q.DataLength, lim.InputBuffer)
	}
	r.stdin = newInputStream(q.ctx, "FCGI_STDIN", "CONTENT_LENGTH", q.ContentLength, lim.InputBuffer)
	q.Stdin = r.stdin
	if r.data != nil {
		q.Data = &dataReader{stdin: r.stdin, data: r.data}
	}
	r.phase = phaseStdin
}

// awaitingInput reports whether the request waits for bytes from the peer,
// which is what InputIdleTimeout measures. Read loop only.
func (r *activeRequest) awaitingInput() bool {
	switch r.phase {
	case phaseStdin:
		return r.stdin.awaiting()
	case phaseData:
		return r.data.awaiting()
	}
	return false
}

// failInput ends both input streams with err, dropping what is buffered.
func (r *activeRequest) failInput(err error) {
	if r.stdin != nil {
		r.stdin.fail(err, true)
	}
	if r.data != nil {
		r.data.fail(err, true)
	}
}

// closeInput releases the read loop from whatever the handler left unread.
func (r *activeRequest) closeInput() {
	if r.stdin != nil {
		r.stdin.closeRead()
	}
	if r.data != nil {
		r.data.closeRead()
	}
}
