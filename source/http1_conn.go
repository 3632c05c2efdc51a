package source

// The HTTP/1.1 client's kept connections: taken, checked, put back, reaped.

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// h1Conn is one connection to the upstream. Only the request using it
// touches it, except for the cancel hook, which sets deadlines.
type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	rc        syscall.RawConn // nc's, for the idle check; nil when nc has none
	peek      func(fd uintptr) bool
	quietNow  bool // the last idle check's answer, set by peek
	idleSince time.Time
	reused    bool
	cancelled atomic.Bool // the request's context ended: deadlines stay in the past
}

var aLongTimeAgo = time.Unix(1, 0)

// get returns a kept connection that is still sound, or dials a new one.
func (c *h1Client) get(ctx context.Context) (*h1Conn, error) {
	now := time.Now()
	for {
		c.mu.Lock()
		if len(c.idle) == 0 {
			c.mu.Unlock()
			break
		}
		cn := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		c.mu.Unlock()
		if (c.idleTimeout > 0 && now.Sub(cn.idleSince) > c.idleTimeout) || !cn.quiet() {
			cn.nc.Close()
			continue
		}
		cn.reused = true
		return cn, nil
	}
	nc, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	return newH1Conn(nc), nil
}

func newH1Conn(nc net.Conn) *h1Conn {
	cn := &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10)}
	// The raw connection and the probe are made once per connection: each
	// SyscallConn call and each closure would otherwise cost an allocation
	// on every reuse.
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			cn.rc = rc
			cn.peek = func(fd uintptr) bool {
				var b [1]byte
				_, _, perr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				cn.quietNow = perr == syscall.EAGAIN || perr == syscall.EWOULDBLOCK
				return true // never wait: this is a probe
			}
		}
	}
	return cn
}

// quiet reports whether an idle connection has nothing to say: no bytes
// (an upstream that sent more than its response said, which the next request
// would take for its answer) and no end (the upstream closed it meanwhile,
// as Node does after 5 idle seconds). One non-blocking peek; net/http learns
// the same from a reader goroutine per connection, which costs more.
func (cn *h1Conn) quiet() bool {
	if cn.br.Buffered() > 0 {
		return false
	}
	if _, ok := cn.nc.(syscall.Conn); !ok {
		return true
	}
	if cn.rc == nil {
		return false
	}
	cn.quietNow = false
	err := cn.rc.Read(cn.peek)
	return err == nil && cn.quietNow
}

// put keeps cn for the next request, or closes it.
func (c *h1Client) put(cn *h1Conn) {
	if cn.br.Buffered() > 0 || cn.cancelled.Load() {
		// Bytes past the response: the stream is out of step.
		cn.nc.Close()
		return
	}
	cn.idleSince = time.Now()
	c.mu.Lock()
	if c.closed || len(c.idle) >= c.maxIdle {
		c.mu.Unlock()
		cn.nc.Close()
		return
	}
	c.idle = append(c.idle, cn)
	if c.reaper == nil && c.idleTimeout > 0 {
		c.reaper = time.AfterFunc(c.idleTimeout, c.reap)
	}
	c.mu.Unlock()
}

// reap closes connections idle past idleTimeout, so the bridge does not sit
// on sockets the upstream has long closed.
func (c *h1Client) reap() {
	cutoff := time.Now().Add(-c.idleTimeout)
	c.mu.Lock()
	keep := c.idle[:0]
	var stale []*h1Conn
	for _, cn := range c.idle {
		if cn.idleSince.Before(cutoff) {
			stale = append(stale, cn)
		} else {
			keep = append(keep, cn)
		}
	}
	clear(c.idle[len(keep):])
	c.idle = keep
	c.reaper = nil
	if len(c.idle) > 0 && !c.closed {
		c.reaper = time.AfterFunc(c.idleTimeout, c.reap)
	}
	c.mu.Unlock()
	for _, cn := range stale {
		cn.nc.Close()
	}
}

func (c *h1Client) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	if c.reaper != nil {
		c.reaper.Stop()
	}
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
}
