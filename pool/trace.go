package pool

import (
	"context"
	"sync/atomic"
	"time"
)

// WaitTrace adds up the time one request's Acquire calls spend queueing,
// for a slow-request log that says where the time went. Safe for the
// stages of a chain acquiring at once.
type WaitTrace struct{ nanos atomic.Int64 }

// Total returns the time queued so far.
func (w *WaitTrace) Total() time.Duration { return time.Duration(w.nanos.Load()) }

type waitTraceKey struct{}

// WithWaitTrace returns a context under which Acquire adds its queueing
// time to w.
func WithWaitTrace(ctx context.Context, w *WaitTrace) context.Context {
	return context.WithValue(ctx, waitTraceKey{}, w)
}

// traceWait adds the time since queued to the context's WaitTrace, if any.
func traceWait(ctx context.Context, queued time.Time) {
	if w, ok := ctx.Value(waitTraceKey{}).(*WaitTrace); ok {
		w.nanos.Add(int64(time.Since(queued)))
	}
}
