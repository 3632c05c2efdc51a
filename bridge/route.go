package bridge

import (
	"fmt"
	"mime"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

// route is a conf.Route made ready to match and run.
type route struct {
	cfg     *conf.Route
	role    fcgi.Role // 0: any
	methods map[string]bool
	source  source.Source
	chain   filter.Transform // nil: content passes through untransformed
	policy  filter.Policy
	// oneShot: the chain has a one-shot transform, which fills its argv
	// from the query even when no request headers are sent.
	oneShot bool
	// requestInput: the content is the request's own body or FILTER data,
	// so failing to read it is the client's fault (400), not a gateway's.
	requestInput bool
	// bufferBody: the request body is read to its end (spooled) before the
	// source is asked, because a web server that is half duplex towards
	// FastCGI (nginx) stops sending it once the response has begun.
	bufferBody bool
	// bodySource: the content is the request body itself (source "body"
	// or an upstream of kind "body"), so a spooled body is the content.
	bodySource bool
	// stats counts the route's requests; kept across reloads by name.
	stats *metrics.Route
	// slow is the slow-request threshold: the route's, else log.slow.
	slow time.Duration
	// debug: developer mode, see debugpage.go.
	debug bool
}

func newRoute(rc *conf.Route, src source.Source, transforms map[string]filter.Transform) (*route, error) {
	rt := &route{cfg: rc, source: src, debug: rc.DebugOn()}
	switch rc.Role {
	case conf.RoleResponder:
		rt.role = fcgi.RoleResponder
	case conf.RoleAuthorizer:
		rt.role = fcgi.RoleAuthorizer
	case conf.RoleFilter:
		rt.role = fcgi.RoleFilter
	case conf.RoleAny:
	default:
		return nil, fmt.Errorf("route %q: unknown role %q", rc.Name, rc.Role)
	}
	if src == nil {
		return nil, fmt.Errorf("route %q: no source %q", rc.Name, rc.Source)
	}
	if len(rc.Method) > 0 {
		rt.methods = map[string]bool{}
		for _, m := range rc.Method {
			rt.methods[m] = true
		}
	}
	var chain filter.Chain
	for _, name := range rc.Transform {
		t, ok := transforms[name]
		if !ok {
			return nil, fmt.Errorf("route %q: transform %q was not built", rc.Name, name)
		}
		chain = append(chain, t)
	}
	switch len(chain) {
	case 0:
	case 1:
		rt.chain = markTransform{chain[0]}
	default:
		rt.chain = markTransform{chain}
	}
	rt.policy = filter.Policy{FailOpen: rc.Fail == conf.FailOpen, Retry: rc.Retry, Timeout: rc.Timeout.Std()}
	if rt.policy.FailOpen || rt.policy.Retry {
		// Keeping input costs memory; only routes that can use it keep any.
		rt.policy.KeepInput = int64(rc.KeepInput)
	}
	return rt, nil
}

// requestView is what routing reads from a request, computed once.
type requestView struct {
	role   fcgi.Role
	method string
	path   string
	query  url.Values
	params map[string]string
}

func newRequestView(r *fcgi.Request, t *source.Target) *requestView {
	v := &requestView{role: r.Role, params: r.Params, method: t.Method}
	// Match on the normalised path, as the web server's own locations do:
	// "/static/../admin" must not pass for a "/static" route.
	v.path = cleanPath(t.Path)
	if t.Query != "" {
		v.query, _ = url.ParseQuery(t.Query)
	}
	return v
}

// cleanPath resolves dot segments and doubled slashes, keeping a trailing
// slash (it distinguishes a directory). A path that is clean already comes
// back as it is, without allocating.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// matches reports whether the route's request conditions hold.
func (rt *route) matches(v *requestView) bool {
	c := rt.cfg
	if rt.role != 0 && rt.role != v.role {
		return false
	}
	if rt.role == 0 && v.role == fcgi.RoleAuthorizer {
		// An authorizer decides access; it is never picked by accident.
		return false
	}
	if c.Path != "" && !pathHasPrefix(v.path, c.Path) {
		return false
	}
	if c.Glob != "" {
		if ok, _ := path.Match(c.Glob, v.path); !ok {
			return false
		}
	}
	if rt.methods != nil && !rt.methods[v.method] {
		return false
	}
	for _, cond := range c.Header {
		var vals []string
		if val, ok := v.params[source.ParamName(cond.Name)]; ok {
			vals = []string{val}
		} else if strings.EqualFold(cond.Name, "Content-Type") {
			if val, ok := v.params["CONTENT_TYPE"]; ok {
				vals = []string{val}
			}
		}
		if !cond.Holds(vals) {
			return false
		}
	}
	for _, cond := range c.Query {
		if !cond.Holds(v.query[cond.Name]) {
			return false
		}
	}
	return true
}

// pathHasPrefix is a prefix match; a prefix ending without "/" also
// matches at a segment boundary only ("/api" matches "/api" and "/api/x",
// not "/apix"), which is what people mean by it.
func pathHasPrefix(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return strings.HasSuffix(prefix, "/") || len(p) == len(prefix) || p[len(prefix)] == '/'
}

// transforms reports whether the route's chain applies to what the source
// answered: the route has a chain, the message may carry a body, and the
// source conditions (status, Content-Type) hold.
func (rt *route) transforms(m *filter.Message) bool {
	if rt.chain == nil || !filter.BodyAllowed(m.Status) {
		return false
	}
	if ce := m.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// A compressed body would reach the transform as bytes it cannot
		// read; better served as it is than garbled.
		return false
	}
	c := rt.cfg
	if len(c.SourceStatus) > 0 {
		ok := false
		for _, s := range c.SourceStatus {
			if s == m.Status {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.SourceContentType) > 0 {
		mt, _, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if err != nil {
			return false
		}
		ok := false
		for _, want := range c.SourceContentType {
			if mediaMatch(want, mt) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// mediaMatch matches a media range ("text/*", "*/*", "application/json")
// against a media type without parameters.
func mediaMatch(pattern, mt string) bool {
	pattern = strings.ToLower(pattern)
	if pattern == "*/*" || pattern == mt {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		return strings.HasPrefix(mt, prefix+"/")
	}
	return false
}

// requestInfo is the request description sent to the transforms: t, and
// the params the route passes on by name.
func (rt *route) requestInfo(params map[string]string, t *source.Target) *filter.RequestInfo {
	if !rt.cfg.SendRequestHeaders {
		if rt.oneShot {
			// Only the query, which one-shot placeholders are filled from.
			return &filter.RequestInfo{Query: t.Query}
		}
		return nil
	}
	info := &filter.RequestInfo{
		URL:    t.URL(),
		Method: t.Method,
		Path:   t.Path,
		Query:  t.Query,
	}
	for _, name := range rt.cfg.PassParams {
		if v, ok := params[name]; ok {
			info.Params = append(info.Params, filter.Field{Name: name, Value: v})
		}
	}
	return info
}
