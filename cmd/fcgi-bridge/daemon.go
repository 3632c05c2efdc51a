package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/bridge"
	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
	"github.com/fcgi-bridge/fcgi-bridge/internal/sdnotify"
	"github.com/fcgi-bridge/fcgi-bridge/listen"
)

// daemon is one run of the server: configuration -> bridge.New -> an
// fcgi.Server whose handler can be swapped -> one listener per [[listen]].
type daemon struct {
	opts    *options
	cfg     *conf.Config // the configuration in use; only the signal loop touches it
	log     *slog.Logger
	logs    *logOutput
	stderr  io.Writer
	srv     *fcgi.Server
	handler *swapHandler
	notify  *sdnotify.Notifier // nil unless systemd set NOTIFY_SOCKET
	metrics *metrics.Registry  // outlives reloads

	// hard ends when the daemon must stop at once (a second signal): every
	// drain still waiting gives up and the transform processes are killed.
	hard     context.Context
	stopHard context.CancelFunc
	retiring sync.WaitGroup // generations replaced by reloads, still draining
}

// serve runs the daemon until a signal stops it and returns the exit status.
func serve(o *options, cfg *conf.Config, stderr io.Writer) int {
	logger, logs, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-bridge: %v\n", err)
		return 1
	}
	if logs.file != nil {
		defer logs.file.Close()
	}
	// Packages that log without being handed a logger use the default.
	slog.SetDefault(logger)
	defer startCPUProfile(stderr)()
	d := &daemon{opts: o, cfg: cfg, log: logger, logs: logs, stderr: stderr, metrics: metrics.NewRegistry(version)}
	logWarnings(logger, cfg)
	d.hard, d.stopHard = context.WithCancel(context.Background())
	defer d.stopHard()

	// Signals are caught before anything starts, so a TERM during start-up
	// still goes through the orderly path below.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	// systemd's variables are read, and removed from the environment, before
	// any transform starts, so that none reports in the bridge's name.
	watchdog, err := sdnotify.WatchdogInterval()
	if err != nil {
		logger.Warn("systemd watchdog not kept", "err", err)
	}
	if d.notify, err = sdnotify.New(); err != nil {
		logger.Warn("cannot tell systemd the service state", "err", err)
	}
	defer d.notify.Close()

	// Take the sockets systemd passed, if any, before a transform starts:
	// it marks them close-on-exec and clears LISTEN_*, so no transform
	// inherits them, even when the configuration does not use them.
	if names := listen.SystemdNames(); names != nil {
		logger.Info("sockets passed by systemd", "names", strings.Join(names, ","))
	}
	// Listeners first: a socket or port problem is reported before any
	// transform process is started for nothing. Connections that arrive
	// before Serve wait in the listen backlog.
	listeners, err := d.openListeners(cfg)
	if err != nil {
		return d.fatal("start", err)
	}
	b, err := bridge.New(cfg, bridge.WithLogger(logger), bridge.WithMetrics(d.metrics))
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return d.fatal("start", err)
	}
	d.metrics.SetConfig(configInfo(cfg))
	d.handler = newSwapHandler(b)
	d.srv = &fcgi.Server{Handler: d.handler, Limits: bridge.ServerLimits(cfg.Server), Logger: logger}

	serveErr := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { serveErr <- d.srv.Serve(l) }()
	}
	d.logStarted(cfg, listeners)
	// Every listener is open and bridge.New has started each pool's min
	// processes, so requests are served from here on.
	d.sdnotify(d.notify.Ready(summary(cfg)))

	var watchdogTick <-chan time.Time
	if watchdog > 0 && d.notify != nil {
		// Sent from the loop that handles signals, so a daemon stuck there
		// stops feeding the watchdog and systemd restarts it.
		t := time.NewTicker(watchdog)
		defer t.Stop()
		watchdogTick = t.C
		d.sdnotify(d.notify.Watchdog())
	}

	var statusTick <-chan time.Time
	if d.notify != nil {
		t := time.NewTicker(statusInterval)
		defer t.Stop()
		statusTick = t.C
	}

	for {
		select {
		case <-statusTick:
			d.sdnotify(d.notify.Status(d.statusLine()))
		case <-watchdogTick:
			d.sdnotify(d.notify.Watchdog())
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				d.sdnotify(d.notify.Reloading("reloading " + d.cfg.File))
				if err := d.reload(); err != nil {
					// Still serving: systemd must leave the reloading state.
					d.sdnotify(d.notify.Ready("reload refused, serving the previous configuration: " + err.Error()))
				} else {
					d.sdnotify(d.notify.Ready(summary(d.cfg)))
				}
			case syscall.SIGUSR1:
				d.reopenLog()
			default:
				return d.shutdown(sig, sigs)
			}
		case err := <-serveErr:
			if !errors.Is(err, fcgi.ErrServerClosed) {
				d.log.Error("a listener failed; stopping", "err", err)
				d.sdnotify(d.notify.Stopping("a listener failed: " + err.Error()))
				d.drain()
				return 1
			}
		}
	}
}

