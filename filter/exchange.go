package filter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// process is what an exchange needs of a transform process; *pool.Process
// provides it.
type process interface {
	Pid() int
	Stdin() *os.File
	Stdout() *os.File
	StderrTail() []string
	// Done is closed once the process is reaped and its stderr drained.
	Done() <-chan struct{}
	// Exited says how it ended, once Done is closed.
	Exited() string
	// Exiting reports whether it has exited or is exiting now.
	Exiting() bool
	// Retire has it replaced rather than reused once released.
	Retire()
	// Stop starts killing it and returns at once.
	Stop()
}

// inlineMax is the largest message (head and body) written from the
// caller's goroutine, and then only when it fits the empty stdin pipe
// (pipeCapacity), so that the write cannot block on a transform that has
// not started reading: small exchanges need no second goroutine.
const inlineMax = 16 << 10

// minPipeCapacity is what an empty pipe always takes without blocking: one
// page. Linux gives a pipe at least one page's worth even past
// fs.pipe-user-pages-soft, F_SETPIPE_SZ cannot go lower, and writes that
// together fit a page merge into it.
const minPipeCapacity = 4096

// aLongTimeAgo is a deadline that has passed: setting it on a pipe wakes
// a goroutine blocked on it at once.
var aLongTimeAgo = time.Unix(1, 0)

var readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// exchange is one message sent to one leased process and its reply. The
// caller's goroutine reads the reply (Apply, then Read/WriteTo); a writer
// goroutine streams the input into stdin at the same time, so neither side
// can fill a pipe and wait for the other. The exchange is the Body of the
// returned Message; Close ends it and hands the process back.
type exchange struct {
	name    string
	proc    process
	release func(reusable bool)
	timeout time.Duration
	ctx     context.Context

	in        io.ReadCloser
	inOnce    sync.Once
	writeDone chan struct{}
	writeErr  error // written before writeDone is closed

	// abortMu orders an abort (timer, context) against the release of the
	// process, so that a late timer never kills a process already handed
	// to another exchange.
	abortMu   sync.Mutex
	aborted   Kind // valid when isAborted
	isAborted atomic.Bool
	abortCh   chan struct{} // closed by abort
	released  bool
	timer     *time.Timer
	stopCtx   func() bool
	// closing is set by Close before it wakes a Read on another
	// goroutine, so that Read reports the close, not the wake-up.
	closing atomic.Bool

	// readMu is held by Read, WriteTo and the teardown in Close, which may
	// run on another goroutine.
	readMu   sync.Mutex
	br       *bufio.Reader
	body     *bodyReader
	retire   bool // Connection: close
	complete atomic.Bool
	// mistake is found by finish in a reply that was served all the same
	// (longer than its Content-Length, sent before the message was read).
	mistake   Mistake
	err       error // sticky, an *Error
	closeOnce sync.Once
}

// exchangeMessage sends in (with req) to proc and returns the reply whose
// Body is the exchange. release is called exactly once, when the exchange
// ends.
func exchangeMessage(ctx context.Context, name string, proc process, release func(bool), timeout time.Duration, in *Message, req *RequestInfo) (*Message, error) {
	x := &exchange{name: name, proc: proc, release: release, timeout: timeout, ctx: ctx, in: in.Body, writeDone: make(chan struct{}), abortCh: make(chan struct{})}
	bp := writeBuffers.Get().(*[]byte)
	head, err := appendHead((*bp)[:0], in, req)
	if err != nil {
		writeBuffers.Put(bp)
		x.closeInput()
		close(x.writeDone)
		x.finish(true) // nothing was written: the process is as good as before
		return nil, newError(name, proc.Pid(), BadRequest, fmt.Errorf("cannot send the message: %w", err))
	}
	if timeout > 0 {
		x.timer = time.AfterFunc(timeout, func() { x.abort(Timeout) })
	}
	if ctx.Done() != nil {
		x.stopCtx = context.AfterFunc(ctx, func() {
			if ctx.Err() == context.DeadlineExceeded {
				x.abort(Timeout)
			} else {
				x.abort(Canceled)
			}
		})
	}

	m := *in
	// The pipe is empty: the previous exchange left nothing unread. Up to a
	// page always fits (no pipe is smaller), so only a larger message asks
	// the pipe its size.
	if n := bodyLength(in); n >= 0 && (int64(len(head))+n <= minPipeCapacity ||
		int64(len(head))+n <= int64(min(inlineMax, pipeCapacity(proc.Stdin())))) {
		x.write(head, &m, bp)
	} else {
		go x.write(head, &m, bp)
	}

	x.br = readBuffers.Get().(*bufio.Reader)
	x.br.Reset(proc.Stdout())
	h, err := readReplyHead(x.br)
	if err != nil {
		e := x.fail(err)
		x.finish(false)
		return nil, e
	}
	x.body = newBodyReader(x.br, h)
	x.retire = h.close
	if x.body.Done() {
		x.markComplete()
	}
	out := h.msg
	out.Body = x
	return &out, nil
}

