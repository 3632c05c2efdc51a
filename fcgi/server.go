package fcgi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves FastCGI connections. Set its fields before the first Serve or
// ServeConn and do not change them afterwards.
type Server struct {
	Handler Handler
	Limits  Limits
	Logger  *slog.Logger // nil = slog.Default()

	initOnce sync.Once
	lim      Limits
	log      *slog.Logger

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	evicted    int // conns closed to make room for new ones that have not finished closing
	inShutdown atomic.Bool
	activeReqs atomic.Int64
	lastReject atomic.Int64 // unix nanos of the last "too many connections" log line
	lastEvict  atomic.Int64 // unix nanos of the last "closed a connection to make room" log line
	workers    *workers     // goroutines that run handlers
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.lim = s.Limits.withDefaults()
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.Default()
		}
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
		s.workers = newWorkers()
	})
}

// Serve accepts connections on l and serves each in its own goroutine until
// Shutdown or Close, then returns ErrServerClosed. l is closed on return.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		_ = l.Close()
	}()

	var delay time.Duration
	for {
		rwc, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if temporaryAcceptError(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("fcgi: accept failed; retrying", "addr", l.Addr(), "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("fcgi: accept on %v: %w", l.Addr(), err)
		}
		delay = 0
		if c := s.track(rwc); c != nil {
			go c.serve()
		}
	}
}

// temporaryAcceptError covers running out of descriptors or memory and a
// peer that gave up before accept: waiting and retrying is right for those.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// ServeConn serves one connection until it ends. It returns once the
// connection is closed and the handlers of its requests have returned.
func (s *Server) ServeConn(rwc net.Conn) {
	s.init()
	if c := s.track(rwc); c != nil {
		c.serve()
		c.ended.Wait() // the read loop may have moved to another goroutine
	}
}

// track registers a new connection, or closes it at once when the server is
// closing. At MaxConns it makes room first by closing a connection that
// serves nobody (see evictableLocked); only when there is none is the new
// connection closed.
func (s *Server) track(rwc net.Conn) *conn {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		_ = rwc.Close()
		return nil
	}
	var victim *conn
	var why string
	if len(s.conns)-s.evicted >= s.lim.MaxConns {
		// Evicted connections still closing count against a hard bound of
		// twice MaxConns, so descriptors stay bounded under a flood.
		if len(s.conns) < 2*s.lim.MaxConns {
			victim, why = s.evictableLocked()
		}
		if victim == nil {
			s.mu.Unlock()
			_ = rwc.Close()
			now := time.Now().UnixNano()
			if last := s.lastReject.Load(); now-last > int64(time.Second) && s.lastReject.CompareAndSwap(last, now) {
				s.log.Warn("fcgi: too many connections; closing new ones", "max_conns", s.lim.MaxConns)
			}
			return nil
		}
		if why == evictStalled {
			// Closed at once below: its descriptor is freed now.
			delete(s.conns, victim)
		} else {
			// Closed once it has drained (LingerTimeout at most).
			victim.evicted = true
			s.evicted++
		}
	}
	c := newConn(s, rwc)
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if victim != nil {
		now := time.Now().UnixNano()
		if last := s.lastEvict.Load(); now-last > int64(time.Second) && s.lastEvict.CompareAndSwap(last, now) {
			s.log.Info("fcgi: at max_conns; closing a connection to serve a new one", "max_conns", s.lim.MaxConns, "closed", why, "remote", victim.remote)
		}
		victim.evict(why)
	}
	return c
}

// Why a connection is evicted.
const (
	evictStalled = "stalled before the end of its params"
	evictIdle    = "idle kept-alive"
)

