// Package conf owns the bridge's configuration: the TOML schema, the default
// of every key (defaults.go, in one place, each with its reason), validation
// that names file:line and key, the embedded default configuration, the
// quick mode built from command-line flags, and printing the effective
// configuration back as TOML.
//
// Data enters as TOML bytes (Load, Parse) or flags (Quick) and leaves as an
// immutable *Config that the bridge and the command read. Nothing here runs
// at request time; regular expressions are compiled once during validation
// and handed out ready to use.
package conf

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// Config is the whole configuration. Treat it as read-only once returned.
type Config struct {
	// Include names further files (glob patterns, relative to this file's
	// directory) holding [transform.*], [upstream.*] and [[route]] tables.
	// Loading merges them in; -T prints the merged result without it.
	Include   []string              `toml:"include,omitempty"`
	Listen    []*Listener           `toml:"listen"`
	Server    Server                `toml:"server"`
	Log       Log                   `toml:"log"`
	Transform map[string]*Transform `toml:"transform"`
	Upstream  map[string]*Upstream  `toml:"upstream"`
	Route     []*Route              `toml:"route"`

	// File is the name the configuration was read from ("(default)" for the
	// embedded one, "(command line)" for quick mode); used in messages.
	File string `toml:"-"`

	// lines locates keys in the file for messages found after parsing
	// (CheckPrograms, Warnings); nil when there is no file.
	lines *keyLines
	// from records which file each included table came from; nil without
	// includes.
	from *origins
}

// Listener is one socket the FastCGI server accepts on.
type Listener struct {
	// Addr is "tcp:HOST:PORT", "unix:PATH", or "systemd:" / "systemd:NAME"
	// for sockets passed by systemd socket activation.
	Addr string `toml:"addr"`
	// Mode, Owner, Group apply to unix sockets: octal permission string,
	// user and group names or numeric ids.
	Mode  string `toml:"mode"`
	Owner string `toml:"owner"`
	Group string `toml:"group"`
	// Allow lists the client addresses (IPs or CIDRs) a TCP listener accepts.
	Allow []string `toml:"allow"`
}

// Server holds the FastCGI server's limits and the daemon-wide timings.
type Server struct {
	MaxConns             int      `toml:"max_conns"`
	MaxReqsPerConn       int      `toml:"max_reqs_per_conn"`
	MaxReqs              int      `toml:"max_reqs"`
	MaxParamsBytes       Size     `toml:"max_params_bytes"`
	MaxParamsPairs       int      `toml:"max_params_pairs"`
	MaxNameLen           Size     `toml:"max_name_len"`
	MaxValueLen          Size     `toml:"max_value_len"`
	ParamsTimeout        Duration `toml:"params_timeout"`
	InputIdleTimeout     Duration `toml:"input_idle_timeout"`
	WriteTimeout         Duration `toml:"write_timeout"`
	KeepAliveIdleTimeout Duration `toml:"keepalive_idle_timeout"`
	LingerTimeout        Duration `toml:"linger_timeout"`
	InputBuffer          Size     `toml:"input_buffer"`
	MaxStderr            Size     `toml:"max_stderr"`
	ShutdownTimeout      Duration `toml:"shutdown_timeout"`
	RetryAfter           Duration `toml:"retry_after"`

	// Request body buffering (upstreams with request_buffering = true):
	// SpoolDir holds the unlinked temp files ("" = $TMPDIR, else /tmp),
	// SpoolMemory is how much of a body stays in memory before one is
	// used, MaxBody the largest body accepted (413 beyond).
	SpoolDir    string `toml:"spool_dir"`
	SpoolMemory Size   `toml:"spool_memory"`
	MaxBody     Size   `toml:"max_body"`

	// Debug turns developer mode on for every route that does not set its
	// own debug (see debug.go).
	Debug bool `toml:"debug"`
}

// ParseLevel reads a log level: debug, info, warn (or warning) or error, in
// any case. The configuration check and the daemon both use it, so a level
// the check passes always starts the daemon.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

// Log configures log/slog output.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text, json
	Access bool   `toml:"access"` // one line per request
	File   string `toml:"file"`   // "" = stderr
	// Slow logs one line for each request that took at least this long,
	// saying where the time went; 0 = off. A route's slow overrides it.
	Slow Duration `toml:"slow"`
}

// Transform kinds.
const (
	KindPooled  = "pooled"
	KindOneShot = "oneshot"
)

// SelfCommand as the first word of a transform command stands for the
// fcgi-bridge executable itself (os.Executable), so the embedded default can
// use the binary's built-in sample transforms on a machine with nothing else
// installed.
const SelfCommand = "@self"

// Transform is one [transform.NAME] section.
type Transform struct {
	Name    string            `toml:"-"`
	Kind    string            `toml:"kind"`
	Command []string          `toml:"command"`
	Env     map[string]string `toml:"env"`
	PassEnv []string          `toml:"pass_env"`
	Dir     string            `toml:"dir"`
	User    string            `toml:"user"`
	Group   string            `toml:"group"`
	Timeout Duration          `toml:"timeout"`

	// Pool settings (kind = "pooled").
	Min          int      `toml:"min"`
	Max          int      `toml:"max"`
	Queue        int      `toml:"queue"`
	QueueTimeout Duration `toml:"queue_timeout"`
	StartTimeout Duration `toml:"start_timeout"`
	MaxRequests  int      `toml:"max_requests"`
	MaxLifetime  Duration `toml:"max_lifetime"`
	MaxRSS       Size     `toml:"max_rss"`
	IdleTimeout  Duration `toml:"idle_timeout"`
	KillGrace    Duration `toml:"kill_grace"`

	// One-shot settings (kind = "oneshot").
	Args        []string          `toml:"args"`
	Vars        map[string]string `toml:"vars"`
	ContentType string            `toml:"content_type"`
}