// write sends the message and closes the input; it runs on the writer
// goroutine, or inline for small messages.
func (x *exchange) write(head []byte, m *Message, bp *[]byte) {
	err := writeFramed(x.proc.Stdin(), head, m, *bp)
	writeBuffers.Put(bp)
	x.closeInput()
	var ie *inputError
	if errors.As(err, &ie) {
		// The transform got a truncated message and would wait for the
		// rest forever.
		x.abort(Input)
	}
	x.writeErr = err
	close(x.writeDone)
}

func (x *exchange) closeInput() {
	x.inOnce.Do(func() {
		if x.in != nil {
			x.in.Close()
		}
	})
}

// abort ends the exchange because of kind, unless it already ended or was
// aborted: it starts killing the process and wakes the reader and the
// writer at once, without waiting for the process to die (a transform
// deaf to SIGTERM takes the whole kill grace). kind is recorded before
// anything is killed, so whatever the kill causes (end of output, a failed
// write, an exit by signal) is reported as kind.
func (x *exchange) abort(kind Kind) {
	x.abortMu.Lock()
	if x.released || x.isAborted.Load() {
		x.abortMu.Unlock()
		return
	}
	x.aborted = kind
	x.isAborted.Store(true)
	close(x.abortCh)
	x.abortMu.Unlock()
	x.proc.Stop()
	_ = x.proc.Stdout().SetReadDeadline(aLongTimeAgo)
	_ = x.proc.Stdin().SetWriteDeadline(aLongTimeAgo)
	// A write blocked on a stalled input (inline for small messages, or
	// on the writer goroutine) ends only when that input is closed.
	x.closeInput()
}

func (x *exchange) stopWatch() {
	if x.timer != nil {
		x.timer.Stop()
	}
	if x.stopCtx != nil {
		x.stopCtx()
	}
}

// markComplete records that the reply was read in full; the exchange is no
// longer active, so its timeout stops counting.
func (x *exchange) markComplete() {
	x.complete.Store(true)
	x.stopWatch()
}

func (x *exchange) Read(p []byte) (int, error) {
	x.readMu.Lock()
	defer x.readMu.Unlock()
	return x.read(p)
}

func (x *exchange) read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	if x.body == nil {
		return 0, os.ErrClosed
	}
	n, err := x.body.Read(p)
	switch {
	case err == io.EOF:
		x.markComplete()
	case err != nil:
		x.err = x.fail(err)
		return n, x.err
	}
	return n, err
}