// fatal reports an error that prevents running, on stderr as well when the
// log goes to a file, because whoever started the daemon is looking there.
func (d *daemon) fatal(what string, err error) int {
	d.log.Error("fcgi-bridge cannot "+what, "err", err)
	if d.logs.file != nil {
		fmt.Fprintf(d.stderr, "fcgi-bridge: %v\n", err)
	}
	return 1
}

func (d *daemon) openListeners(cfg *conf.Config) ([]net.Listener, error) {
	var ls []net.Listener
	for _, lc := range cfg.Listen {
		mode, err := conf.ParseMode(lc.Mode)
		if err != nil {
			mode = 0
		}
		counts := d.metrics.Listener(lc.Addr)
		l, err := listen.Open(lc.Addr, listen.Options{
			Mode:    os.FileMode(mode),
			Owner:   lc.Owner,
			Group:   lc.Group,
			Allow:   lc.Allow,
			Logger:  d.log,
			Refused: counts.Refused,
		})
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return nil, err
		}
		ls = append(ls, metrics.CountListener(l, counts))
	}
	if len(ls) == 0 {
		return nil, errors.New("the configuration has no [[listen]] address")
	}
	return ls, nil
}

func (d *daemon) logStarted(cfg *conf.Config, ls []net.Listener) {
	addrs := make([]string, len(ls))
	for i, l := range ls {
		addrs[i] = l.Addr().Network() + ":" + l.Addr().String()
	}
	d.log.Info("fcgi-bridge started",
		"version", buildVersion(), "pid", os.Getpid(), "config", cfg.File,
		"listen", strings.Join(addrs, " "), "routes", describeRoutes(cfg))
	for _, w := range cfg.DebugWarnings() {
		d.log.Warn(w)
	}
}

// describeRoutes gives each route as name(role source -> transforms).
func describeRoutes(cfg *conf.Config) string {
	parts := make([]string, len(cfg.Route))
	for i, r := range cfg.Route {
		chain := "untransformed"
		if len(r.Transform) > 0 {
			chain = strings.Join(r.Transform, "|")
		}
		parts[i] = fmt.Sprintf("%s(%s %s -> %s)", r.Name, r.Role, r.Source, chain)
	}
	return strings.Join(parts, " ")
}

func (d *daemon) grace() time.Duration {
	if g := d.cfg.Server.ShutdownTimeout.Std(); g > 0 {
		return g
	}
	return 30 * time.Second
}

// logWarnings logs what -t warns about, so that a configuration that was
// never checked still says it.
func logWarnings(log *slog.Logger, cfg *conf.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("configuration warning", "warning", w.Error())
	}
}

