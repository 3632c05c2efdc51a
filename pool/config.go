package pool

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
)

// Config describes one pool. The zero value of a field is its default, given
// in the field's comment.
type Config struct {
	// Name identifies the pool in logs, errors and counters.
	Name string
	// Command is the program and its arguments. It is executed directly,
	// never through a shell. A name without a slash is looked up in the
	// bridge's PATH; a relative path with a slash is taken relative to Dir.
	Command []string
	// Env is the whole environment of the process, as "K=V", besides the
	// PassEnv variables. Nothing is inherited implicitly, so a transform
	// does not see the bridge's secrets by accident. Env wins over PassEnv.
	Env []string
	// PassEnv names variables copied from the bridge's own environment
	// when they are set there (e.g. "PATH", "LANG", "NODE_OPTIONS").
	PassEnv []string
	// Dir is the working directory; empty means the bridge's.
	Dir string
	// User and Group run the process under another identity; they need the
	// bridge to run as root (New fails otherwise). Group defaults to the
	// user's primary group. Supplementary groups are cleared.
	User, Group string
	// Min processes are started by New and kept (default 0); Max bound the
	// processes alive at once (default: max(Min, number of CPUs)).
	Min, Max int
	// QueueSize bounds the Acquire calls waiting for a process once Max are
	// busy (default 4*Max; negative: no queue, saturated at once).
	QueueSize int
	// QueueTimeout bounds one wait in the queue (default 5s). A wait that
	// times out returns ErrSaturated.
	QueueTimeout time.Duration
	// StartTimeout bounds the readiness check (default 10s).
	StartTimeout time.Duration
	// Ready, when set, is called on a fresh process before it is first
	// leased, with a context bounded by StartTimeout; an error makes it a
	// start failure. It may exchange a message over the process's pipes.
	Ready func(ctx context.Context, p *Process) error
	// MaxRequests recycles a process after this many leases, varied by
	// ±10% per process so processes do not all restart at once; 0 = never.
	MaxRequests int
	// MaxLifetime recycles a process after this age (±10%), when it is next
	// idle; 0 = never.
	MaxLifetime time.Duration
	// MaxRSS recycles a process whose resident memory exceeds this many
	// bytes, checked each time it is released; 0 = no limit.
	MaxRSS int64
	// IdleTimeout retires processes idle this long, down to Min; 0 = keep.
	IdleTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL (default 3s).
	KillGrace time.Duration
	// Logger receives pool events and the processes' stderr lines
	// (default slog.Default()).
	Logger *slog.Logger
}

const (
	defaultQueueTimeout = 5 * time.Second
	defaultStartTimeout = 10 * time.Second
	defaultKillGrace    = 3 * time.Second
	// earlyExitWindow: a process that exits on its own within this time of
	// its start, before it completed any lease, failed to start rather than
	// crashed (unless it exited cleanly during its first lease); this is
	// what drives the back-off for programs that exit at once (bad flags,
	// missing files), which a successful exec cannot show.
	earlyExitWindow = time.Second
	backoffBase     = 100 * time.Millisecond
	backoffCap      = 30 * time.Second
	jitterFraction  = 0.10
)

// launch is everything needed to start a process, resolved once by New.
type launch struct {
	path string // resolved program, or argv[0] when resolution failed
	// pathErr is the resolution failure; starts fail with it (and back off)
	// rather than New failing, because the program may be installed later.
	pathErr error
	argv    []string
	env     []string
	dir     string
	cred    *syscall.Credential
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return cfg, fmt.Errorf("pool %q: no command", cfg.Name)
	}
	if cfg.Min < 0 || cfg.Max < 0 {
		return cfg, fmt.Errorf("pool %q: min %d and max %d must not be negative", cfg.Name, cfg.Min, cfg.Max)
	}
	if cfg.Max == 0 {
		cfg.Max = max(cfg.Min, runtime.NumCPU())
	}
	if cfg.Min > cfg.Max {
		return cfg, fmt.Errorf("pool %q: min %d is above max %d", cfg.Name, cfg.Min, cfg.Max)
	}
	switch {
	case cfg.QueueSize == 0:
		cfg.QueueSize = 4 * cfg.Max
	case cfg.QueueSize < 0:
		cfg.QueueSize = 0
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = defaultQueueTimeout
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = defaultStartTimeout
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = defaultKillGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

func (c *Config) launch() (*launch, error) {
	l := &launch{argv: c.Command, dir: c.Dir, env: child.Environ(c.Env, c.PassEnv)}
	l.path, l.pathErr = child.ResolveProgram(c.Command[0], c.Dir)
	if c.User != "" || c.Group != "" {
		cred, err := child.Credential(c.User, c.Group)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", c.Name, err)
		}
		l.cred = cred
	}
	return l, nil
}
