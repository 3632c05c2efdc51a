// Package bridge ties the daemon together: it builds the transform pools,
// transforms, sources and routes a *conf.Config describes, and serves every
// FastCGI request as an fcgi.Handler.
//
// A request flows one way: route match (role, path, method, headers,
// query) -> source (FILTER data, body, file, HTTP or FastCGI upstream,
// request description) -> source conditions (status, Content-Type) ->
// filter chain -> CGI response. Failures become statuses in one place
// (respond.go). A Bridge never changes after New, so the command reloads by
// building a new one and swapping it in, then calling Close on the old one,
// which waits for its in-flight requests before closing its pools.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

// Bridge is an fcgi.Handler built from one configuration.
type Bridge struct {
	cfg        *conf.Config
	log        *slog.Logger
	access     bool
	retryAfter string
	spool      source.SpoolConfig

	routes  []*route
	noRoute *metrics.Route // requests no route matched
	metrics *metrics.Registry
	roles   map[fcgi.Role]bool
	pools   []*pool.Pool
	sources []source.Source

	inflight sync.WaitGroup
	// active counts the same requests as inflight: a WaitGroup cannot say
	// whether it is at zero without blocking, and Close needs to know when
	// its context has already ended.
	active  atomic.Int64
	closed  atomic.Bool
	closeMu sync.Mutex // serialises Close against late ServeFCGI starts
}

// Option adjusts what New builds.
type Option func(*options)

type options struct {
	logger  *slog.Logger
	sources map[string]source.Source
	metrics *metrics.Registry
}

// WithLogger sets the logger for access lines, failures and the pools
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetrics counts requests in r, which the daemon keeps across reloads
// (default: a registry of the Bridge's own).
func WithMetrics(r *metrics.Registry) Option { return func(o *options) { o.metrics = r } }

// WithSource replaces the source a route names (an upstream or a built-in
// name) by s; for tests and embedding.
func WithSource(name string, s source.Source) Option {
	return func(o *options) {
		if o.sources == nil {
			o.sources = map[string]source.Source{}
		}
		o.sources[name] = s
	}
}

// New builds everything cfg describes: a pool per pooled transform a route
// uses (processes up to min are started now, so a broken command shows at
// start-up), one-shot transforms, sources and routes. On error everything
// already built is closed again.
func New(cfg *conf.Config, opts ...Option) (*Bridge, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	b := &Bridge{
		cfg:        cfg,
		log:        o.logger,
		access:     cfg.Log.Access,
		retryAfter: retryAfterValue(cfg.Server.RetryAfter.Std()),
		roles:      map[fcgi.Role]bool{},
		spool: source.SpoolConfig{
			Dir:    cfg.Server.SpoolDir,
			Memory: int64(cfg.Server.SpoolMemory),
			Max:    int64(cfg.Server.MaxBody),
		},
	}
	b.metrics = o.metrics
	if b.metrics == nil {
		b.metrics = metrics.NewRegistry("")
	}
	b.noRoute = b.metrics.Route("-")
	ok := false
	defer func() {
		if !ok {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			b.closeParts(ctx)
		}
	}()

	transforms := map[string]filter.Transform{}
	for _, name := range usedTransforms(cfg) {
		t, err := b.buildTransform(cfg.Transform[name])
		if err != nil {
			return nil, err
		}
		transforms[name] = t
	}
	sources := map[string]source.Source{}
	for name, s := range o.sources {
		sources[name] = s
	}
	for _, r := range cfg.Route {
		if _, done := sources[r.Source]; done {
			continue
		}
		s := source.Builtin(r.Source)
		if s == nil {
			u, exists := cfg.Upstream[r.Source]
			if !exists {
				return nil, fmt.Errorf("route %q: unknown source %q", r.Name, r.Source)
			}
			var err error
			if s, err = source.New(u); err != nil {
				return nil, err
			}
		}
		sources[r.Source] = s
		b.sources = append(b.sources, s)
	}
	for _, rc := range cfg.Route {
		rt, err := newRoute(rc, sources[rc.Source], transforms)
		if err != nil {
			return nil, err
		}
		for _, name := range rc.Transform {
			if cfg.Transform[name].Kind == conf.KindOneShot {
				rt.oneShot = true
			}
		}
		u := cfg.Upstream[rc.Source]
		rt.requestInput = rc.Source == conf.SourceBody || rc.Source == conf.SourceData || (u != nil && (u.Kind == conf.UpstreamBody || u.Kind == conf.UpstreamData))
		rt.bufferBody = bufferRequestBody(rc, u)
		rt.bodySource = rc.Source == conf.SourceBody || (u != nil && u.Kind == conf.UpstreamBody)
		// Made once: With formats the attribute into a new handler, which
		// cost allocations on every transformed request.
		rt.policy.Logger = b.log.With("route", rc.Name)
		rt.stats = b.metrics.Route(rc.Name)
		if rt.slow = rc.Slow.Std(); rt.slow == 0 {
			rt.slow = cfg.Log.Slow.Std()
		}
		b.routes = append(b.routes, rt)
		if rt.role == 0 {
			b.roles[fcgi.RoleResponder], b.roles[fcgi.RoleFilter] = true, true
		} else {
			b.roles[rt.role] = true
		}
	}
	ok = true
	return b, nil
}