// WriteTo copies the rest of the body to w, with splice(2) when w is a file
// or pipe and the body is long enough for it to pay.
func (x *exchange) WriteTo(w io.Writer) (int64, error) {
	x.readMu.Lock()
	defer x.readMu.Unlock()
	var total int64
	if f, ok := w.(*os.File); ok && x.err == nil && x.body != nil && x.body.Framing() == httpmsg.Sized && x.body.Remaining() >= spliceMin {
		n, _, err := x.spliceOutLocked(f, x.body.Remaining())
		total += n
		if err != nil {
			if x.err != nil {
				return total, x.err
			}
			return total, err
		}
	}
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	buf := (*bp)[:ioBufferSize]
	for {
		n, err := x.read(buf)
		if n > 0 {
			k, werr := w.Write(buf[:n])
			total += int64(k)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// spliceOut moves the next n body bytes into the pipe dst, for the next
// stage of a chain. Failures of this exchange reach the next stage as an
// *inputError holding this exchange's *Error.
func (x *exchange) spliceOut(dst *os.File, n int64) (int64, bool, error) {
	x.readMu.Lock()
	defer x.readMu.Unlock()
	if x.err != nil || x.body == nil || x.body.Framing() != httpmsg.Sized || n > x.body.Remaining() {
		return 0, false, nil
	}
	return x.spliceOutLocked(dst, n)
}

func (x *exchange) spliceOutLocked(dst *os.File, n int64) (int64, bool, error) {
	b := x.body
	var total int64
	if k := min(int64(x.br.Buffered()), n); k > 0 {
		p, _ := x.br.Peek(int(k))
		w, err := dst.Write(p)
		x.br.Discard(w)
		b.Advance(int64(w))
		total += int64(w)
		if err != nil {
			return total, true, err
		}
	}
	if total < n {
		rc, err := x.proc.Stdout().SyscallConn()
		if err != nil {
			return total, false, nil
		}
		w, err := spliceRaw(dst, rc, n-total)
		b.Advance(w)
		total += w
		var ie *inputError
		if errors.As(err, &ie) {
			// The reply ended (or broke) early: the fault is this
			// transform's.
			cause := ie.err
			if errors.Is(cause, errShortInput) {
				cause = shortBody(b.Offset(), b.Remaining())
			}
			x.err = x.fail(cause)
			b.Fail(x.err)
			return total, true, &inputError{x.err}
		}
		if err != nil {
			return total, true, err
		}
	}
	if b.Done() {
		x.markComplete()
	}
	return total, true, nil
}

// Close ends the exchange as soon as it is called: a process whose reply
// was read in full and framed goes back to the pool, or is retired when
// the reply said Connection: close; any other is replaced. Killing and
// reaping a process that leaves is the pool's business: Close does not
// wait for it.
func (x *exchange) Close() error {
	x.closeOnce.Do(func() { x.finish(x.complete.Load()) })
	return nil
}

// finish tears the exchange down and releases the process. It is safe
// against a Read blocked on another goroutine: an unfinished exchange wakes
// it first.
func (x *exchange) finish(complete bool) {
	x.stopWatch()
	x.abortMu.Lock()
	x.released = true
	reusable := complete && !x.isAborted.Load()
	x.abortMu.Unlock()
	if !reusable {
		// The rest of the reply is not wanted.
		x.closing.Store(true)
		_ = x.proc.Stdout().SetReadDeadline(aLongTimeAgo)
	}
	x.readMu.Lock()
	defer x.readMu.Unlock()
	if !reusable && !complete && x.complete.Load() && !x.isAborted.Load() {
		// The reply's last bytes were being read on another goroutine when
		// Close came (the next stage of a chain splicing them on, whose own
		// reply, and so the client's, was already complete): that read has
		// now recorded them. The process is as good as before; Release
		// clears the deadline the wake-up above set.
		reusable = true
	}
	if x.br != nil && (x.br.Buffered() > 0 || reusable && pool.PipeUnread(x.proc.Stdout())) {
		// Output beyond the reply, in the read buffer or still in the pipe
		// (a long body's rest, read past the buffer): the stream is out of
		// step, and the next exchange would take it for its reply.
		reusable = false
		if x.complete.Load() && x.body != nil && x.body.Framing() == httpmsg.Sized {
			x.mistake = BodyLong
		}
	}
	select {
	case <-x.writeDone:
	default:
		// A transform that read its whole message before completing its
		// reply has taken every byte the writer wrote, so the writer has
		// nothing left that could wait for room in the pipe: a write
		// that still has to wait means the transform stopped reading,
		// and fails at once. A writer waiting for more input ends when
		// the input is closed; either way the transform answered
		// before it had its whole message, and is not reused.
		_ = x.proc.Stdin().SetWriteDeadline(aLongTimeAgo)
	}
	x.closeInput()
	<-x.writeDone
	if x.writeErr != nil {
		if reusable && x.writeFailed() {
			// A complete reply, and the process stopped reading (it exited
			// or closed stdin) before the message was all written.
			x.mistake = ReplyBeforeRead
		}
		reusable = false
	}
	if reusable && unreadInput(x.proc.Stdin()) {
		// The transform answered without reading all of its message: the
		// rest would be taken for the start of the next client's message.
		reusable = false
		x.mistake = ReplyBeforeRead
	}
	if reusable && x.retire {
		// Connection: close. A clean end, not a failure: the pool
		// counts it as a retirement and stops the process off this path.
		x.proc.Retire()
	}
	x.release(reusable)
	if x.br != nil {
		x.br.Reset(nil)
		readBuffers.Put(x.br)
		x.br = nil
	}
	x.body = nil
	if x.err == nil && !x.complete.Load() {
		x.err = newError(x.name, x.proc.Pid(), Canceled, errors.New("the reply body was closed before its end"))
	}
}

// waitExit waits for a process that is exiting to be reaped, so that the
// error can say how it ended and quote all of its stderr. An abort (the
// timeout, the caller going away) ends the wait too.
func (x *exchange) waitExit() {
	select {
	case <-x.proc.Done():
	case <-x.abortCh:
	}
}

var errNoReply = errors.New("it closed its output without replying")

// fail turns a read failure into the *Error the caller sees, attributing it
// to what really happened: an abort (timeout, cancel, broken input), a
// crash, or a protocol violation.
func (x *exchange) fail(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	pid := x.proc.Pid()
	if x.isAborted.Load() {
		switch x.aborted {
		case Timeout:
			what := fmt.Sprintf("no complete reply within %s", x.timeout)
			if x.timeout == 0 || x.ctx.Err() != nil {
				what = "the request's deadline passed"
			}
			cause := errors.New(what)
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Mistake == NoMistake {
				pe = nil
				if b := x.body; b != nil && b.Framing() == httpmsg.Sized && b.Remaining() > 0 && b.Offset() > 0 {
					// It wrote part of the body its Content-Length
					// announced, then stopped and waited: most often a
					// Content-Length not updated with the body.
					pe = shortBody(b.Offset(), b.Remaining())
					pe.Err = os.ErrDeadlineExceeded // it stalled; its output did not end
				}
			}
			if pe != nil {
				// Where the reply stopped tells why: a body short of its
				// Content-Length, a head without its blank line.
				cause = fmt.Errorf("%s; %w", what, pe)
			}
			// Its stderr so far: the pool logs the rest as it comes.
			return x.withTail(newError(x.name, pid, Timeout, cause), false)
		case Canceled:
			return newError(x.name, pid, Canceled, x.ctx.Err())
		case Input:
			<-x.writeDone
			var ie *inputError
			if errors.As(x.writeErr, &ie) {
				var e *Error
				if errors.As(ie.err, &e) {
					return e // an earlier stage failed: report the cause
				}
				return newError(x.name, pid, Input, ie)
			}
		}
	}
	if x.closing.Load() {
		return newError(x.name, pid, Canceled, errors.New("the reply body was closed before its end"))
	}
	if err == io.EOF {
		err = errNoReply
	}
	var pe *ProtocolError
	if errors.As(err, &pe) && pe.Err == nil {
		e := newError(x.name, pid, Protocol, err)
		if x.br != nil && pe.Line > 0 {
			e.Output, _ = x.br.Peek(min(x.br.Buffered(), outputPeek))
			e.Output = append([]byte(nil), e.Output...)
		}
		// The process cannot be reused: end it, and wait for the end so
		// that the error quotes all it wrote to stderr (a traceback
		// printed just before the bad reply may not be drained yet). The
		// wait is bounded by the kill grace, and the request's timeout
		// ends it sooner.
		x.proc.Stop()
		x.waitExit()
		return x.withTail(e, true)
	}
	e := newError(x.name, pid, Crash, err)
	if x.body == nil && x.writeFailed() {
		e.Phase = PhaseWrite
	}
	x.withTail(e, true)
	if pe != nil && e.Exit != "" && e.Exit != "exit status 0" {
		// It crashed: a reply cut short is the crash's doing, not a
		// wrong Content-Length or a missing blank line.
		pe.Mistake = NoMistake
	}
	return e
}

// writeFailed reports whether writing the message has already failed for a
// reason other than the input (typically EPIPE: the process is gone).
func (x *exchange) writeFailed() bool {
	select {
	case <-x.writeDone:
		var ie *inputError
		return x.writeErr != nil && !errors.As(x.writeErr, &ie)
	default:
		return false
	}
}

// withTail adds the stderr tail and, for a crash, how the process ended.
// The output ended or broke: when that is because the process is exiting,
// the error waits for the reap, which is when its stderr has been drained.
// A process whose output ended while it runs on closed its stdout: its
// reply cannot come, and the error says so at once.
func (x *exchange) withTail(e *Error, crashed bool) *Error {
	if crashed {
		if x.proc.Exiting() {
			x.waitExit()
			if how := x.proc.Exited(); how != "" {
				if (e.Kind == Timeout || e.Kind == Protocol) && strings.HasPrefix(how, "signal: ") {
					// The bridge ended it; do not let that read as the cause.
					how += " (sent by the bridge)"
				}
				e.Err = fmt.Errorf("%w (process: %s)", e.Err, how)
				e.Exit = how
			}
		} else {
			e.Err = fmt.Errorf("%w (the process still runs)", e.Err)
		}
	}
	e.StderrTail = x.proc.StderrTail()
	return e
}

// servedMistake reports a mistake found in a reply that was served all the
// same, once the exchange has ended (after Close); NoMistake otherwise.
func (x *exchange) servedMistake() (Mistake, int) {
	x.readMu.Lock()
	defer x.readMu.Unlock()
	return x.mistake, x.proc.Pid()
}
