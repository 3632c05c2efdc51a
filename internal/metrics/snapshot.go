package metrics

import (
	"sort"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// Snapshot is every counter at one moment, the source of all three formats.
type Snapshot struct {
	Daemon    DaemonSnapshot     `json:"daemon"`
	Pools     []PoolSnapshot     `json:"pools"`
	Routes    []RouteSnapshot    `json:"routes"`
	Listeners []ListenerSnapshot `json:"listeners"`
}

// DaemonSnapshot describes the daemon itself.
type DaemonSnapshot struct {
	Version        string     `json:"version"`
	StartTime      time.Time  `json:"start_time"`
	Config         ConfigInfo `json:"config"`
	Reloads        uint64     `json:"reloads"`
	ReloadFailures uint64     `json:"reload_failures"`
	LastReload     *Reload    `json:"last_reload,omitempty"` // nil before the first
}

// PoolSnapshot is one transform pool's gauges and counters.
type PoolSnapshot struct {
	Name     string `json:"name"`
	Idle     int    `json:"idle"`
	Busy     int    `json:"busy"`
	Starting int    `json:"starting"`
	Retiring int    `json:"retiring"`
	Queue    int    `json:"queue"`

	Spawned  uint64            `json:"spawned"`
	Recycled map[string]uint64 `json:"recycled"` // by reason (recycleReasons)
	Crashed  uint64            `json:"crashed"`

	StartFailures uint64  `json:"start_failures"`
	Acquires      uint64  `json:"acquires"`
	Waits         uint64  `json:"waits"`
	WaitSeconds   float64 `json:"wait_seconds"`
	Saturated     uint64  `json:"saturated"`
	// BackoffSeconds is how long until the next start may be tried after
	// start failures; 0 when starts are not failing.
	BackoffSeconds float64 `json:"backoff_seconds"`
}

// recycleReasons are the keys of PoolSnapshot.Recycled, in output order.
var recycleReasons = []string{"requests", "lifetime", "rss", "idle", "retire", "discarded"}

// Live reports whether the pool has a process, or may start one now.
func (p PoolSnapshot) Live() bool {
	return p.Idle+p.Busy+p.Starting > 0 || p.BackoffSeconds == 0
}

// RouteSnapshot is one route's counters.
type RouteSnapshot struct {
	Name string `json:"name"`
	// Requests by status class: "1xx" … "5xx", and "other" for a status
	// outside 100-599.
	Requests  map[string]uint64 `json:"requests"`
	Count     uint64            `json:"count"`
	Seconds   float64           `json:"seconds"` // total latency
	Latency   []Bucket          `json:"latency"` // cumulative, the last is +Inf
	BytesIn   uint64            `json:"bytes_in"`
	BytesOut  uint64            `json:"bytes_out"`
	Fallbacks uint64            `json:"fallbacks"`
	Retries   uint64            `json:"retries"`
}

// Bucket is one cumulative histogram bucket: Count requests took at most
// LE seconds (LE 0 stands for +Inf).
type Bucket struct {
	LE    float64 `json:"le"`
	Count uint64  `json:"count"`
}

// classNames index RouteSnapshot.Requests like Route.classes.
var classNames = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// ListenerSnapshot is one listener's connection counts.
type ListenerSnapshot struct {
	Addr     string `json:"addr"`
	Open     int64  `json:"open"`
	Accepted uint64 `json:"accepted"`
	Refused  uint64 `json:"refused"`
}

// Snapshot reads every counter, with the pools' as given (by name).
func (r *Registry) Snapshot(pools map[string]pool.Stats, now time.Time) *Snapshot {
	r.mu.Lock()
	s := &Snapshot{Daemon: DaemonSnapshot{
		Version: r.version, StartTime: r.start, Config: r.config,
		Reloads: r.reloads[0], ReloadFailures: r.reloads[1],
	}}
	if !r.last.Time.IsZero() {
		last := r.last
		s.Daemon.LastReload = &last
	}
	routes := make([]*Route, 0, len(r.routes))
	for _, rt := range r.routes {
		routes = append(routes, rt)
	}
	listeners := append([]*Listener(nil), r.listeners...)
	r.mu.Unlock()

	sort.Slice(routes, func(i, j int) bool { return routes[i].name < routes[j].name })
	for _, rt := range routes {
		s.Routes = append(s.Routes, rt.snapshot())
	}
	for _, l := range listeners {
		s.Listeners = append(s.Listeners, ListenerSnapshot{
			Addr: l.addr, Open: l.open.Load(), Accepted: l.accepted.Load(), Refused: l.refused.Load(),
		})
	}
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Pools = append(s.Pools, poolSnapshot(n, pools[n], now))
	}
	return s
}

func (rt *Route) snapshot() RouteSnapshot {
	// The count first: Observe adds it last, so the classes and buckets
	// read afterwards hold at least as many.
	rs := RouteSnapshot{Name: rt.name, Count: rt.count.Load(), Requests: map[string]uint64{}}
	for i, name := range classNames {
		rs.Requests[name] = rt.classes[i].Load()
	}
	var cum uint64
	for i, le := range latencyBuckets {
		cum += rt.buckets[i].Load()
		b := Bucket{Count: cum}
		if i < len(latencyBuckets)-1 {
			b.LE = le.Seconds()
		}
		rs.Latency = append(rs.Latency, b)
	}
	rs.Seconds = time.Duration(rt.sumNanos.Load()).Seconds()
	rs.BytesIn, rs.BytesOut = rt.bytesIn.Load(), rt.bytesOut.Load()
	rs.Fallbacks, rs.Retries = rt.fallbacks.Load(), rt.retries.Load()
	return rs
}

func poolSnapshot(name string, st pool.Stats, now time.Time) PoolSnapshot {
	p := PoolSnapshot{
		Name: name, Idle: st.Idle, Busy: st.Busy, Starting: st.Starting, Retiring: st.Retiring, Queue: st.Queue,
		Spawned: st.Spawned, Crashed: st.Crashed, StartFailures: st.StartFailures,
		Acquires: st.Acquires, Waits: st.Waits, WaitSeconds: st.WaitTime.Seconds(), Saturated: st.Saturated,
		Recycled: map[string]uint64{
			"requests": st.RecycledRequests, "lifetime": st.RecycledLifetime, "rss": st.RecycledRSS,
			"idle": st.RecycledIdle, "retire": st.RecycledRetire, "discarded": st.Discarded,
		},
	}
	if st.BackoffUntil.After(now) {
		p.BackoffSeconds = st.BackoffUntil.Sub(now).Seconds()
	}
	return p
}
