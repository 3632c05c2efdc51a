package filter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Policy says what Run does when a transform fails.
type Policy struct {
	// FailOpen serves the input untransformed when the transform fails
	// before its output began, provided the input is still whole (kept in
	// memory, or not yet read). It applies to transform-side failures
	// (saturated, start, closed, timeout, crash, protocol), not to bad
	// requests, cancellations or a broken input.
	FailOpen bool
	// Retry runs the exchange once more, on another process, after a crash
	// or protocol error before output, when the input is still whole.
	Retry bool
	// KeepInput is how many input bytes are kept in memory while they
	// stream to the transform, so that a failed exchange can be retried or
	// failed open. Past it the kept bytes are dropped and neither is
	// possible for that exchange. 0 keeps nothing (an input that was not yet
	// read at the failure is still whole).
	KeepInput int64
	// Timeout bounds the whole exchange, queue wait included, until the
	// reply has been read; 0 means none beyond the transform's own.
	Timeout time.Duration
	// Logger receives one line per failure with the transform, pid, kind,
	// status, the action taken and the stderr tail; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Run applies t to in under policy p. It returns the transformed message,
// or the untransformed input when p allows failing open, or an *Error the
// caller turns into a status (Error.Status). Errors after the output began
// come from Reads of the returned Body; nothing is made up then.
func Run(ctx context.Context, t Transform, in *Message, req *RequestInfo, p Policy) (*Message, error) {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	cancel := context.CancelFunc(func() {})
	if p.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, p.Timeout)
	}
	if !p.FailOpen && !p.Retry {
		// Nothing to replay: hand the input over as it is, so that a file
		// or socket body can still be spliced.
		out, err := t.Apply(ctx, in, req)
		if err != nil {
			cancel()
			var e *Error
			if !errors.As(err, &e) {
				e = newError(t.Name(), 0, Internal, err)
			}
			logFailure(log, e, ActionFailClosed, 1)
			return nil, e
		}
		out.Body = &runBody{body: out.Body, done: cancel, log: log}
		return out, nil
	}
	k := newKeeper(in.Body, p.KeepInput)
	for attempt := 1; ; attempt++ {
		try := *in
		try.Header = in.Header.Clone()
		if in.Body != nil {
			try.Body = k
		}
		out, err := t.Apply(ctx, &try, req)
		if err == nil {
			k.stopKeeping()
			out.Body = &runBody{body: out.Body, done: func() { cancel(); k.closeSource() }, log: log}
			return out, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			e = newError(t.Name(), 0, Internal, err)
		}
		action := p.OnFailure(e.Kind, attempt, k.whole())
		logFailure(log, e, action, attempt)
		switch action {
		case ActionRetry:
			k = k.replay(p.KeepInput)
			continue
		case ActionFailOpen:
			cancel()
			plain := *in
			if in.Body != nil {
				plain.Body = k.replay(0).src
			}
			return &plain, nil
		}
		cancel()
		k.closeSource()
		return nil, e
	}
}

// Action is what follows a failed attempt under a Policy.
type Action uint8

const (
	ActionFailClosed Action = iota // the caller gets the *Error
	ActionRetry                    // the input is replayed to another process
	ActionFailOpen                 // the input is served untransformed
)

// String is the action as failure log lines name it.
func (a Action) String() string {
	switch a {
	case ActionRetry:
		return "retry"
	case ActionFailOpen:
		return "fail open"
	}
	return "fail closed"
}

// OnFailure decides what follows a failure of the given kind on the given
// attempt (1 for the first); whole says whether the input can still be
// replayed from its start. Run uses it, and so does a caller that replays
// the input from elsewhere (a spool), so that both follow one rule.
func (p *Policy) OnFailure(kind Kind, attempt int, whole bool) Action {
	switch {
	case attempt == 1 && p.Retry && whole && (kind == Crash || kind == Protocol):
		return ActionRetry
	case p.FailOpen && whole && failOpenKind(kind):
		return ActionFailOpen
	}
	return ActionFailClosed
}

func failOpenKind(k Kind) bool {
	switch k {
	case Saturated, Start, Closed, Timeout, Crash, Protocol, Internal:
		return true
	}
	return false
}

