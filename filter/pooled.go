package filter

import (
	"context"
	"errors"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// pooled is a transform served by a pool of long-lived processes speaking
// the pipe protocol.
type pooled struct {
	name    string
	pool    *pool.Pool
	timeout time.Duration
}

// NewPooled returns a transform that leases a process from p for each
// exchange, writes the message to it and streams its reply back.
//
// timeout bounds each exchange while it is active: from the lease until the
// reply has been read in full (waiting in the pool's queue is bounded by the
// pool's QueueTimeout instead). 0 means no limit. When it passes, the
// process group is killed and the process replaced.
//
// The returned Message always has a non-nil Body, even for 204 and 304:
// closing it is what ends the exchange and returns the process.
func NewPooled(name string, p *pool.Pool, timeout time.Duration) Transform {
	return &pooled{name: name, pool: p, timeout: timeout}
}

func (t *pooled) Name() string { return t.name }

func (t *pooled) Apply(ctx context.Context, in *Message, req *RequestInfo) (*Message, error) {
	proc, err := t.pool.Acquire(ctx)
	if err != nil {
		closeBody(in)
		return nil, t.acquireError(ctx, err)
	}
	release := func(reusable bool) { t.pool.Release(proc, reusable) }
	return exchangeMessage(ctx, t.name, proc, release, t.timeout, in, req)
}

func (t *pooled) acquireError(ctx context.Context, err error) *Error {
	var se *pool.StartError
	switch {
	case errors.Is(err, pool.ErrSaturated):
		return newError(t.name, 0, Saturated, err)
	case errors.As(err, &se):
		// se quotes the stderr lines that matter, and the pool logged all
		// of them when the start failed.
		return newError(t.name, 0, Start, err)
	case errors.Is(err, pool.ErrClosed):
		return newError(t.name, 0, Closed, err)
	case errors.Is(err, context.DeadlineExceeded):
		return newError(t.name, 0, Timeout, err)
	case ctx.Err() != nil:
		return newError(t.name, 0, Canceled, err)
	}
	return newError(t.name, 0, Internal, err)
}

func closeBody(m *Message) {
	if m != nil && m.Body != nil {
		m.Body.Close()
	}
}
