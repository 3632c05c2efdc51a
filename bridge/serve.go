package bridge

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

// exchange is the state of one request, for the access line.
type exchange struct {
	start     time.Time
	route     string
	role      fcgi.Role
	method    string
	uri       string
	status    int
	in        counter
	stdin     countingReader // the request's input, counted in in
	data      countingReader
	out       int64
	transform time.Duration
	pid       int
	err       error
	// requestInput: the content is the request's own body or data.
	requestInput bool
	// stats is the route's counters; fallback and attempts what the
	// chain did (see applied).
	stats    *metrics.Route
	fallback bool
	attempts int
	// Where the time went, for the slow-request log (slow.go); only
	// measured when slow is set.
	slow     time.Duration
	pools    string // the route's transforms
	queue    pool.WaitTrace
	bodyRead time.Duration // spooling the request body
	upstream time.Duration // the source, until its response head
	head     time.Duration // the chain, until its response head
	write    time.Duration // the response, head to the end of the body
	// debug: the route's developer mode; accept: the request's Accept,
	// which picks the format of a developer mode error answer.
	debug  bool
	accept string
}

// ServeFCGI implements fcgi.Handler.
func (b *Bridge) ServeFCGI(w fcgi.ResponseWriter, r *fcgi.Request) {
	// Requests that start after Close began are not waited for (their
	// pools are closing, so they end at once with 503); counting them could
	// restart a WaitGroup that Close is already waiting on.
	b.closeMu.Lock()
	tracked := !b.closed.Load()
	if tracked {
		b.inflight.Add(1)
		b.active.Add(1)
	}
	b.closeMu.Unlock()
	if tracked {
		defer func() {
			b.active.Add(-1)
			b.inflight.Done()
		}()
	}

	// What the request asks for, read from its params once: the access
	// line, routing, the source and the transforms all use this.
	t := source.NewTarget(r.Params)
	x := &exchange{start: time.Now(), role: r.Role, method: t.Method, uri: t.URI}
	defer b.finish(x)
	ctx := r.Context()

	v := newRequestView(r, &t)
	var rt *route
	for _, candidate := range b.routes {
		if candidate.matches(v) {
			rt = candidate
			break
		}
	}
	if rt == nil {
		// No route: an authorizer that nobody configured denies (fail
		// closed); other roles get 404 so a misrouted location is obvious.
		x.route = "-"
		x.stats = b.noRoute
		status := http.StatusNotFound
		if r.Role == fcgi.RoleAuthorizer {
			status = http.StatusForbidden
		}
		x.status = status
		b.plain(w, x, status, "")
		return
	}
	x.route = rt.cfg.Name
	x.requestInput = rt.requestInput
	x.debug, x.accept = rt.debug, r.Params["HTTP_ACCEPT"]
	x.stats = rt.stats
	if x.slow = rt.slow; x.slow > 0 {
		ctx = pool.WithWaitTrace(ctx, &x.queue)
		x.pools = chainNames(rt.cfg.Transform)
	}
	if rt.cfg.Kind != "" {
		b.serveBuiltin(w, r, x, rt, &t)
		return
	}

	req := &source.Request{
		Role:          r.Role,
		Params:        r.Params,
		Target:        t,
		ParamOrder:    r.ParamOrder,
		ContentLength: r.ContentLength,
		Stdin:         x.in.wrap(r.Stdin, &x.stdin),
		Data:          x.in.wrap(r.Data, &x.data),
		DataLength:    r.DataLength,
		DataLastMod:   r.DataLastMod,
		RemoteAddr:    r.RemoteAddr,
		// A transform reads the body, so ask for it uncompressed unless the
		// client asked for HEAD (nothing is transformed then).
		Identity: rt.chain != nil && t.Method != http.MethodHead,
	}
	var spooled *source.Spooled
	if rt.bufferBody && r.Stdin != nil {
		ts := time.Now()
		sp, err := source.Spool(ctx, req.Stdin, declaredLength(r), b.spool)
		x.bodyRead = time.Since(ts)
		if err != nil {
			b.fail(ctx, w, x, err)
			return
		}
		// Closed when the response is out; the transform and the source
		// are done with the body by then.
		defer sp.Close()
		req.Stdin, req.ContentLength, req.Spooled = sp.Reader(), sp.Len(), true
		if rt.bodySource {
			// The content is the spooled body itself, which can be read
			// again from its start at any size.
			spooled = sp
		}
	}
	tf := time.Now()
	msg, err := rt.source.Fetch(ctx, req)
	x.upstream = time.Since(tf)
	if err != nil {
		b.fail(ctx, w, x, err)
		return
	}

	if r.Role == fcgi.RoleAuthorizer {
		b.authorize(ctx, w, x, rt, msg, r.Params, &t)
		return
	}

	head := v.method == http.MethodHead
	if !rt.transforms(msg) || head {
		if head && rt.transforms(msg) {
			// HEAD never runs the transform (a process for no body); the
			// headers are the source's, less what the transform would make
			// untrue: the length and the validator of the old bytes.
			msg.Length = -1
			msg.Header.Del("ETag")
			if rt.cfg.ContentType != "" {
				msg.Header.Set("Content-Type", rt.cfg.ContentType)
			}
		}
		tw := time.Now()
		b.send(ctx, w, x, msg, head)
		x.write = time.Since(tw)
		return
	}

	t0 := time.Now()
	runCtx, done := withApplied(ctx)
	var out *filter.Message
	if p := b.policy(rt); spooled != nil && (p.FailOpen || p.Retry) {
		out, err = b.runReplayable(runCtx, rt, msg, spooled, rt.requestInfo(r.Params, &t), p)
	} else {
		out, err = filter.Run(runCtx, rt.chain, msg, rt.requestInfo(r.Params, &t), p)
	}
	x.head = time.Since(t0)
	x.attempts, x.fallback = done.attempts, err == nil && !done.ok
	if err == nil && x.debug {
		err = holdReply(out)
	}
	if err != nil {
		x.transform = time.Since(t0)
		b.fail(ctx, w, x, err)
		return
	}
	x.pid = done.pid
	if done.ok && rt.cfg.ContentType != "" && filter.BodyAllowed(out.Status) {
		out.Header.Set("Content-Type", rt.cfg.ContentType)
	}
	tw := time.Now()
	b.send(ctx, w, x, out, false)
	x.write = time.Since(tw)
	x.transform = time.Since(t0)
}

