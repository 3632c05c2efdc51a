package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/listen"
)

// validate checks values, ranges and references, compiles the regular
// expressions, and returns every problem with its line.
func (c *Config) validate(lines *keyLines) Errors {
	var errs Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: c.File, Line: lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	// unknown reports a reference to a table that does not exist (table
	// "transform", name "t"), with the declared name probably meant.
	unknown := func(key, table, name, what string) {
		msg := fmt.Sprintf("unknown %s %q", what, name)
		var names []string
		if table == "transform" {
			names = sortedKeys(c.Transform)
		} else {
			names = sortedKeys(c.Upstream)
		}
		if s := suggest(name, names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else if table == "transform" {
			msg += fmt.Sprintf(" (declare [transform.%s])", name)
		} else {
			msg += fmt.Sprintf(" (declare [upstream.%s], or use \"body\", \"data\" or \"request\")", name)
		}
		errs = append(errs, &Error{File: c.File, Line: lines.line(key), Key: key, Msg: msg, ref: table + "." + name})
	}

	for i, l := range c.Listen {
		k := fmt.Sprintf("listen.%d", i)
		network, _, err := ParseListenAddr(l.Addr)
		if err != nil {
			bad(k+".addr", "%v", err)
		}
		if _, err := ParseMode(l.Mode); err != nil {
			bad(k+".mode", "%v", err)
		}
		if network == "tcp" && (l.Owner != "" || l.Group != "") {
			bad(k+".owner", "owner and group apply to unix sockets only")
		}
		for j, a := range l.Allow {
			if _, err := listen.ParseAllowEntry(a); err != nil {
				bad(fmt.Sprintf("%s.allow", k), "entry %d: %v", j+1, err)
			}
		}
	}

	s := c.Server
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"max_conns", int64(s.MaxConns)}, {"max_reqs_per_conn", int64(s.MaxReqsPerConn)},
		{"max_reqs", int64(s.MaxReqs)}, {"max_params_bytes", int64(s.MaxParamsBytes)},
		{"max_params_pairs", int64(s.MaxParamsPairs)}, {"input_buffer", int64(s.InputBuffer)},
		{"max_name_len", int64(s.MaxNameLen)}, {"max_value_len", int64(s.MaxValueLen)},
		{"max_stderr", int64(s.MaxStderr)},
	} {
		if f.v < 1 {
			bad("server."+f.key, "must be at least 1, got %d", f.v)
		}
	}
	// These cannot be switched off: each bounds what a peer or a transform
	// may hold, and the code below them has no "never" case.
	aboveZero(bad, "server.params_timeout", s.ParamsTimeout)
	aboveZero(bad, "server.input_idle_timeout", s.InputIdleTimeout)
	aboveZero(bad, "server.write_timeout", s.WriteTimeout)
	aboveZero(bad, "server.keepalive_idle_timeout", s.KeepAliveIdleTimeout)
	aboveZero(bad, "server.linger_timeout", s.LingerTimeout)
	aboveZero(bad, "server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxBody < 1 {
		bad("server.max_body", "must be at least 1, got %d", s.MaxBody)
	}
	if s.SpoolDir != "" && !path.IsAbs(s.SpoolDir) {
		bad("server.spool_dir", "must be an absolute directory path, got %q", s.SpoolDir)
	}
	if s.InputBuffer > 0 && s.InputBuffer < 1024 {
		bad("server.input_buffer", "must be at least 1KiB so a record header and a little content fit")
	}

	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}

	for _, n := range sortedKeys(c.Transform) {
		c.validateTransform(c.Transform[n], "transform."+n, bad)
	}
	for _, n := range sortedKeys(c.Upstream) {
		k := "upstream." + n
		if n == SourceData || n == SourceBody || n == SourceRequest {
			bad(k, "%q is a built-in source name; choose another name", n)
		}
		validateUpstream(c.Upstream[n], k, bad)
	}
	if len(c.Route) == 0 {
		errs = append(errs, &Error{File: c.File, Key: "route", Msg: "no [[route]]: the bridge would answer nothing; add at least one"})
	}
	names := map[string]bool{}
	for i, r := range c.Route {
		k := fmt.Sprintf("route.%d", i)
		if names[r.Name] {
			bad(k+".name", "route name %q is used twice; names label access-log lines and must be unique", r.Name)
		}
		names[r.Name] = true
		c.validateRoute(r, k, bad, unknown)
	}
	return errs
}

