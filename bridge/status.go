package bridge

import (
	"bytes"
	"fmt"

	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

// serveBuiltin answers a route of kind status, ping or ready from the
// bridge's own state. No pool, source or transform takes part, so these
// answer while every pool is saturated; the request body is not read.
func (b *Bridge) serveBuiltin(w fcgi.ResponseWriter, r *fcgi.Request, x *exchange, rt *route, t *source.Target) {
	head := x.method == http.MethodHead
	switch rt.cfg.Kind {
	case conf.KindPing:
		b.builtinAnswer(w, x, http.StatusOK, "text/plain; charset=utf-8", []byte("pong\n"), head)
	case conf.KindReady:
		status, text := b.readiness()
		b.builtinAnswer(w, x, status, "text/plain; charset=utf-8", []byte(text), head)
	case conf.KindStatus:
		format := rt.cfg.Format
		if format == "" {
			format = metrics.FormatText
		}
		if t.Query != "" {
			v, _ := url.ParseQuery(t.Query)
			if f := v.Get("format"); f != "" {
				format = f
			}
		}
		if !metrics.ValidFormat(format) {
			b.builtinAnswer(w, x, http.StatusBadRequest, "text/plain; charset=utf-8",
				[]byte("format must be text, json or prometheus\n"), head)
			return
		}
		var buf bytes.Buffer
		if err := b.metrics.Snapshot(b.Stats(), time.Now()).Write(&buf, format); err != nil {
			b.fail(r.Context(), w, x, err)
			return
		}
		b.builtinAnswer(w, x, http.StatusOK, metrics.ContentType(format), buf.Bytes(), head)
	}
}

// readiness is the ready route's answer: 503 while the bridge is closing,
// or while it has pools and none of them has a process or may start one
// (every one is backing off after start failures).
func (b *Bridge) readiness() (int, string) {
	if b.closed.Load() {
		return http.StatusServiceUnavailable, "not ready: shutting down\n"
	}
	stats := b.Stats()
	if len(stats) == 0 {
		return http.StatusOK, "ready\n"
	}
	var down []string
	for _, p := range b.metrics.Snapshot(stats, time.Now()).Pools {
		if p.Live() {
			return http.StatusOK, "ready\n"
		}
		down = append(down, fmt.Sprintf("%s (starts failing, next try in %.1fs)", p.Name, p.BackoffSeconds))
	}
	return http.StatusServiceUnavailable, "not ready: no pool can start a transform: " + strings.Join(down, ", ") + "\n"
}

func (b *Bridge) builtinAnswer(w fcgi.ResponseWriter, x *exchange, status int, ctype string, body []byte, head bool) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	x.status = status
	w.WriteHeader(status)
	if head {
		return
	}
	n, err := w.Write(body)
	x.out = int64(n)
	if err != nil {
		x.err = err
	}
}

// finish counts the request in its route's metrics and writes its access
// line.
func (b *Bridge) finish(x *exchange) {
	if x.stats != nil {
		x.stats.Observe(x.status, time.Since(x.start), x.in.n.Load(), x.out)
		if x.fallback {
			x.stats.Fallback()
		}
		if x.attempts > 1 {
			x.stats.Retry()
		}
	}
	b.logSlow(x)
	b.logAccess(x)
}
