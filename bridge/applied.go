package bridge

import (
	"context"

	"github.com/fcgi-bridge/fcgi-bridge/filter"
)

// applied records, per request, that the route's chain really produced the
// output. filter.Run hands back the untransformed input when a route fails
// open, and the route's output Content-Type must not be put on that: JSON
// labelled text/html is how a fallback turns into script injection.
type applied struct {
	ok  bool
	pid int
	// attempts counts the runs of the chain: more than one means a retry.
	attempts int
}

type appliedKey struct{}

// markTransform wraps a route's chain to fill in the request's *applied.
type markTransform struct{ filter.Transform }

func (m markTransform) Apply(ctx context.Context, in *filter.Message, req *filter.RequestInfo) (*filter.Message, error) {
	a, _ := ctx.Value(appliedKey{}).(*applied)
	if a != nil {
		a.attempts++
	}
	out, err := m.Transform.Apply(ctx, in, req)
	if err == nil && a != nil {
		a.ok = true
		a.pid = pidOf(out.Body)
	}
	return out, err
}

func withApplied(ctx context.Context) (context.Context, *applied) {
	a := &applied{}
	return context.WithValue(ctx, appliedKey{}, a), a
}
