package bridge

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

// quiet receives filter.Run's failure lines for runs whose outcome
// runReplayable decides and logs itself.
var quiet = slog.New(slog.DiscardHandler)

// runReplayable applies the route's chain to a spooled request body under
// policy p, retrying and failing open from the spool instead of from input
// kept in memory: the spool reads again from its start, so both work for a
// body of any size up to max_body, where keep_input would have held at most
// its own size in memory and given up beyond. Each attempt hands the
// transform a fresh reader (a file-backed one can still be spliced). The
// rules are Run's: retry once after a crash or protocol error before
// output; fail open on transform-side failures; never on bad requests or
// cancellations.
func (b *Bridge) runReplayable(ctx context.Context, rt *route, in *filter.Message, sp *source.Spooled, req *filter.RequestInfo, p filter.Policy) (*filter.Message, error) {
	log := p.Logger
	once := filter.Policy{Timeout: p.Timeout, Logger: quiet}
	if in.Body != nil {
		in.Body.Close() // each attempt reads its own
	}
	for attempt := 1; ; attempt++ {
		try := *in
		try.Header = in.Header.Clone()
		try.Body = sp.Reader()
		out, err := filter.Run(ctx, rt.chain, &try, req, once)
		if err == nil {
			return out, nil
		}
		var e *filter.Error
		if !errors.As(err, &e) {
			return nil, err
		}
		// The spool replays the whole input on every attempt.
		action := p.OnFailure(e.Kind, attempt, true)
		logTransformFailure(log, e, action, attempt)
		switch action {
		case filter.ActionRetry:
			continue
		case filter.ActionFailOpen:
			plain := *in
			plain.Body = sp.Reader()
			return &plain, nil
		}
		return nil, e
	}
}

// logTransformFailure writes the line filter.Run writes for a failure,
// with the action taken.
func logTransformFailure(log *slog.Logger, e *filter.Error, action filter.Action, attempt int) {
	if log == nil {
		log = slog.Default()
	}
	attrs := []any{"transform", e.Transform, "pid", e.Pid, "kind", e.Kind.String(), "status", e.Status,
		"action", action.String(), "attempt", attempt, "input", "spooled", "err", e.Error()}
	if len(e.StderrTail) > 0 {
		attrs = append(attrs, "stderr", strings.Join(e.StderrTail, "\n"))
	}
	level := slog.LevelWarn
	if e.Kind == filter.Canceled || e.Kind == filter.BadRequest {
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "transform failed", attrs...)
}
