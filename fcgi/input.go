package fcgi

import (
	"context"
	"io"
	"sync"
)

// inputStream is the bounded buffer between the connection's read loop, which
// pushes a request's STDIN or DATA as records arrive, and the handler, which
// reads it through Request.Stdin or Request.Data. All fields are guarded by mu;
// the two channels carry wake-ups only (capacity 1, never closed except ended).
type inputStream struct {
	mu       sync.Mutex
	buf      []byte // unread bytes are buf[off:]
	off      int
	limit    int
	stream   string // for errors: "FCGI_STDIN"
	param    string // "CONTENT_LENGTH"
	declared int64  // -1: no length declared, no check
	received int64  // bytes accepted from the peer
	done     bool   // no more bytes will be accepted
	err      error  // returned once buf is drained; set together with done
	discard  bool   // the reader is gone: drop what arrives
	closed   bool   // Close was called: Read fails with ErrInputClosed

	// ctx is the request's context: a Read waiting for bytes returns its
	// cause once it is cancelled (handler timeout, abort, connection end),
	// so a handler never outlives its request stuck on a stalled peer.
	ctx      context.Context
	readable chan struct{} // read loop -> reader: bytes or err
	writable chan struct{} // reader -> read loop: room freed or discarding
	ended    chan struct{} // closed when the peer's stream ended or failed
}

func newInputStream(ctx context.Context, stream, param string, declared int64, limit int) *inputStream {
	return &inputStream{
		ctx: ctx, stream: stream, param: param, declared: declared, limit: limit,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
		ended:    make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push accepts as much of p as the buffer has room for and returns how much
// it took; bytes it drops (stream discarded, failed or over its declared
// length) count as taken. n < len(p) means the buffer is full.
func (s *inputStream) push(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discard || s.done {
		return len(p)
	}
	want, excess := p, 0
	if s.declared >= 0 && s.received+int64(len(p)) > s.declared {
		allowed := int(s.declared - s.received)
		want, excess = p[:allowed], len(p)-allowed
	}
	take := s.appendLocked(want)
	if take < len(want) {
		return take
	}
	if excess > 0 {
		s.failLocked(&LengthError{Stream: s.stream, Param: s.param, Declared: s.declared, Received: s.received + int64(excess)}, false)
		return len(p)
	}
	return take
}

// appendLocked copies what fits under the limit, growing the buffer lazily so
// an idle request costs no buffer at all.
func (s *inputStream) appendLocked(p []byte) int {
	take := min(len(p), s.limit-(len(s.buf)-s.off))
	if take <= 0 {
		return 0
	}
	if s.off > 0 && cap(s.buf)-len(s.buf) < take {
		s.buf = s.buf[:copy(s.buf, s.buf[s.off:])]
		s.off = 0
	}
	if cap(s.buf)-len(s.buf) < take {
		grown := make([]byte, len(s.buf), min(s.limit, max(2*cap(s.buf), len(s.buf)+take, 4096)))
		copy(grown, s.buf)
		s.buf = grown
	}
	s.buf = append(s.buf, p[:take]...)
	s.received += int64(take)
	signal(s.readable)
	return take
}

// end marks the end of the peer's stream (its empty record).
func (s *inputStream) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	var err error = io.EOF
	if s.declared >= 0 && s.received != s.declared && !s.discard {
		err = &LengthError{Stream: s.stream, Param: s.param, Declared: s.declared, Received: s.received}
	}
	s.finishLocked(err)
}

// fail ends the stream with err. drop discards bytes the reader has not read
// yet, for errors that must be seen at once (abort).
func (s *inputStream) fail(err error, drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err, drop)
}

func (s *inputStream) failLocked(err error, drop bool) {
	if drop {
		s.buf, s.off = nil, 0
		signal(s.writable)
	}
	if s.done {
		if drop && s.err == io.EOF {
			s.err = err
		}
		return
	}
	s.finishLocked(err)
}

func (s *inputStream) finishLocked(err error) {
	s.done = true
	s.err = err
	close(s.ended)
	signal(s.readable)
}

// closeRead is called when nobody will read the stream any more: the rest is
// dropped and the read loop is released if it waits for room.
func (s *inputStream) closeRead() {
	s.mu.Lock()
	s.discard = true
	s.buf, s.off = nil, 0
	s.mu.Unlock()
	signal(s.writable)
}

// Close ends the handler's side of the stream: a Read blocked on another
// goroutine returns ErrInputClosed at once, as do later Reads, and the rest of
// the input is discarded as it arrives. It is how a caller that gave the
// stream to a copier (a transform's writer, an upstream request) stops that
// copier without waiting for the peer.
func (s *inputStream) Close() error {
	s.mu.Lock()
	s.closed, s.discard = true, true
	s.buf, s.off = nil, 0
	s.mu.Unlock()
	signal(s.writable)
	signal(s.readable)
	return nil
}

// awaiting reports whether the stream still expects bytes from the peer.
func (s *inputStream) awaiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.done && !s.discard
}

// Read implements io.Reader for the handler.
func (s *inputStream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, ErrInputClosed
		}
		if s.off < len(s.buf) {
			n := copy(p, s.buf[s.off:])
			s.off += n
			if s.off == len(s.buf) {
				s.buf, s.off = s.buf[:0], 0
			}
			s.mu.Unlock()
			signal(s.writable)
			return n, nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		if s.discard {
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-s.readable:
		case <-s.ctx.Done():
			// Bytes that raced in with the cancellation are not worth
			// handing out: the request is over.
			return 0, context.Cause(s.ctx)
		}
	}
}

// noInput is the Stdin of an AUTHORIZER request and the Data of requests that
// are not FILTER: always at its end.
type noInput struct{}

func (noInput) Read([]byte) (int, error) { return 0, io.EOF }

// dataReader is a FILTER request's Data. DATA only arrives after STDIN, so the
// first read gives up whatever STDIN the handler left unread; otherwise a
// handler that skips STDIN would wait for DATA while the read loop waits for
// room in STDIN.
type dataReader struct {
	stdin, data *inputStream
	once        sync.Once
}

func (d *dataReader) Read(p []byte) (int, error) {
	d.once.Do(d.stdin.closeRead)
	return d.data.Read(p)
}

// Close closes DATA and what is left of STDIN (see inputStream.Close).
func (d *dataReader) Close() error {
	d.stdin.Close()
	return d.data.Close()
}

func (noInput) Close() error { return nil }
