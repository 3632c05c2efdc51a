package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

// notForwarded reports the header fields never written into the CGI
// response: the framing the bridge decides itself, hop-by-hop fields, and
// Status, which in a CGI header block would override the status line.
func notForwarded(name string) bool {
	return httpmsg.IsFraming(name) || httpmsg.IsHopByHop(name) || httpmsg.EqualFold(name, "Status")
}

// send writes m as the CGI response: Status, headers, body. Content-Length
// is written only when the length is known, so it is true or absent; a
// Content-Type is always present for a body (a client never sniffs). With
// head set the body is not sent. m.Body is closed.
func (b *Bridge) send(ctx context.Context, w fcgi.ResponseWriter, x *exchange, m *filter.Message, head bool) {
	if m.Body != nil {
		defer m.Body.Close()
	}
	status := m.Status
	if status < 100 || status > 999 {
		status = http.StatusBadGateway
	}
	allowed := filter.BodyAllowed(status)
	// The message's fields, in their order, less those that stay on the
	// upstream's hop or are not valid; filtered in place (the message is
	// ours), so passing them on allocates nothing.
	fields := m.Header[:0]
	for _, f := range m.Header {
		if notForwarded(f.Name) || !httpmsg.ValidName(f.Name) || !httpmsg.ValidValue(f.Value) {
			continue
		}
		fields = append(fields, f)
	}
	m.Header = fields
	if allowed {
		if fields.Get("Content-Type") == "" {
			fields.Del("Content-Type") // an empty one
			fields = append(fields, httpmsg.Field{Name: "Content-Type", Value: "application/octet-stream"})
		}
		if m.Length >= 0 {
			fields = append(fields, httpmsg.Field{Name: "Content-Length", Value: strconv.FormatInt(m.Length, 10)})
		}
	}
	x.status = status
	if hw, ok := w.(fcgi.HeadWriter); ok {
		hw.WriteHead(status, fields)
	} else {
		h := w.Header()
		for _, f := range fields {
			h.Add(f.Name, f.Value)
		}
		w.WriteHeader(status)
	}
	if head || !allowed || m.Body == nil {
		return
	}
	n, err := io.Copy(w, m.Body)
	x.out = n
	if err == nil && m.Length >= 0 && n != m.Length {
		err = fmt.Errorf("body ended after %d of %d bytes", n, m.Length)
	}
	if err != nil {
		// Output began: nothing can be made up any more. The error ends the
		// request; with a Content-Length the web server sees the short body,
		// and the log says what broke.
		x.err = err
		if ctx.Err() == nil {
			b.log.Warn("response body failed after output began", "route", x.route, "pid", x.pid, "uri", x.uri, "bytes", n, "error", err)
		}
		abortResponse(w, err)
		return
	}
	// No Flush here: the server ends the request right after the handler
	// returns and sends the rest of STDOUT together with the empty STDOUT
	// and END_REQUEST records in one write. Flushing first cost a second
	// write (and a second wakeup of the web server) on every response.
}

// abortResponse tells the fcgi server that the response is incomplete
// (fcgi.Aborter): it ends the request so that the web server fails the
// client's transfer instead of presenting a truncated body as complete.
func abortResponse(w fcgi.ResponseWriter, err error) {
	if a, ok := w.(fcgi.Aborter); ok {
		a.Abort(err)
	}
}

// statusFor maps a failure to the status the client gets; 0 means the
// client is gone and nothing is sent.
//
//	transform saturated, cannot start, pool closed  503 + Retry-After
//	transform or upstream timeout                    504
//	transform crash or protocol error, upstream down 502
//	request-derived values invalid, short body       400
//	request body over max_body                       413
//
// requestInput says the content is carried by the request itself (body,
// FILTER data): a failure reading it is the web server's or client's fault.
func statusFor(ctx context.Context, err error, requestInput bool) int {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ctx.Err())) {
		return 0
	}
	var spe *source.SpoolError
	if errors.As(err, &spe) {
		return spe.Status
	}
	var fe *filter.Error
	if errors.As(err, &fe) {
		if fe.Kind == filter.Canceled {
			return 0
		}
		if fe.Kind == filter.Input {
			// The transform's input failed: an upstream body or a request
			// body that ended short.
			var se *source.Error
			if errors.As(fe.Err, &se) {
				return se.Status
			}
			if requestInput || errors.Is(fe.Err, io.ErrUnexpectedEOF) {
				return http.StatusBadRequest
			}
		}
		if fe.Status != 0 {
			return fe.Status
		}
		return fe.Kind.Status()
	}
	var se *source.Error
	if errors.As(err, &se) {
		return se.Status
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}

// fail answers a failure that happened before any output.
func (b *Bridge) fail(ctx context.Context, w fcgi.ResponseWriter, x *exchange, err error) {
	x.err = err
	status := statusFor(ctx, err, x.requestInput)
	if status == 0 || status == 499 {
		x.status = 499 // the access line records that the client left
		return
	}
	x.status = status
	var fe *filter.Error
	if errors.As(err, &fe) {
		// filter.Run has logged the failure with the stderr tail.
		x.pid = fe.Pid
	} else {
		b.log.Warn("request failed", "route", x.route, "uri", x.uri, "status", status, "error", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", b.retryAfter)
	}
	if x.debug {
		x.out = b.debugAnswer(w, status, x, err)
		return
	}
	b.plain(w, x, status, "")
}

// plain writes a short text answer made by the bridge itself, and counts
// its bytes in the access line like those of any other answer.
func (b *Bridge) plain(w fcgi.ResponseWriter, x *exchange, status int, text string) {
	if text == "" {
		text = strconv.Itoa(status) + " " + http.StatusText(status) + "\n"
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(text)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	n, _ := io.WriteString(w, text)
	x.out = int64(n)
}
