package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Formats of a status answer.
const (
	FormatText       = "text"
	FormatJSON       = "json"
	FormatPrometheus = "prometheus"
)

// ContentType returns the media type of a format. Prometheus expects
// version 0.0.4 of its text format.
func ContentType(format string) string {
	switch format {
	case FormatJSON:
		return "application/json"
	case FormatPrometheus:
		return "text/plain; version=0.0.4; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// ValidFormat reports whether format names one of the formats.
func ValidFormat(format string) bool {
	return format == FormatText || format == FormatJSON || format == FormatPrometheus
}

// Write writes s in format.
func (s *Snapshot) Write(w io.Writer, format string) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	case FormatPrometheus:
		return s.WritePrometheus(w)
	}
	return s.WriteText(w)
}

// WriteText writes a short page for people: one line for the daemon, one
// per pool, route and listener.
func (s *Snapshot) WriteText(w io.Writer) error {
	var b strings.Builder
	d := s.Daemon
	fmt.Fprintf(&b, "fcgi-bridge %s, up %s (since %s)\n", d.Version,
		time.Since(d.StartTime).Truncate(time.Second), d.StartTime.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "config %s %s\n", d.Config.File, d.Config.Hash)
	if r := d.LastReload; r != nil {
		result := "ok"
		if !r.OK {
			result = "refused: " + r.Error
		}
		fmt.Fprintf(&b, "last reload %s: %s\n", r.Time.UTC().Format(time.RFC3339), result)
	} else {
		b.WriteString("last reload: none\n")
	}
	b.WriteString("\npools\n")
	for _, p := range s.Pools {
		fmt.Fprintf(&b, "  %-16s idle %d busy %d starting %d queue %d | spawned %d crashed %d start failures %d saturated %d",
			p.Name, p.Idle, p.Busy, p.Starting, p.Queue, p.Spawned, p.Crashed, p.StartFailures, p.Saturated)
		if p.BackoffSeconds > 0 {
			fmt.Fprintf(&b, " | starts back off %.1fs", p.BackoffSeconds)
		}
		b.WriteByte('\n')
	}
	b.WriteString("\nroutes\n")
	for _, r := range s.Routes {
		avg := 0.0
		if r.Count > 0 {
			avg = r.Seconds / float64(r.Count) * 1000
		}
		fmt.Fprintf(&b, "  %-16s %d requests (2xx %d, 4xx %d, 5xx %d) avg %.1fms | fallbacks %d retries %d\n",
			r.Name, r.Count, r.Requests["2xx"], r.Requests["4xx"], r.Requests["5xx"], avg, r.Fallbacks, r.Retries)
	}
	b.WriteString("\nlisteners\n")
	for _, l := range s.Listeners {
		fmt.Fprintf(&b, "  %-30s open %d accepted %d refused %d\n", l.Addr, l.Open, l.Accepted, l.Refused)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePrometheus writes the Prometheus text exposition format 0.0.4:
// each family once, HELP and TYPE first, then its samples.
func (s *Snapshot) WritePrometheus(w io.Writer) error {
	e := &expo{}
	d := s.Daemon
	e.family("fcgi_bridge_info", "gauge", "Always 1; the version label names the running build.")
	e.sample("fcgi_bridge_info", labels{{"version", d.Version}}, 1)
	e.family("fcgi_bridge_start_time_seconds", "gauge", "When the daemon started, in seconds since the Unix epoch.")
	e.sample("fcgi_bridge_start_time_seconds", nil, unixSeconds(d.StartTime))
	e.family("fcgi_bridge_config_info", "gauge", "Always 1; the labels name the configuration in use and the hash of its effective settings.")
	e.sample("fcgi_bridge_config_info", labels{{"file", d.Config.File}, {"hash", d.Config.Hash}}, 1)
	e.family("fcgi_bridge_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.")
	e.sample("fcgi_bridge_reloads_total", labels{{"result", "ok"}}, float64(d.Reloads))
	e.sample("fcgi_bridge_reloads_total", labels{{"result", "failed"}}, float64(d.ReloadFailures))
	lastTime, lastOK := 0.0, 1.0
	if r := d.LastReload; r != nil {
		lastTime = unixSeconds(r.Time)
		if !r.OK {
			lastOK = 0
		}
	}
	e.family("fcgi_bridge_last_reload_time_seconds", "gauge", "When the last reload was tried, in seconds since the Unix epoch; 0 before the first.")
	e.sample("fcgi_bridge_last_reload_time_seconds", nil, lastTime)
	e.family("fcgi_bridge_last_reload_success", "gauge", "1 when the last reload took (or none was tried), 0 when it was refused.")
	e.sample("fcgi_bridge_last_reload_success", nil, lastOK)

	pools := func(name, typ, help string, value func(PoolSnapshot) float64) {
		e.family(name, typ, help)
		for _, p := range s.Pools {
			e.sample(name, labels{{"pool", p.Name}}, value(p))
		}
	}
	e.family("fcgi_bridge_pool_processes", "gauge", "Transform processes by state.")
	for _, p := range s.Pools {
		for _, st := range []struct {
			state string
			n     int
		}{{"idle", p.Idle}, {"busy", p.Busy}, {"starting", p.Starting}, {"retiring", p.Retiring}} {
			e.sample("fcgi_bridge_pool_processes", labels{{"pool", p.Name}, {"state", st.state}}, float64(st.n))
		}
	}
	pools("fcgi_bridge_pool_queue_length", "gauge", "Requests waiting now for a free process.", func(p PoolSnapshot) float64 { return float64(p.Queue) })
	pools("fcgi_bridge_pool_spawned_total", "counter", "Processes started successfully.", func(p PoolSnapshot) float64 { return float64(p.Spawned) })
	e.family("fcgi_bridge_pool_recycled_total", "counter", "Processes retired by the pool, by reason.")
	for _, p := range s.Pools {
		for _, r := range recycleReasons {
			e.sample("fcgi_bridge_pool_recycled_total", labels{{"pool", p.Name}, {"reason", r}}, float64(p.Recycled[r]))
		}
	}
	pools("fcgi_bridge_pool_crashed_total", "counter", "Processes that exited on their own after a good start.", func(p PoolSnapshot) float64 { return float64(p.Crashed) })
	pools("fcgi_bridge_pool_start_failures_total", "counter", "Process starts that failed (exec, readiness, exit right after start).", func(p PoolSnapshot) float64 { return float64(p.StartFailures) })
	pools("fcgi_bridge_pool_acquires_total", "counter", "Requests for a process.", func(p PoolSnapshot) float64 { return float64(p.Acquires) })
	pools("fcgi_bridge_pool_waits_total", "counter", "Requests for a process that had to queue.", func(p PoolSnapshot) float64 { return float64(p.Waits) })
	pools("fcgi_bridge_pool_wait_seconds_total", "counter", "Time requests spent queueing for a process.", func(p PoolSnapshot) float64 { return p.WaitSeconds })
	pools("fcgi_bridge_pool_saturated_total", "counter", "Requests refused with 503 because the queue was full or the wait timed out.", func(p PoolSnapshot) float64 { return float64(p.Saturated) })
	pools("fcgi_bridge_pool_start_backoff_seconds", "gauge", "Time until the next start may be tried after start failures; 0 when starts succeed.", func(p PoolSnapshot) float64 { return p.BackoffSeconds })

	e.family("fcgi_bridge_route_requests_total", "counter", "Requests answered, by status class (other: a status outside 100-599).")
	for _, r := range s.Routes {
		for _, c := range classNames {
			e.sample("fcgi_bridge_route_requests_total", labels{{"route", r.Name}, {"class", c}}, float64(r.Requests[c]))
		}
	}
	e.family("fcgi_bridge_route_request_duration_seconds", "histogram", "Time from the request's arrival to the end of its response.")
	for _, r := range s.Routes {
		for _, b := range r.Latency {
			le := "+Inf"
			if b.LE != 0 {
				le = formatFloat(b.LE)
			}
			e.sample("fcgi_bridge_route_request_duration_seconds_bucket", labels{{"route", r.Name}, {"le", le}}, float64(b.Count))
		}
		e.sample("fcgi_bridge_route_request_duration_seconds_sum", labels{{"route", r.Name}}, r.Seconds)
		e.sample("fcgi_bridge_route_request_duration_seconds_count", labels{{"route", r.Name}}, float64(r.Count))
	}
	routes := func(name, help string, value func(RouteSnapshot) uint64) {
		e.family(name, "counter", help)
		for _, r := range s.Routes {
			e.sample(name, labels{{"route", r.Name}}, float64(value(r)))
		}
	}
	routes("fcgi_bridge_route_received_bytes_total", "Request body and FILTER data bytes read.", func(r RouteSnapshot) uint64 { return r.BytesIn })
	routes("fcgi_bridge_route_sent_bytes_total", "Response body bytes written.", func(r RouteSnapshot) uint64 { return r.BytesOut })
	routes("fcgi_bridge_route_fallbacks_total", "Answers served untransformed because the transform failed and the route fails open.", func(r RouteSnapshot) uint64 { return r.Fallbacks })
	routes("fcgi_bridge_route_retries_total", "Transform runs repeated on another process after a crash or protocol error.", func(r RouteSnapshot) uint64 { return r.Retries })

	listeners := func(name, typ, help string, value func(ListenerSnapshot) float64) {
		e.family(name, typ, help)
		for _, l := range s.Listeners {
			e.sample(name, labels{{"listener", l.Addr}}, value(l))
		}
	}
	listeners("fcgi_bridge_listener_connections_open", "gauge", "FastCGI connections open now.", func(l ListenerSnapshot) float64 { return float64(l.Open) })
	listeners("fcgi_bridge_listener_connections_accepted_total", "counter", "FastCGI connections accepted.", func(l ListenerSnapshot) float64 { return float64(l.Accepted) })
	listeners("fcgi_bridge_listener_connections_refused_total", "counter", "Connections closed at once because the client address is not in the allow list.", func(l ListenerSnapshot) float64 { return float64(l.Refused) })
	_, err := io.WriteString(w, e.b.String())
	return err
}

// expo builds the exposition text. Every family is declared right before
// its samples, so each appears once, whole, as the format requires.
type expo struct{ b strings.Builder }

type labels [][2]string

func (e *expo) family(name, typ, help string) {
	e.b.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
}

// sample writes one sample of the family declared last (for a histogram,
// one of its _bucket, _sum and _count series).
func (e *expo) sample(name string, ls labels, v float64) {
	e.b.WriteString(name)
	if len(ls) > 0 {
		e.b.WriteByte('{')
		for i, l := range ls {
			if i > 0 {
				e.b.WriteByte(',')
			}
			e.b.WriteString(l[0])
			e.b.WriteString(`="`)
			e.b.WriteString(escapeLabel(l[1]))
			e.b.WriteByte('"')
		}
		e.b.WriteByte('}')
	}
	e.b.WriteByte(' ')
	e.b.WriteString(formatFloat(v))
	e.b.WriteByte('\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// escapeLabel escapes a label value: backslash, double quote and line feed.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