func (c *Config) validateTransform(t *Transform, k string, bad func(string, string, ...any)) {
	if len(t.Command) == 0 || t.Command[0] == "" {
		bad(k+".command", "is required: the program and its arguments, e.g. [\"node\", \"render.js\"]")
	}
	for name := range t.Env {
		if name == "" || strings.ContainsAny(name, "= \x00") {
			bad(k+".env", "invalid variable name %q", name)
		}
	}
	for _, name := range t.PassEnv {
		if name == "" || strings.ContainsAny(name, "= \x00") {
			bad(k+".pass_env", "invalid variable name %q", name)
		}
	}
	switch t.Kind {
	case KindPooled:
		if t.Max < 1 {
			bad(k+".max", "must be at least 1, got %d", t.Max)
		}
		aboveZero(bad, k+".queue_timeout", t.QueueTimeout)
		aboveZero(bad, k+".start_timeout", t.StartTimeout)
		aboveZero(bad, k+".kill_grace", t.KillGrace)
		if t.Min < 0 || t.Min > t.Max {
			bad(k+".min", "must be between 0 and max (%d), got %d", t.Max, t.Min)
		}
		if t.Queue < 0 {
			bad(k+".queue", "must not be negative, got %d", t.Queue)
		}
		if t.MaxRequests < 0 {
			bad(k+".max_requests", "must not be negative (0 = never recycle), got %d", t.MaxRequests)
		}
		if len(t.Args) > 0 || len(t.Vars) > 0 {
			bad(k+".args", "args and vars apply to kind = \"oneshot\"; a pooled process gets the request in its input")
		}
	case KindOneShot:
		// Pool keys are ignored for one-shot transforms rather than refused,
		// so switching kind does not force rewriting the table.
		if len(t.Command) > 0 && len(Placeholders(t.Command[0])) > 0 {
			bad(k+".command", "the program name cannot be a placeholder; only arguments are filled from the request")
		}
		used := map[string]bool{}
		for _, a := range append(append([]string(nil), t.Command...), t.Args...) {
			for _, m := range placeholderRE.FindAllStringSubmatch(a, -1) {
				used[m[1]] = true
				if _, ok := t.Vars[m[1]]; !ok {
					bad(k+".args", "placeholder {%s} has no entry in vars (its validating regexp)", m[1])
				}
			}
		}
		for _, name := range sortedKeys(t.Vars) {
			re := t.Vars[name]
			if _, err := regexp.Compile("^(?:" + re + ")$"); err != nil {
				bad(k+".vars."+name, "invalid regexp: %v", err)
			}
			if re == "" || re == ".*" || re == ".+" {
				bad(k+".vars."+name, "the regexp must restrict the value (e.g. \"[0-9]{1,4}x[0-9]{1,4}\"); it reaches a command line")
			}
			if !used[name] {
				bad(k+".vars."+name, "is not used by any {%s} in args", name)
			}
		}
		if t.ContentType != "" {
			if _, _, err := mime.ParseMediaType(t.ContentType); err != nil {
				bad(k+".content_type", "invalid media type %q: %v", t.ContentType, err)
			}
		}
	default:
		bad(k+".kind", "must be \"pooled\" or \"oneshot\", got %q", t.Kind)
	}
}

var placeholderRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Placeholders returns the names of the {name} placeholders in s.
func Placeholders(s string) []string {
	var out []string
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func validateUpstream(u *Upstream, k string, bad func(string, string, ...any)) {
	switch u.Kind {
	case UpstreamHTTP:
		p, err := url.Parse(u.URL)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(k+".url", "must be an absolute http:// or https:// URL, got %q", u.URL)
		}
	case UpstreamFastCGI:
		if _, _, err := ParseAddr(u.Address); err != nil {
			bad(k+".address", "%v", err)
		}
	case UpstreamFile:
		if !path.IsAbs(u.Root) {
			bad(k+".root", "must be an absolute directory path, got %q", u.Root)
		}
		if strings.ContainsRune(u.Index, '/') {
			bad(k+".index", "must be a file name, got %q", u.Index)
		}
	case UpstreamBody, UpstreamData:
	default:
		bad(k+".kind", "must be http, fastcgi, file, body or data, got %q", u.Kind)
	}
	if u.ContentType != "" {
		if _, _, err := mime.ParseMediaType(u.ContentType); err != nil {
			bad(k+".content_type", "invalid media type %q", u.ContentType)
		}
	}
	if u.Kind == UpstreamHTTP || u.Kind == UpstreamFastCGI {
		// With keepalive off nothing is kept, so these do not matter.
		if u.KeepAlive && u.MaxIdleConns < 1 {
			bad(k+".max_idle_conns", "must be at least 1 (keepalive = false keeps no connection), got %d", u.MaxIdleConns)
		}
		// http keeps an idle connection until the upstream closes it when
		// this is 0; the FastCGI client has no such mode.
		if u.Kind == UpstreamFastCGI && u.KeepAlive {
			aboveZero(bad, k+".idle_conn_timeout", u.IdleConnTimeout)
		}
		if u.IdleConnTimeout < 0 {
			bad(k+".idle_conn_timeout", "must not be negative")
		}
	}
	if u.MaxIdleConns < 0 {
		bad(k+".max_idle_conns", "must not be negative")
	}
	if u.ConnectTimeout == 0 {
		bad(k+".connect_timeout", "must be above zero")
	}
}

var methodRE = regexp.MustCompile(`^[A-Z][A-Z0-9_-]*$`)
var paramRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (c *Config) validateRoute(r *Route, k string, bad func(string, string, ...any), unknown func(key, table, name, what string)) {
	if r.Kind != "" {
		validateBuiltinRoute(r, k, bad)
		return
	}
	if r.Format != "" {
		bad(k+".format", "only a route of kind = \"status\" has a format")
	}
	switch r.Role {
	case RoleResponder, RoleAuthorizer, RoleFilter, RoleAny:
	default:
		bad(k+".role", "must be responder, authorizer, filter or any, got %q", r.Role)
	}
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		bad(k+".path", "a path prefix starts with /, got %q", r.Path)
	}
	if r.Glob != "" {
		if _, err := path.Match(r.Glob, "/"); err != nil || !strings.HasPrefix(r.Glob, "/") {
			bad(k+".glob", "invalid glob %q (it starts with / and uses * ? [...])", r.Glob)
		}
	}
	for _, m := range r.Method {
		if !methodRE.MatchString(m) {
			bad(k+".method", "invalid method %q (upper case, e.g. \"GET\")", m)
		}
	}
	for _, group := range []struct {
		key   string
		conds []*Condition
	}{{"header", r.Header}, {"query", r.Query}} {
		for j, cond := range group.conds {
			ck := fmt.Sprintf("%s.%s.%d", k, group.key, j)
			if cond == nil || cond.Name == "" {
				bad(ck+".name", "is required")
				continue
			}
			if cond.Match != "" {
				re, err := regexp.Compile(cond.Match)
				if err != nil {
					bad(ck+".match", "invalid regexp: %v", err)
					continue
				}
				cond.re = re
			}
		}
	}
	for _, st := range r.SourceStatus {
		if st < 100 || st > 599 {
			bad(k+".source_status", "%d is not an HTTP status", st)
		}
	}
	for _, ct := range r.SourceContentType {
		if !validMediaRange(ct) {
			bad(k+".source_content_type", "%q is not a media type such as \"application/json\" or \"text/*\"", ct)
		}
	}
	if r.ContentType != "" {
		if _, _, err := mime.ParseMediaType(r.ContentType); err != nil {
			bad(k+".content_type", "invalid media type %q", r.ContentType)
		}
	}

	switch r.Source {
	case SourceData:
		if r.Role != RoleFilter && r.Role != RoleAny {
			bad(k+".source", "source \"data\" exists only for role = \"filter\"")
		}
	case SourceRequest:
		if r.Role != RoleAuthorizer {
			bad(k+".source", "source \"request\" exists only for role = \"authorizer\"")
		}
	case SourceBody:
	default:
		u, ok := c.Upstream[r.Source]
		if !ok {
			unknown(k+".source", "upstream", r.Source, "upstream")
		} else if u.Kind == UpstreamData && r.Role != RoleFilter && r.Role != RoleAny {
			bad(k+".source", "upstream %q is FILTER data, which exists only for role = \"filter\"", r.Source)
		}
	}
	if r.Role == RoleAuthorizer {
		if r.Source != SourceRequest {
			bad(k+".source", "an authorizer route decides from the request; its source is \"request\"")
		}
		if len(r.Transform) == 0 {
			bad(k+".transform", "an authorizer route needs a transform whose status decides")
		}
		if r.Fail == FailOpen {
			bad(k+".fail", "an authorizer must fail closed: failing open would let every request through")
		}
	}
	for _, name := range r.Transform {
		if _, ok := c.Transform[name]; !ok {
			unknown(k+".transform", "transform", name, "transform")
		}
	}
	switch r.Fail {
	case FailClosed, FailOpen:
	default:
		bad(k+".fail", "must be \"closed\" or \"open\", got %q", r.Fail)
	}
	if (r.Fail == FailOpen || r.Retry) && r.KeepInput == 0 {
		bad(k+".keep_input", "fail = \"open\" and retry need input kept in memory; set keep_input above 0")
	}
	for _, p := range r.PassParams {
		if !paramRE.MatchString(p) {
			bad(k+".pass_params", "invalid param name %q", p)
		}
	}
}

