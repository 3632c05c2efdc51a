package conf

// Route kinds answered by the bridge itself, never by a transform, so that
// they answer while every pool is saturated.
const (
	// KindStatus answers with the daemon's counters: a short text page,
	// JSON or the Prometheus text format.
	KindStatus = "status"
	// KindPing answers "pong", for load balancer health checks.
	KindPing = "ping"
	// KindReady answers 200 while some pool can run a transform, 503
	// otherwise.
	KindReady = "ready"
)

// Status formats.
const (
	FormatText       = "text"
	FormatJSON       = "json"
	FormatPrometheus = "prometheus"
)

// validateBuiltinRoute checks a route the bridge answers itself: it is
// matched like any route (path, glob, method, header, query) but has
// nothing to fetch or transform.
func validateBuiltinRoute(r *Route, k string, bad func(string, string, ...any)) {
	switch r.Kind {
	case KindStatus, KindPing, KindReady:
	default:
		bad(k+".kind", "must be %q, %q or %q (or absent for a route through transforms), got %q", KindStatus, KindPing, KindReady, r.Kind)
		return
	}
	if r.Role != RoleResponder {
		bad(k+".role", "a %s route answers web servers, which send role = \"responder\"", r.Kind)
	}
	if r.Path == "" && r.Glob == "" {
		bad(k+".path", "a %s route needs a path (or glob), or it would answer every request", r.Kind)
	}
	if len(r.Transform) > 0 {
		bad(k+".transform", "a %s route is answered by the bridge itself; it has no transform", r.Kind)
	}
	if r.Source != "" && r.Source != SourceBody {
		bad(k+".source", "a %s route is answered by the bridge itself; it has no source", r.Kind)
	}
	if r.Format != "" && r.Kind != KindStatus {
		bad(k+".format", "only a route of kind = \"status\" has a format")
	}
	switch r.Format {
	case "", FormatText, FormatJSON, FormatPrometheus:
	default:
		bad(k+".format", "must be %q, %q or %q, got %q", FormatText, FormatJSON, FormatPrometheus, r.Format)
	}
}
