package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/fcgi-bridge/fcgi-bridge/bridge"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// swapHandler is the server's handler: it passes each request to the
// current Bridge, and a reload swaps in a new one while requests are in
// flight. A request is counted against the generation it started on, and a
// generation is closed only once none of its requests is left, so no request
// ever reaches a Bridge that is closing.
type swapHandler struct {
	cur atomic.Pointer[generation]
}

type generation struct {
	b *bridge.Bridge

	mu      sync.Mutex
	active  int
	retired bool
	idle    chan struct{} // closed when retired and active is 0
}

func newSwapHandler(b *bridge.Bridge) *swapHandler {
	h := &swapHandler{}
	h.cur.Store(newGeneration(b))
	return h
}

func newGeneration(b *bridge.Bridge) *generation {
	return &generation{b: b, idle: make(chan struct{})}
}

func (h *swapHandler) ServeFCGI(w fcgi.ResponseWriter, r *fcgi.Request) {
	g := h.acquire()
	if g == nil {
		// Shutting down: the server refuses new requests itself, so this
		// is only a request that raced with the last close.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "fcgi-bridge is shutting down\n")
		return
	}
	defer g.release()
	g.b.ServeFCGI(w, r)
}

// acquire counts a request against the current generation. A generation
// retired between the load and the count is skipped: the pointer already
// names its successor. It returns nil when the last generation is retired.
func (h *swapHandler) acquire() *generation {
	for {
		g := h.cur.Load()
		g.mu.Lock()
		if !g.retired {
			g.active++
			g.mu.Unlock()
			return g
		}
		g.mu.Unlock()
		if h.cur.Load() == g {
			return nil
		}
	}
}

func (g *generation) release() {
	g.mu.Lock()
	g.active--
	if g.retired && g.active == 0 {
		close(g.idle)
	}
	g.mu.Unlock()
}

// swap makes b serve new requests and returns the previous generation, which
// the caller retires.
func (h *swapHandler) swap(b *bridge.Bridge) *generation {
	return h.cur.Swap(newGeneration(b))
}

// current returns the Bridge new requests go to.
func (h *swapHandler) current() *bridge.Bridge { return h.cur.Load().b }

// ServesRole answers for the current Bridge, so a server that asks its
// handler which roles it plays gets the answer of the configuration in use.
func (h *swapHandler) ServesRole(role fcgi.Role) bool { return h.current().ServesRole(role) }

// retire waits for the generation's requests to finish (or ctx to end) and
// closes its Bridge, which stops its transform processes. With ctx already
// ended it closes at once.
func (g *generation) retire(ctx context.Context) error {
	g.mu.Lock()
	if !g.retired {
		g.retired = true
		if g.active == 0 {
			close(g.idle)
		}
	}
	g.mu.Unlock()
	select {
	case <-g.idle:
	case <-ctx.Done():
	}
	return g.b.Close(ctx)
}
