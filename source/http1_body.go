package source

// The HTTP/1.1 client's bodies: the request body written beside the exchange,
// the response body read by the caller, and what each end does to the connection.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// inputError is a failure to read the request body, as opposed to a failure
// to write it to the upstream.
type inputError struct{ err error }

func (e *inputError) Error() string { return "read request body: " + e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// h1Body is the response body, and the owner of the connection until the
// body ends: a body read to its end gives the connection back for reuse,
// one closed early closes it. Read and Close may run on different
// goroutines (a transform exchange aborts from a timer): mu serialises
// them, and relMu makes the one decision about the connection (back to the
// pool, or closed) exclusive with Close's wake-up of a blocked Read, so a
// pooled connection is never touched again.
type h1Body struct {
	c    *h1Client
	cn   *h1Conn
	ctx  context.Context
	stop func() bool

	mu       sync.Mutex // held by Read and by the release in Close
	head     httpmsg.Head
	body     httpmsg.Body // the framing the head announced
	reusable bool
	finished bool // no more reads: the body ended or failed
	err      error

	relMu     sync.Mutex
	released  bool        // the connection was handed back or closed
	abandoned atomic.Bool // Close came first: never reuse
	awaiting  bool        // the response head is still awaited (deadline owner)

	writeDone chan struct{} // nil when the request had no body
	writeErr  error         // valid once writeDone is closed
	input     io.Reader
}

// armResponseTimeout starts response_timeout once the request is out.
func (x *h1Body) armResponseTimeout() {
	x.relMu.Lock()
	defer x.relMu.Unlock()
	if x.c.responseTimeout > 0 && !x.released && x.awaiting {
		_ = x.cn.nc.SetReadDeadline(time.Now().Add(x.c.responseTimeout))
	}
}

// headDone ends response_timeout: the body may take as long as it takes.
func (x *h1Body) headDone() {
	x.relMu.Lock()
	defer x.relMu.Unlock()
	x.awaiting = false
	if x.c.responseTimeout > 0 && !x.released {
		_ = x.cn.nc.SetReadDeadline(time.Time{})
		if x.cn.cancelled.Load() {
			_ = x.cn.nc.SetDeadline(aLongTimeAgo)
		}
	}
}

func (x *h1Body) writeBody(q *h1Request) {
	var err error
	if q.length >= 0 {
		err = writeFixed(x.cn.nc, q.head, q.body, q.length)
	} else {
		err = writeChunked(x.cn.nc, q.head, q.body)
	}
	x.writeErr = err
	var ie *inputError
	if errors.As(err, &ie) {
		// The upstream would wait for the rest of the body and the
		// handler for its answer: end the exchange now. (A failed write
		// to the upstream needs nothing: the connection is broken and its
		// answer, often sent before it stopped reading, is still read.)
		x.relMu.Lock()
		if !x.released {
			// Marked before the deadline fires: the reader it wakes must
			// not take it for response_timeout (a 504).
			x.cn.cancelled.Store(true) // never reused
			_ = x.cn.nc.SetReadDeadline(aLongTimeAgo)
		}
		x.relMu.Unlock()
	} else if err == nil {
		x.armResponseTimeout()
	}
	close(x.writeDone)
}

func (x *h1Body) Read(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.finished {
		if x.err != nil {
			return 0, x.err
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := x.body.Read(p)
	if err == io.EOF {
		x.done()
		return n, io.EOF
	}
	if err != nil {
		if x.ctx.Err() != nil {
			err = x.ctx.Err()
		} else if x.abandoned.Load() {
			err = errBodyClosed
		}
		x.err = err
		x.discard()
	}
	return n, err
}

var errBodyClosed = errors.New("read after the upstream body was closed")

// Close ends the exchange: a body not read to its end costs the connection.
// A Read blocked on another goroutine is woken first.
func (x *h1Body) Close() error {
	x.relMu.Lock()
	if !x.released {
		x.abandoned.Store(true)
		_ = x.cn.nc.SetReadDeadline(aLongTimeAgo)
	}
	x.relMu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.finished {
		x.err = errBodyClosed
	}
	x.discard()
	return nil
}

// done ends a complete response: the connection goes back to the pool when
// both sides of the exchange finished cleanly.
func (x *h1Body) done() {
	x.finished = true
	if x.stop != nil && !x.stop() {
		// The context ended meanwhile and its hook ran or is running.
		x.reusable = false
	}
	if x.writeDone != nil && x.reusable {
		// A complete answer usually comes after the whole request, but
		// the writer may not have seen its last write return yet.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-x.writeDone:
		case <-t.C:
		}
		t.Stop()
	}
	if x.writeDone != nil {
		select {
		case <-x.writeDone:
			if x.writeErr != nil {
				x.reusable = false
			}
		default:
			// The upstream answered without reading the whole body: the
			// connection is out of step.
			x.reusable = false
		}
	}
	x.relMu.Lock()
	if x.released {
		x.relMu.Unlock()
		return
	}
	x.released = true
	reuse := x.reusable && !x.abandoned.Load()
	x.relMu.Unlock()
	if reuse {
		x.c.put(x.cn)
		return
	}
	x.closeConn()
}

// discard ends a failed or abandoned exchange.
func (x *h1Body) discard() {
	x.finished = true
	if x.stop != nil {
		x.stop()
	}
	x.relMu.Lock()
	if x.released {
		x.relMu.Unlock()
		return
	}
	x.released = true
	x.relMu.Unlock()
	x.closeConn()
}

// closeConn closes the connection, which stops the writer, and the request
// input, which stops a writer waiting on the web server, then waits for the
// writer so nothing outlives the exchange.
func (x *h1Body) closeConn() {
	x.cn.nc.Close()
	if x.writeDone != nil {
		if c, ok := x.input.(io.Closer); ok {
			select {
			case <-x.writeDone:
			default:
				_ = c.Close()
			}
		}
		<-x.writeDone
	}
}

func writeFixed(w io.Writer, head []byte, body io.Reader, n int64) error {
	if _, err := w.Write(head); err != nil {
		return err
	}
	copied, err := io.Copy(w, inputReader{io.LimitReader(body, n)})
	if err != nil {
		return err
	}
	if copied < n {
		return &inputError{fmt.Errorf("request body ended %d bytes short of its length: %w", n-copied, io.ErrUnexpectedEOF)}
	}
	return nil
}

// writeChunked sends a body of unknown length with chunked framing, one
// chunk per read, so a streamed body reaches the upstream as it arrives.
func writeChunked(w io.Writer, head []byte, body io.Reader) error {
	buf := make([]byte, 32<<10)
	out := append(make([]byte, 0, len(head)+16), head...)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			out = strconv.AppendInt(out, int64(n), 16)
			out = append(out, '\r', '\n')
			if _, err := w.Write(out); err != nil {
				return err
			}
			out = out[:0]
			if _, err := w.Write(append(buf[:n:n], "\r\n"...)); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			out = append(out, "0\r\n\r\n"...)
			_, err := w.Write(out)
			return err
		}
		if rerr != nil {
			return &inputError{rerr}
		}
	}
}

// inputReader marks read errors of the request body as such, so io.Copy's
// error tells them from write errors.
type inputReader struct{ r io.Reader }

func (ir inputReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if err != nil && err != io.EOF {
		err = &inputError{err}
	}
	return n, err
}
