package fcgi

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeApp is a small FastCGI application for the client's tests, written
// against the record layer only, so the client can be tested on its own
// (and made to misbehave in ways a correct server never would).
type fakeApp struct {
	handler func(r *fakeReq, w *fakeOut)
	// ignoreAbort makes the application carry on after FCGI_ABORT_REQUEST.
	ignoreAbort bool
	// closeAfterEach closes the connection after each request even with
	// KEEP_CONN, like an application recycling itself.
	closeAfterEach bool
	// refuseMpx ends a request that arrives while another is active on its
	// connection with FCGI_CANT_MPX_CONN.
	refuseMpx bool
	refused   atomic.Int32
	values    map[string]string

	accepted  atomic.Int32
	aborts    atomic.Int32
	maxActive atomic.Int32
	wg        sync.WaitGroup
}

type fakeReq struct {
	id     uint16
	role   Role
	keep   bool
	params []Pair
	stdin  *io.PipeReader
	data   *io.PipeReader
	ctx    context.Context
}

func (r *fakeReq) param(name string) string {
	v := ""
	for _, p := range r.params {
		if p.Name == name {
			v = p.Value
		}
	}
	return v
}

type fakeOut struct {
	c  *fakeConn
	id uint16
}

func (o *fakeOut) stdout(b []byte) error { return o.c.write(typeStdout, o.id, b) }
func (o *fakeOut) stderr(b []byte) error { return o.c.write(typeStderr, o.id, b) }

type fakeConn struct {
	nc net.Conn
	mu sync.Mutex
	rw *recordWriter
}

func (c *fakeConn) write(t recType, id uint16, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		n := min(len(b), maxContent)
		if err := c.rw.writeRecord(t, id, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (c *fakeConn) writeRaw(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// serve accepts on l until it is closed.
func (a *fakeApp) serve(t testing.TB, l net.Listener) {
	t.Cleanup(func() { l.Close(); a.wg.Wait() })
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			a.accepted.Add(1)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.serveConn(nc)
			}()
		}
	}()
}

type fakeActive struct {
	req          *fakeReq
	params       []byte
	stdinW       *io.PipeWriter
	dataW        *io.PipeWriter
	cancel       context.CancelFunc
	stdinStarted bool
	refuse       bool
}

func (a *fakeApp) serveConn(nc net.Conn) {
	defer nc.Close()
	c := &fakeConn{nc: nc, rw: newRecordWriter(nc)}
	rr := newRecordReader(nc)
	var mu sync.Mutex
	active := map[uint16]*fakeActive{}
	var handlers sync.WaitGroup
	defer handlers.Wait()
	closeConn := make(chan struct{}, 1)
	// abandon ends the requests still active when the connection goes, as
	// a real application's would end: their handlers must not wait for
	// input that can no longer come.
	abandon := func() {
		mu.Lock()
		for _, r := range active {
			r.cancel()
			r.stdinW.CloseWithError(io.ErrUnexpectedEOF)
			r.dataW.CloseWithError(io.ErrUnexpectedEOF)
		}
		mu.Unlock()
	}
	for {
		select {
		case <-closeConn:
			abandon()
			return
		default:
		}
		h, content, err := rr.next()
		if err != nil {
			abandon()
			return
		}
		mu.Lock()
		r := active[h.ID]
		mu.Unlock()
		switch h.Type {
		case typeGetValues:
			var out []byte
			decodePairs(content, pairLimits{}, func(n, _ []byte) error {
				if v, ok := a.values[string(n)]; ok {
					out = appendPair(out, string(n), v)
				}
				return nil
			})
			c.write(typeGetValuesResult, 0, out)
		case typeBeginRequest:
			ctx, cancel := context.WithCancel(context.Background())
			sr, sw := io.Pipe()
			dr, dw := io.Pipe()
			req := &fakeReq{id: h.ID, role: Role(uint16(content[0])<<8 | uint16(content[1])), keep: content[2]&flagKeepConn != 0,
				stdin: sr, data: dr, ctx: ctx}
			mu.Lock()
			active[h.ID] = &fakeActive{req: req, stdinW: sw, dataW: dw, cancel: cancel, refuse: a.refuseMpx && len(active) > 0}
			if n := int32(len(active)); n > a.maxActive.Load() {
				a.maxActive.Store(n)
			}
			mu.Unlock()
		case typeParams:
			if r == nil {
				continue
			}
			if len(content) > 0 {
				r.params = append(r.params, content...)
				continue
			}
			decodePairs(r.params, pairLimits{}, func(n, v []byte) error {
				r.req.params = append(r.req.params, Pair{string(n), string(v)})
				return nil
			})
			handlers.Add(1)
			go func(r *fakeActive) {
				defer handlers.Done()
				w := &fakeOut{c: c, id: r.req.id}
				app, proto := uint32(0), StatusRequestComplete
				if r.refuse {
					a.refused.Add(1)
					endWith(r.req, StatusCantMpxConn)
				} else if a.handler != nil {
					a.handler(r.req, w)
				}
				r.req.stdin.CloseWithError(errors.New("handler returned"))
				r.req.data.CloseWithError(errors.New("handler returned"))
				if st, ok := r.req.ctx.Value(protoKey{}).(uint8); ok {
					proto = st
				}
				var end []byte
				end = appendEmptyRecord(end, typeStdout, r.req.id)
				end = appendEndRequest(end, r.req.id, app, proto)
				mu.Lock()
				delete(active, r.req.id)
				last := len(active) == 0
				mu.Unlock()
				c.writeRaw(end)
				if (!r.req.keep || a.closeAfterEach) && last {
					select {
					case closeConn <- struct{}{}:
					default:
					}
					nc.Close()
				}
			}(r)
		case typeStdin:
			if r == nil {
				continue
			}
			if len(content) == 0 {
				r.stdinW.Close()
				if a.closeAfterEach && r.req.role != RoleFilter {
					// An application recycling itself (php-fpm at
					// pm.max_requests) serves the request it has read and
					// closes: it reads no further request from the
					// connection, so none is started and then cut off.
					<-closeConn
					abandon()
					return
				}
				continue
			}
			r.stdinW.Write(content)
		case typeData:
			if r == nil {
				continue
			}
			if len(content) == 0 {
				r.dataW.Close()
				continue
			}
			r.dataW.Write(content)
		case typeAbortRequest:
			a.aborts.Add(1)
			if r != nil && !a.ignoreAbort {
				r.cancel()
				r.stdinW.CloseWithError(errors.New("aborted"))
			}
		}
	}
}

// protoKey lets a handler choose the END_REQUEST protocol status by
// returning a context carrying it; see endWith.
type protoKey struct{}

// endWith makes the fake application end r with protocol status st.
func endWith(r *fakeReq, st uint8) {
	r.ctx = context.WithValue(r.ctx, protoKey{}, st)
}