// authorize runs an AUTHORIZER route: the transform's status decides. 200
// allows, and only its Variable-* headers go back (the web server turns them
// into variables of the request it then serves); any other answer goes to
// the client as it is, which is how FastCGI authorizers deny or challenge.
func (b *Bridge) authorize(ctx context.Context, w fcgi.ResponseWriter, x *exchange, rt *route, msg *filter.Message, params map[string]string, t *source.Target) {
	t0 := time.Now()
	runCtx, done := withApplied(ctx)
	out, err := filter.Run(runCtx, rt.chain, msg, rt.requestInfo(params, t), b.policy(rt))
	x.transform = time.Since(t0)
	x.attempts = done.attempts
	if err != nil {
		b.fail(ctx, w, x, err)
		return
	}
	x.pid = done.pid
	if out.Status != http.StatusOK {
		b.send(ctx, w, x, out, false)
		return
	}
	if out.Body != nil {
		// The body of an allowing answer means nothing to the web server;
		// read it so a pooled process finishes its exchange cleanly.
		_, err = io.Copy(io.Discard, out.Body)
		out.Body.Close()
		if err != nil {
			b.fail(ctx, w, x, err)
			return
		}
	}
	for _, f := range out.Header {
		if len(f.Name) > len("Variable-") && strings.EqualFold(f.Name[:len("Variable-")], "Variable-") {
			w.Header().Add(f.Name, f.Value)
		}
	}
	x.status = http.StatusOK
	w.WriteHeader(http.StatusOK)
}

func (b *Bridge) policy(rt *route) filter.Policy {
	return rt.policy // its Logger carries the route's name
}

// declaredLength is the body length the request states: CONTENT_LENGTH,
// unless the client sent the body chunked (nginx then passes an empty
// CONTENT_LENGTH, but a configuration may set one that is not the body's).
func declaredLength(r *fcgi.Request) int64 {
	if strings.Contains(strings.ToLower(r.Params["HTTP_TRANSFER_ENCODING"]), "chunked") {
		return -1
	}
	return r.ContentLength
}

func pidOf(body io.ReadCloser) int {
	if p, ok := body.(interface{ Pid() int }); ok {
		return p.Pid()
	}
	return 0
}

// counter counts the request bytes read (STDIN and DATA). Atomic: the
// filter may read the input from its own goroutine.
type counter struct{ n atomic.Int64 }

func (c *counter) wrap(r io.Reader, into *countingReader) io.Reader {
	if r == nil {
		return nil
	}
	*into = countingReader{r: r, c: c}
	return into
}

type countingReader struct {
	r io.Reader
	c *counter
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.c.n.Add(int64(n))
	return n, err
}

// Close passes on the stream's Close, which stops a Read blocked on a
// stalled web server (see fcgi.Request.Stdin).
func (cr *countingReader) Close() error {
	if c, ok := cr.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// logAccess writes the one line per request.
func (b *Bridge) logAccess(x *exchange) {
	if !b.access {
		return
	}
	attrs := []slog.Attr{
		slog.String("route", x.route),
		slog.String("role", x.role.String()),
		slog.String("method", x.method),
		slog.String("uri", x.uri),
		slog.Int("status", x.status),
		slog.Int64("bytes_in", x.in.n.Load()),
		slog.Int64("bytes_out", x.out),
		slog.Duration("total", time.Since(x.start)),
		slog.Duration("transform_time", x.transform),
	}
	if x.pid > 0 {
		attrs = append(attrs, slog.Int("pid", x.pid))
	}
	if x.err != nil {
		attrs = append(attrs, slog.String("error", x.err.Error()))
	}
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}