func logFailure(log *slog.Logger, e *Error, action Action, attempt int) {
	// The stderr tail is logged once, whole, here; the pool does not quote
	// it again for a process that died while leased.
	attrs := []any{"transform", e.Transform, "pid", e.Pid, "kind", e.Kind.String(), "status", e.Status, "action", action.String(), "attempt", attempt, "err", e.sentence(false)}
	if len(e.StderrTail) > 0 {
		attrs = append(attrs, "stderr", strings.Join(e.StderrTail, "\n"))
	}
	level := slog.LevelWarn
	if e.Kind == Canceled || e.Kind == BadRequest {
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "transform failed", attrs...)
}

// runBody ends Run's bookkeeping when the caller closes the output.
type runBody struct {
	body io.ReadCloser
	done func()
	once sync.Once
	log  *slog.Logger
}

func (b *runBody) Read(p []byte) (int, error) { return b.body.Read(p) }

func (b *runBody) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, b.body) }

func (b *runBody) Close() error {
	err := b.body.Close()
	b.once.Do(func() {
		b.done()
		logServedMistake(b.log, b.body)
	})
	return err
}

// keeper streams the input to a transform while keeping up to limit bytes
// of it, so that the input can be replayed: the kept bytes followed by
// whatever the source still holds. Its Close does not close the source,
// which a replay may still need; closeSource does.
type keeper struct {
	src io.ReadCloser

	mu       sync.Mutex
	kept     []byte
	limit    int64
	overflow bool // bytes were read and not kept: no replay
	stopped  bool // output began: keeping is pointless
	closed   bool
	srcDone  bool
}

func newKeeper(src io.ReadCloser, limit int64) *keeper {
	return &keeper{src: src, limit: limit}
}

var errKeeperClosed = errors.New("input closed")

func (k *keeper) Read(p []byte) (int, error) {
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if closed {
		return 0, errKeeperClosed
	}
	n, err := k.src.Read(p)
	k.mu.Lock()
	if n > 0 && !k.stopped && !k.overflow {
		if int64(len(k.kept)+n) > k.limit {
			k.overflow, k.kept = true, nil
		} else {
			k.kept = append(k.kept, p[:n]...)
		}
	}
	if err == io.EOF {
		k.srcDone = true
	}
	k.mu.Unlock()
	return n, err
}

func (k *keeper) Close() error {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	return nil
}

func (k *keeper) whole() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.overflow && !k.stopped
}

func (k *keeper) stopKeeping() {
	k.mu.Lock()
	k.stopped, k.kept = true, nil
	k.mu.Unlock()
}

func (k *keeper) closeSource() {
	if k.src != nil {
		k.src.Close()
	}
}

// replay returns a new keeper over the whole input: the kept bytes, then
// the rest of the source.
func (k *keeper) replay(limit int64) *keeper {
	k.mu.Lock()
	defer k.mu.Unlock()
	var rest io.Reader = k.src
	if k.srcDone || k.src == nil {
		rest = eofReader{}
	}
	src := &replaySource{Reader: io.MultiReader(bytes.NewReader(k.kept), rest), src: k.src}
	k.kept = nil
	return &keeper{src: src, limit: limit}
}

type replaySource struct {
	io.Reader
	src io.Closer
}

func (r *replaySource) Close() error {
	if r.src == nil {
		return nil
	}
	return r.src.Close()
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Pid forwards the transform's pid (see exchange.Pid) through Run's
// wrapper; 0 when the body does not come from a process.
func (b *runBody) Pid() int {
	if p, ok := b.body.(interface{ Pid() int }); ok {
		return p.Pid()
	}
	return 0
}

// logServedMistake logs a mistake found in a reply that reached the client
// all the same (a body longer than its Content-Length, cut to it; a reply
// sent before the message was read): the client got an answer, so only the
// log can tell the transform's author, and the process was replaced.
func logServedMistake(log *slog.Logger, body io.ReadCloser) {
	x, ok := body.(*exchange)
	if !ok {
		return
	}
	m, pid := x.servedMistake()
	if m == NoMistake {
		return
	}
	log.Warn("transform reply broke the protocol", "transform", x.name, "pid", pid, "mistake", m.String(), "hint", m.Hint(), "action", "replaced the process")
}
