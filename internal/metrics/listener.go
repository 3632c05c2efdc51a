package metrics

import (
	"net"
	"sync"
	"syscall"
)

// CountListener wraps ln so that every connection it accepts is counted in
// c as accepted and as open until it is closed.
func CountListener(ln net.Listener, c *Listener) net.Listener {
	return &countedListener{Listener: ln, c: c}
}

type countedListener struct {
	net.Listener
	c *Listener
}

func (l *countedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.c.accepted.Add(1)
	l.c.open.Add(1)
	cc := &countedConn{Conn: conn, c: l.c}
	if _, ok := conn.(socket); ok {
		return &countedSocket{cc}, nil
	}
	return cc, nil
}

// socket is what the FastCGI server looks for on a connection besides
// net.Conn: the socket itself (peer close detection) and a half close
// (lingering close).
type socket interface {
	syscall.Conn
	CloseWrite() error
}

// countedConn counts its close once, however often Close is called.
type countedConn struct {
	net.Conn
	c    *Listener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.c.open.Add(-1) })
	return c.Conn.Close()
}

// countedSocket passes the socket's own methods through, so the wrapping
// changes nothing but the counts.
type countedSocket struct{ *countedConn }

func (c *countedSocket) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(socket).SyscallConn()
}

func (c *countedSocket) CloseWrite() error { return c.Conn.(socket).CloseWrite() }