// reload builds a Bridge from the configuration read again and swaps it in:
// new requests go to it at once, the old one finishes its requests and then
// stops its transforms. Any error leaves the running configuration in place.
func (d *daemon) reload() error {
	d.log.Info("reloading the configuration (SIGHUP)", "config", d.cfg.File)
	cfg, err := loadConfig(d.opts)
	if err != nil {
		d.metrics.Reloaded(err)
		d.log.Error("reload failed; still serving the previous configuration", "err", err)
		return err
	}
	b, err := bridge.New(cfg, bridge.WithLogger(d.log), bridge.WithMetrics(d.metrics))
	if err != nil {
		d.metrics.Reloaded(err)
		d.log.Error("reload failed; still serving the previous configuration", "err", err)
		return err
	}
	if !reflect.DeepEqual(listenAddrs(cfg), listenAddrs(d.cfg)) {
		d.log.Warn("listener changes take effect on restart; still listening on the previous addresses")
	}
	if !reflect.DeepEqual(cfg.Server, d.cfg.Server) {
		d.log.Warn("[server] limits take effect on restart; transforms and routes were reloaded")
	}
	if cfg.Log.Format != d.cfg.Log.Format || cfg.Log.File != d.cfg.Log.File {
		d.log.Warn("log format and file take effect on restart; the level was applied")
	}
	if lvl, err := conf.ParseLevel(cfg.Log.Level); err == nil { // checked by Load
		d.logs.level.Set(lvl)
	}
	logWarnings(d.log, cfg)
	old := d.handler.swap(b)
	d.cfg = cfg
	d.metrics.SetConfig(configInfo(cfg))
	// Recorded before the line is logged: whoever sees the line sees the count.
	d.metrics.Reloaded(nil)
	d.log.Info("configuration reloaded", "config", cfg.File, "routes", describeRoutes(cfg))

	// The grace is read here, on the signal loop that owns d.cfg: the next
	// HUP may replace d.cfg while this generation is still draining.
	grace := d.grace()
	d.retiring.Add(1)
	go func() {
		defer d.retiring.Done()
		ctx, cancel := context.WithTimeout(d.hard, grace)
		defer cancel()
		if err := old.retire(ctx); err != nil {
			d.log.Warn("previous configuration closed before its requests finished", "err", err)
			return
		}
		d.log.Info("previous configuration drained and closed")
	}()
	return nil
}

func listenAddrs(cfg *conf.Config) []conf.Listener {
	out := make([]conf.Listener, len(cfg.Listen))
	for i, l := range cfg.Listen {
		out[i] = *l
	}
	return out
}

func (d *daemon) reopenLog() {
	if d.logs.file == nil {
		d.log.Info("SIGUSR1: logging to stderr, no file to reopen")
		return
	}
	if err := d.logs.file.Reopen(); err != nil {
		d.log.Error("SIGUSR1: keeping the old log file", "err", err)
		return
	}
	d.log.Info("log file reopened (SIGUSR1)", "file", d.logs.file.path)
}

// shutdown drains: the server stops accepting and lets requests in flight
// finish (up to the grace period), then the bridges close their transforms.
// A second TERM, QUIT or INT stops at once. HUP and USR1 are ignored here.
func (d *daemon) shutdown(first os.Signal, sigs <-chan os.Signal) int {
	grace := d.grace()
	d.sdnotify(d.notify.Stopping("stopping on " + first.String() + ", draining requests in flight"))
	d.log.Info("stopping: draining requests in flight (send the signal again to stop at once)", "signal", first.String(), "grace", grace.String())
	done := make(chan bool, 1)
	go func() { done <- d.drain() }()
	for {
		select {
		case clean := <-done:
			if !clean {
				d.log.Warn("stopped after the grace period; unfinished requests were cut short")
				return 1
			}
			d.log.Info("stopped")
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP || sig == syscall.SIGUSR1 {
				continue
			}
			d.log.Warn("second signal: stopping at once", "signal", sig.String())
			d.stopHard()
			d.srv.Close()
			<-done
			return 1
		}
	}
}

// drain shuts the server down gracefully, then closes the current bridge
// and waits for bridges replaced by reloads. It reports whether everything
// finished within the grace period.
func (d *daemon) drain() bool {
	ctx, cancel := context.WithTimeout(d.hard, d.grace())
	defer cancel()
	clean := true
	if err := d.srv.Shutdown(ctx); err != nil {
		clean = false
		d.srv.Close()
	}
	if err := d.handler.cur.Load().retire(ctx); err != nil {
		clean = false
		d.log.Warn("closing the transforms", "err", err)
	}
	d.retiring.Wait()
	return clean && d.hard.Err() == nil
}