// Upstream kinds. "body" and "data" are also built-in source names.
const (
	UpstreamHTTP    = "http"
	UpstreamFastCGI = "fastcgi"
	UpstreamFile    = "file"
	UpstreamBody    = "body"
	UpstreamData    = "data"
)

// Built-in sources a route may name without declaring an upstream.
const (
	SourceData    = "data"    // FILTER role: the FCGI_DATA stream
	SourceBody    = "body"    // the request body (STDIN)
	SourceRequest = "request" // AUTHORIZER: the request description, no body
)

// Upstream is one [upstream.NAME] section: where a route's content comes from.
type Upstream struct {
	Name string `toml:"-"`
	Kind string `toml:"kind"`
	// http: base URL; the request's path and query are appended to its path.
	URL string `toml:"url"`
	// fastcgi: "tcp:HOST:PORT" or "unix:PATH".
	Address string `toml:"address"`
	// fastcgi: params set (or overridden) on every request, e.g. SCRIPT_FILENAME.
	Params map[string]string `toml:"params"`
	// file: the directory served; index: file tried for a directory path.
	Root  string `toml:"root"`
	Index string `toml:"index"`
	// body: Content-Type used when the request has none; data: when the
	// FILTER request names none (no FCGI_DATA_CONTENT_TYPE param and no
	// known extension of the filtered file).
	ContentType string `toml:"content_type"`

	ConnectTimeout  Duration `toml:"connect_timeout"`
	ResponseTimeout Duration `toml:"response_timeout"`
	KeepAlive       bool     `toml:"keepalive"`
	MaxIdleConns    int      `toml:"max_idle_conns"`
	IdleConnTimeout Duration `toml:"idle_conn_timeout"`

	// RequestBuffering (body, http, fastcgi): read the whole request body
	// before the content is fetched or transformed; false streams it.
	RequestBuffering bool `toml:"request_buffering"`
}

// Roles as written in routes.
const (
	RoleResponder  = "responder"
	RoleAuthorizer = "authorizer"
	RoleFilter     = "filter"
	RoleAny        = "any"
)

// Fail policies.
const (
	FailClosed = "closed"
	FailOpen   = "open"
)

// Route is one [[route]]: conditions on the request, conditions on what the
// source answered, and what to do. Routes are tried in order; the first whose
// request conditions hold is used.
type Route struct {
	Name string `toml:"name"`

	// Request conditions.
	Role   string       `toml:"role"`
	Path   string       `toml:"path"` // prefix
	Glob   string       `toml:"glob"` // path.Match pattern on the whole path
	Method []string     `toml:"method"`
	Header []*Condition `toml:"header"`
	Query  []*Condition `toml:"query"`

	// Source conditions, checked once the source answered: when they do not
	// hold, the content is passed through untransformed.
	SourceStatus      []int    `toml:"source_status"`
	SourceContentType []string `toml:"source_content_type"` // media types; "text/*" and "*/*" allowed

	// What to do.
	Source             string   `toml:"source"`
	Transform          []string `toml:"transform"`
	ContentType        string   `toml:"content_type"` // output Content-Type; "" = what the transform says
	Fail               string   `toml:"fail"`
	Retry              bool     `toml:"retry"`
	KeepInput          Size     `toml:"keep_input"`
	Timeout            Duration `toml:"timeout"`
	SendRequestHeaders bool     `toml:"send_request_headers"`
	PassParams         []string `toml:"pass_params"`

	// Kind "" is a route served through its source and transforms; the
	// other kinds are answered by the bridge itself (status.go).
	Kind string `toml:"kind,omitempty"`
	// Format is a status route's default format; ?format= overrides it.
	Format string `toml:"format,omitempty"`
	// Slow is this route's slow-request threshold; 0 = log.slow.
	Slow Duration `toml:"slow"`
	// Debug: developer mode for this route; unset takes server.debug.
	Debug *bool `toml:"debug"`
}

// Condition tests one request header (by HTTP name, e.g. "Accept") or one
// query parameter. With Match empty it holds when the header or parameter is
// present; otherwise when a value matches the regular expression Match
// (unanchored, as in grep). Not inverts the outcome.
type Condition struct {
	Name  string `toml:"name"`
	Match string `toml:"match"`
	Not   bool   `toml:"not"`

	re *regexp.Regexp
}

// Holds evaluates the condition against the values found for its name
// (nil when absent).
func (c *Condition) Holds(values []string) bool {
	ok := false
	if c.Match == "" || c.re == nil {
		ok = len(values) > 0
	} else {
		for _, v := range values {
			if c.re.MatchString(v) {
				ok = true
				break
			}
		}
	}
	return ok != c.Not
}

// SampleTransforms returns the names of the built-in sample transforms the
// embedded default configuration runs as `fcgi-bridge transform NAME`.
func SampleTransforms() []string {
	var names []string
	for _, t := range Default().Transform {
		if len(t.Command) >= 3 && t.Command[0] == SelfCommand && t.Command[1] == "transform" {
			names = append(names, t.Command[2])
		}
	}
	return names
}