func validMediaRange(s string) bool {
	t, sub, ok := strings.Cut(s, "/")
	return ok && t != "" && sub != "" && !strings.ContainsAny(s, " ;,") && (t != "*" || sub == "*")
}

// ParseListenAddr checks a [[listen]] addr with the same parser that opens
// it (listen.ParseSpec), so a file takes the forms --listen takes:
// "tcp:HOST:PORT", "unix:PATH", "systemd:" (every socket systemd passed) and
// "systemd:NAME" (the sockets of that FileDescriptorName).
//
// The kind is required in a file (a bare "127.0.0.1:9000" or "/path" is
// refused), so every address says what it is.
func ParseListenAddr(s string) (network, address string, err error) {
	kind, _, _ := strings.Cut(s, ":")
	if kind != "tcp" && kind != "unix" && kind != "systemd" || !strings.Contains(s, ":") {
		return "", "", fmt.Errorf("address %q: write tcp:HOST:PORT, unix:PATH, systemd: or systemd:NAME", s)
	}
	spec, err := listen.ParseSpec(s)
	if err != nil {
		return "", "", err
	}
	return spec.Network, spec.Address, nil
}

// ParseAddr splits an upstream address: "tcp:HOST:PORT" gives
// ("tcp", "HOST:PORT"), "unix:PATH" gives ("unix", PATH).
func ParseAddr(s string) (network, address string, err error) {
	network, address, ok := strings.Cut(s, ":")
	switch {
	case !ok:
	case network == "tcp":
		_, port, err := net.SplitHostPort(address)
		if err != nil {
			return "", "", fmt.Errorf("address %q: %v (write tcp:HOST:PORT, e.g. tcp:127.0.0.1:9000)", s, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return "", "", fmt.Errorf("address %q: bad port %q", s, port)
		}
		return network, address, nil
	case network == "unix":
		if address == "" {
			return "", "", fmt.Errorf("address %q: empty socket path", s)
		}
		return network, address, nil
	}
	return "", "", fmt.Errorf("address %q: write tcp:HOST:PORT or unix:PATH", s)
}

// ParseMode parses an octal permission string such as "0660".
func ParseMode(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("invalid mode %q (octal permissions, e.g. \"0660\")", s)
	}
	return uint32(v), nil
}