// evictableLocked picks the connection to close to make room for a new one:
// the one that has waited longest for the rest of a request's params (or of
// its first record), else the one idle longest between requests. Neither
// has a request a handler works on. nil when every connection serves one.
// Called with s.mu held.
func (s *Server) evictableLocked() (*conn, string) {
	var stalled, idle *conn
	var stalledSince, idleSince time.Time
	for c := range s.conns {
		if c.evicted {
			continue
		}
		c.mu.Lock()
		switch {
		case c.draining:
		case len(c.reqs) == 0 && !c.begun:
			if stalled == nil || c.started.Before(stalledSince) {
				stalled, stalledSince = c, c.started
			}
		case len(c.reqs) > 0 && c.inParams == len(c.reqs):
			for _, r := range c.reqs {
				if stalled == nil || r.began.Before(stalledSince) {
					stalled, stalledSince = c, r.began
				}
			}
		case len(c.reqs) == 0:
			if idle == nil || c.idleSince.Before(idleSince) {
				idle, idleSince = c, c.idleSince
			}
		}
		c.mu.Unlock()
	}
	if stalled != nil {
		return stalled, evictStalled
	}
	if idle != nil {
		return idle, evictIdle
	}
	return nil, ""
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.evicted {
		c.evicted = false
		s.evicted--
	}
	s.mu.Unlock()
}

// servesRole asks the Handler, when it is a RoleServer, whether it plays role.
// A nil Handler serves every role (with 404s), as before.
func (s *Server) servesRole(role Role) (serves bool) {
	rs, ok := s.Handler.(RoleServer)
	if !ok {
		return true
	}
	// It runs on a connection's read loop, where a panic would take the
	// whole process down: a panicking answer counts as "no".
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("fcgi: ServesRole panicked; refusing the role", "role", role, "panic", p)
			serves = false
		}
	}()
	return rs.ServesRole(role)
}

func (s *Server) acquireRequest() bool {
	if s.activeReqs.Add(1) > int64(s.lim.MaxReqs) {
		s.activeReqs.Add(-1)
		return false
	}
	return true
}

func (s *Server) connections() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		_ = l.Close()
	}
}

// Shutdown stops accepting, closes idle connections at once and lets active
// requests finish; connections close as their last request ends. A request
// that arrives on an open connection meanwhile is served, as is one already
// sent on an idle connection when Shutdown began: the web server sent it
// before it could see the connection close. When ctx ends
// first, the remaining requests are cancelled (cause ErrServerClosed) and
// each still gets its END_REQUEST (a 503 if it had sent nothing), or, if its
// response had begun, is aborted as by Aborter; Shutdown then returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.inShutdown.Store(true)
	s.closeListeners()
	for _, c := range s.connections() {
		c.mu.Lock()
		c.closeWhenIdle = true
		if len(c.reqs) == 0 && !c.draining {
			// Wake the read loop: it closes the connection unless a
			// request is already waiting to be read.
			_ = c.rwc.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if len(s.connections()) == 0 {
			s.workers.stop()
			return nil
		}
		select {
		case <-ctx.Done():
			s.endAll()
			s.workers.stop()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// endAll cancels every request, gives handlers that honour their context a
// moment to end their own responses, and ends the rest itself.
func (s *Server) endAll() {
	var reqs []*activeRequest
	for _, c := range s.connections() {
		c.mu.Lock()
		for _, r := range c.reqs {
			reqs = append(reqs, r)
		}
		c.mu.Unlock()
	}
	for _, r := range reqs {
		// Cancelling also wakes a handler waiting in Stdin or Data. The
		// streams themselves are the read loop's until the request is
		// removed, so they are not touched here.
		r.cancel(ErrServerClosed)
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	for len(s.connections()) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for _, r := range reqs {
		// A response already under way is aborted: ending it normally would
		// pass its truncated body off as complete.
		wg.Go(func() { r.w.endOrAbort(1, 503, ErrServerClosed) })
	}
	wg.Wait()
}

// Close closes the listeners and every connection at once; active requests
// are cancelled without END_REQUEST.
func (s *Server) Close() error {
	s.init()
	s.inShutdown.Store(true)
	s.closeListeners()
	for _, c := range s.connections() {
		c.closeNow(ErrServerClosed)
	}
	s.workers.stop()
	return nil
}
