// Package metrics owns the daemon's own counters and the status answers
// built from them: per route (requests by status class, latency, bytes,
// fail-open fallbacks, retries), per listener (connections open, accepted,
// refused by the allow list) and for the daemon (version, start, reloads,
// configuration hash). Pool counters are kept by package pool; they enter
// here as pool.Stats when a status answer is made.
//
// Data enters through the counting methods, called on the request path
// (atomic adds, no locks, no allocation), and leaves as a Snapshot written
// in one of three formats: Prometheus text exposition, JSON, or a short
// page for people (format.go).
//
// A Registry outlives configuration reloads: a route keeps its counters
// across a reload as long as its name stays the same.
package metrics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds every counter of one daemon.
type Registry struct {
	version string
	start   time.Time

	mu        sync.Mutex
	routes    map[string]*Route
	listeners []*Listener
	config    ConfigInfo
	reloads   [2]uint64 // by result: 0 ok, 1 failed
	last      Reload
}

// ConfigInfo names the configuration in use.
type ConfigInfo struct {
	File string `json:"file"`
	// Hash is "sha256:" and the hex digest of the effective configuration
	// as -T prints it, so it changes exactly when what runs changes.
	Hash string `json:"hash"`
}

// Reload is the outcome of the last reload.
type Reload struct {
	Time  time.Time `json:"time"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// NewRegistry returns an empty registry for a daemon of that version,
// started now.
func NewRegistry(version string) *Registry {
	return &Registry{version: version, start: time.Now(), routes: map[string]*Route{}}
}

// Route returns the counters of the named route, made on first use.
func (r *Registry) Route(name string) *Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.routes[name]
	if rt == nil {
		rt = &Route{name: name}
		r.routes[name] = rt
	}
	return rt
}

// Listener returns new counters for a listener at addr.
func (r *Registry) Listener(addr string) *Listener {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := &Listener{addr: addr}
	r.listeners = append(r.listeners, l)
	return l
}

// SetConfig records the configuration now serving.
func (r *Registry) SetConfig(c ConfigInfo) {
	r.mu.Lock()
	r.config = c
	r.mu.Unlock()
}

// Reloaded records the outcome of a reload: err nil when the new
// configuration serves.
func (r *Registry) Reloaded(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = Reload{Time: time.Now(), OK: err == nil}
	if err != nil {
		r.last.Error = err.Error()
		r.reloads[1]++
	} else {
		r.reloads[0]++
	}
}

// Requests returns the number of requests answered on every route.
func (r *Registry) Requests() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n uint64
	for _, rt := range r.routes {
		n += rt.count.Load()
	}
	return n
}

// Route counts the requests one route answered.
type Route struct {
	name      string
	classes   [6]atomic.Uint64 // 0: outside 100-599; 1-5: 1xx-5xx
	count     atomic.Uint64
	sumNanos  atomic.Int64
	buckets   [len(latencyBuckets)]atomic.Uint64 // not cumulative; the last is +Inf
	bytesIn   atomic.Uint64
	bytesOut  atomic.Uint64
	fallbacks atomic.Uint64
	retries   atomic.Uint64
}

// latencyBuckets are the upper bounds of the latency histogram, from a
// cached page to a slow renderer; the last one is +Inf.
var latencyBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	1<<63 - 1,
}

// Observe counts one answered request: its status (499 when the client
// left first), how long it took and the bytes read from the request and
// written in the response body.
func (rt *Route) Observe(status int, d time.Duration, in, out int64) {
	class := 0
	if status >= 100 && status <= 599 {
		class = status / 100
	}
	rt.classes[class].Add(1)
	i := sort.Search(len(latencyBuckets)-1, func(i int) bool { return d <= latencyBuckets[i] })
	rt.buckets[i].Add(1)
	rt.sumNanos.Add(int64(d))
	if in > 0 {
		rt.bytesIn.Add(uint64(in))
	}
	if out > 0 {
		rt.bytesOut.Add(uint64(out))
	}
	// Counted last: a snapshot never sees more requests than classes.
	rt.count.Add(1)
}

// Fallback counts an answer served untransformed because the route fails
// open and its transform failed.
func (rt *Route) Fallback() { rt.fallbacks.Add(1) }

// Retry counts a transform run again after a crash or protocol error.
func (rt *Route) Retry() { rt.retries.Add(1) }

// Listener counts the connections of one listener.
type Listener struct {
	addr     string
	open     atomic.Int64
	accepted atomic.Uint64
	refused  atomic.Uint64
}

// Refused counts a connection closed at once because its address is not in
// the allow list.
func (l *Listener) Refused() { l.refused.Add(1) }