// aboveZero reports key unless d is positive: for durations that have no
// "off", where 0 would otherwise quietly become some other value.
func aboveZero(bad func(string, string, ...any), key string, d Duration) {
	if d <= 0 {
		bad(key, "must be above zero (it cannot be switched off), got %q", d.Std().String())
	}
}

// CheckPrograms looks on this machine for what the transforms will run:
// each program (in PATH when its name is relative), and each argument that
// names a file the program would open (a script), so that `-t` finds a
// missing renderer before a deployment does. Validation cannot: it reads
// the file only.
//
// An argument is taken for a file when it is an absolute path without
// blanks, starts with ./ or ../, or ends in a script's extension (.js,
// .py, ...); a relative one is looked up from the transform's dir, else
// from the bridge's working directory, as the program would. Arguments
// with {placeholders} are filled per request and are not checked.
func (c *Config) CheckPrograms() Errors {
	var errs Errors
	for _, name := range sortedKeys(c.Transform) {
		t := c.Transform[name]
		key := "transform." + name + ".command"
		bad := func(format string, args ...any) {
			errs = append(errs, c.errorAt(key, fmt.Sprintf(format, args...)))
		}
		argv, err := ResolveCommand(t.Command)
		if err != nil || len(argv) == 0 {
			if err != nil {
				bad("%v", err)
			}
			continue
		}
		if _, err := exec.LookPath(argv[0]); err != nil {
			bad("%s", programReason(argv[0], err))
			continue
		}
		if t.Command[0] == SelfCommand {
			continue // the binary's own subcommands take names, not files
		}
		args := argv[1:]
		if t.Kind == KindOneShot {
			args = append(append([]string(nil), args...), t.Args...)
		}
		for _, a := range args {
			p, ok := fileArgument(a)
			if !ok {
				continue
			}
			if !filepath.IsAbs(p) && t.Dir != "" {
				p = filepath.Join(t.Dir, p)
			}
			if _, err := os.Stat(p); err != nil {
				bad("%q: %s (%s would fail to open it)", a, statReason(err), filepath.Base(argv[0]))
			}
		}
	}
	return errs
}

var scriptExt = map[string]bool{
	".js": true, ".mjs": true, ".cjs": true, ".ts": true, ".py": true, ".rb": true, ".pl": true,
	".php": true, ".sh": true, ".lua": true, ".jar": true, ".tcl": true, ".r": true,
}

// fileArgument reports whether a command argument names a file, and which.
func fileArgument(a string) (string, bool) {
	if a == "" || strings.ContainsAny(a, "{} \t\n") || strings.HasPrefix(a, "-") {
		return "", false
	}
	switch {
	case strings.HasPrefix(a, "/"), strings.HasPrefix(a, "./"), strings.HasPrefix(a, "../"):
		return a, true
	case !strings.Contains(a, ":") && !strings.Contains(a, "=") && scriptExt[strings.ToLower(filepath.Ext(a))]:
		return a, true
	}
	return "", false
}

// programReason says why a program cannot be run, and what to do.
func programReason(prog string, err error) string {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Sprintf("program %q is not in the bridge's PATH (%s); install it or write its absolute path", prog, os.Getenv("PATH"))
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("program %q: permission denied: it is not executable, or a directory on the way is closed to the bridge's user", prog)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("program %q: no such file", prog)
	}
	return fmt.Sprintf("program %q: %v", prog, err)
}

func statReason(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied: a directory on the way is closed to the bridge's user"
	}
	return err.Error()
}