// bufferRequestBody says whether a route's source gets the request body
// spooled: the sources that read it (the body itself, HTTP and FastCGI
// upstreams) unless their table sets request_buffering = false. The
// built-in "body" has no table and always buffers, since nginx, the most
// common peer, needs it. FILTER data, files and the authorizer's request
// description do not read the body.
func bufferRequestBody(rc *conf.Route, u *conf.Upstream) bool {
	if rc.Role == conf.RoleAuthorizer {
		return false
	}
	if u == nil {
		return rc.Source == conf.SourceBody
	}
	switch u.Kind {
	case conf.UpstreamBody, conf.UpstreamHTTP, conf.UpstreamFastCGI:
		return u.RequestBuffering
	}
	return false
}

// usedTransforms lists the transforms some route names, sorted: only those
// get pools, so a table kept for later costs no processes.
func usedTransforms(cfg *conf.Config) []string {
	set := map[string]bool{}
	for _, r := range cfg.Route {
		for _, t := range r.Transform {
			set[t] = true
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (b *Bridge) buildTransform(t *conf.Transform) (filter.Transform, error) {
	argv, err := conf.ResolveCommand(t.Command)
	if err != nil {
		return nil, fmt.Errorf("transform %q: %w", t.Name, err)
	}
	env := make([]string, 0, len(t.Env))
	for _, k := range sortedKeys(t.Env) {
		env = append(env, k+"="+t.Env[k])
	}
	logger := b.log.With("transform", t.Name)
	if t.Kind == conf.KindOneShot {
		var cred *syscall.Credential
		if t.User != "" || t.Group != "" {
			if cred, err = child.Credential(t.User, t.Group); err != nil {
				return nil, fmt.Errorf("transform %q: %w", t.Name, err)
			}
		}
		ot, err := filter.NewOneShot(filter.OneShotConfig{
			Name:        t.Name,
			Args:        append(argv, t.Args...),
			Vars:        t.Vars,
			ContentType: t.ContentType,
			Timeout:     t.Timeout.Std(),
			Env:         child.Environ(env, t.PassEnv),
			Dir:         t.Dir,
			Credential:  cred,
			Logger:      logger,
		})
		if err != nil {
			return nil, fmt.Errorf("transform %q: %w", t.Name, err)
		}
		return ot, nil
	}
	queue := t.Queue
	if queue == 0 {
		queue = -1 // pool: negative = no queue; conf: 0 = no queue
	}
	p, err := pool.New(pool.Config{
		Name:         t.Name,
		Command:      argv,
		Env:          env,
		PassEnv:      t.PassEnv,
		Dir:          t.Dir,
		User:         t.User,
		Group:        t.Group,
		Min:          t.Min,
		Max:          t.Max,
		QueueSize:    queue,
		QueueTimeout: t.QueueTimeout.Std(),
		StartTimeout: t.StartTimeout.Std(),
		MaxRequests:  t.MaxRequests,
		MaxLifetime:  t.MaxLifetime.Std(),
		MaxRSS:       int64(t.MaxRSS),
		IdleTimeout:  t.IdleTimeout.Std(),
		KillGrace:    t.KillGrace.Std(),
		Logger:       logger,
	})
	if err != nil {
		return nil, fmt.Errorf("transform %q: %w", t.Name, err)
	}
	b.pools = append(b.pools, p)
	return filter.NewPooled(t.Name, p, t.Timeout.Std()), nil
}

// Close stops taking part in new work, waits until the in-flight requests
// have finished (or ctx ends), then closes the pools (their processes get
// SIGTERM and, after their kill grace, SIGKILL) and the sources.
func (b *Bridge) Close(ctx context.Context) error {
	b.closeMu.Lock()
	b.closed.Store(true)
	b.closeMu.Unlock()
	done := make(chan struct{})
	go func() {
		b.inflight.Wait()
		close(done)
	}()
	var waitErr error
	select {
	case <-done:
	case <-ctx.Done():
		// Both may be ready (an already-ended ctx, nothing in flight) and
		// select picks at random: only requests really left are an error.
		if n := b.active.Load(); n > 0 {
			waitErr = fmt.Errorf("bridge: %w while %d requests were still in flight", ctx.Err(), n)
		}
	}
	return errors.Join(waitErr, b.closeParts(ctx))
}

func (b *Bridge) closeParts(ctx context.Context) error {
	var errs []error
	for _, p := range b.pools {
		if err := p.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close pool %q: %w", p.Name(), err))
		}
	}
	for _, s := range b.sources {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close source %q: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Config returns the configuration the bridge was built from.
func (b *Bridge) Config() *conf.Config { return b.cfg }

// ServesRole reports whether some route accepts requests of role. The fcgi
// server may ask it at BEGIN_REQUEST to answer FCGI_UNKNOWN_ROLE for roles
// nobody serves, before reading any params.
func (b *Bridge) ServesRole(role fcgi.Role) bool { return b.roles[role] }

// Stats returns the counters of every pool, by transform name.
func (b *Bridge) Stats() map[string]pool.Stats {
	out := make(map[string]pool.Stats, len(b.pools))
	for _, p := range b.pools {
		out[p.Name()] = p.Stats()
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func retryAfterValue(d time.Duration) string {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprint(secs)
}
