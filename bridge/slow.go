package bridge

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// logSlow writes one warning for a request that took at least its route's
// slow threshold, with where the time went. The parts overlap where data
// streams: the response body is written while the transform still produces
// it, so write includes the rest of the transform's (and the source's)
// work after their response heads.
//
//	queue      waiting for a free process of a pool (every stage, every attempt)
//	body_read  reading the request body before the source was asked (spooling)
//	upstream   the source, until its response head
//	transform  the chain, until its response head, less queue
//	write      the response, from its head to the end of its body
func (b *Bridge) logSlow(x *exchange) {
	if x.slow <= 0 {
		return
	}
	total := time.Since(x.start)
	if total < x.slow {
		return
	}
	queue := x.queue.Total()
	transform := max(x.head-queue, 0)
	attrs := []slog.Attr{
		slog.String("route", x.route),
		slog.String("pool", x.pools),
		slog.Int("pid", x.pid),
		slog.String("method", x.method),
		slog.String("uri", x.uri),
		slog.Int("status", x.status),
		slog.Duration("total", total),
		slog.Duration("threshold", x.slow),
		slog.Duration("queue", queue),
		slog.Duration("body_read", x.bodyRead),
		slog.Duration("upstream", x.upstream),
		slog.Duration("transform", transform),
		slog.Duration("write", x.write),
	}
	if x.err != nil {
		attrs = append(attrs, slog.String("error", x.err.Error()))
	}
	b.log.LogAttrs(context.Background(), slog.LevelWarn, "slow request", attrs...)
}

// chainNames names a route's transforms as the slow line shows them.
func chainNames(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, "|")
}