// Warnings returns the choices that are valid but risky or probably
// mistaken: a socket every local user may write to, a TCP port open to any
// address, an upstream serving the whole file system, timeouts a drain
// would cut short, routes that can never match, tables nothing uses. The
// bridge runs with them; `-t` and the start-up log say them.
func (c *Config) Warnings() Errors {
	var ws Errors
	warn := func(key, format string, args ...any) {
		ws = append(ws, c.errorAt(key, fmt.Sprintf(format, args...)))
	}
	for i, l := range c.Listen {
		k := fmt.Sprintf("listen.%d", i)
		network, address, err := ParseListenAddr(l.Addr)
		if err != nil {
			continue
		}
		if mode, err := ParseMode(l.Mode); err == nil && network == "unix" && mode&0o002 != 0 {
			warn(k+".mode", "%q lets every local user send FastCGI requests to the bridge; use \"0660\" and give the socket the web server's group (group = \"www-data\")", l.Mode)
		}
		if network == "tcp" && !loopbackAddr(address) {
			for _, a := range l.Allow {
				if p, err := listen.ParseAllowEntry(a); err == nil && p.Bits() == 0 {
					warn(k+".allow", "%q accepts FastCGI from any address on a port that is not loopback: anyone who reaches it can send requests the web server would refuse; list the web servers instead, unless a firewall does", a)
					break
				}
			}
		}
	}
	drain := c.Server.ShutdownTimeout
	used := map[string]bool{}
	for _, n := range sortedKeys(c.Transform) {
		t := c.Transform[n]
		if t.Timeout > drain && drain > 0 {
			warn("transform."+n+".timeout", "%s is longer than server.shutdown_timeout (%s): a stop (TERM) cuts such requests short", t.Timeout.Std(), drain.Std())
		}
	}
	for _, n := range sortedKeys(c.Upstream) {
		if u := c.Upstream[n]; u.Kind == UpstreamFile && path.Clean(u.Root) == "/" {
			warn("upstream."+n+".root", "\"/\" serves the whole file system (what the bridge's user may read); point it at the site's directory")
		}
	}
	// A route without request conditions takes every request of its roles:
	// the routes after it with no other role are never used.
	var catchAll = map[string]string{} // role -> route name
	for i, r := range c.Route {
		k := fmt.Sprintf("route.%d", i)
		roles := routeRoles(r.Role)
		if by := shadowedBy(roles, catchAll); by != "" {
			warn(k, "is never used: route %q before it takes every request of its role", by)
		}
		if r.Path == "" && r.Glob == "" && len(r.Method) == 0 && len(r.Header) == 0 && len(r.Query) == 0 {
			for _, role := range roles {
				if _, ok := catchAll[role]; !ok {
					catchAll[role] = r.Name
				}
			}
		}
		if len(r.PassParams) > 0 && !r.SendRequestHeaders {
			warn(k+".pass_params", "has no effect with send_request_headers = false")
		}
		if r.Timeout > drain && drain > 0 {
			warn(k+".timeout", "%s is longer than server.shutdown_timeout (%s): a stop (TERM) cuts such requests short", r.Timeout.Std(), drain.Std())
		}
		for _, t := range r.Transform {
			used["transform."+t] = true
		}
		used["upstream."+r.Source] = true
	}
	for _, n := range sortedKeys(c.Transform) {
		if !used["transform."+n] {
			warn("transform."+n, "no route uses it, so it is never started")
		}
	}
	for _, n := range sortedKeys(c.Upstream) {
		if !used["upstream."+n] {
			warn("upstream."+n, "no route uses it as its source")
		}
	}
	nameRoutes(ws, c.Route, c.namedRoutes())
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Line < ws[j].Line })
	return ws
}

// namedRoutes says which routes have a name of their own, as opposed to
// the "routeN" given to them.
func (c *Config) namedRoutes() []bool {
	named := make([]bool, len(c.Route))
	for i, r := range c.Route {
		named[i] = r.Name != fmt.Sprintf("route%d", i+1)
	}
	return named
}

func routeRoles(role string) []string {
	if role == RoleAny {
		return []string{RoleResponder, RoleFilter}
	}
	return []string{role}
}

func shadowedBy(roles []string, catchAll map[string]string) string {
	by := ""
	for _, role := range roles {
		n, ok := catchAll[role]
		if !ok {
			return ""
		}
		by = n
	}
	return by
}

func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// errorAt is a message about key found after parsing, placed in the file
// and on the line the key was written, an included file's included.
func (c *Config) errorAt(key, msg string) *Error {
	e := &Error{File: c.File, Line: c.lines.line(key), Key: key, Msg: msg}
	if c.from != nil {
		c.from.remap(e)
	}
	return e
}
