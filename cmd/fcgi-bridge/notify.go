package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/metrics"
)

// sdnotify logs a failure to reach systemd's notification socket. It is
// not fatal: the daemon serves, and systemd's own timeouts report it.
func (d *daemon) sdnotify(err error) {
	if err != nil {
		d.log.Warn("cannot tell systemd the service state", "err", err)
	}
}

// summary is the one-line STATUS= systemd shows in `systemctl status`.
func summary(cfg *conf.Config) string {
	return fmt.Sprintf("serving %d routes, %d transforms, from %s", len(cfg.Route), len(cfg.Transform), cfg.File)
}

// statusInterval is how often STATUS= is refreshed for `systemctl status`.
const statusInterval = 10 * time.Second

// statusLine is the refreshed STATUS=: requests so far and each pool's
// busy and total processes.
func (d *daemon) statusLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests served", d.metrics.Requests())
	stats := d.handler.current().Stats()
	for _, name := range sortedNames(stats) {
		s := stats[name]
		fmt.Fprintf(&b, "; %s %d/%d busy", name, s.Busy, s.Idle+s.Busy+s.Starting)
		if s.Queue > 0 {
			fmt.Fprintf(&b, " %d queued", s.Queue)
		}
	}
	return b.String()
}

// configInfo names the configuration for the status answers: its file and
// a hash of its effective settings as -T prints them, which changes when
// anything that runs changes, whatever file or include it came from.
func configInfo(cfg *conf.Config) metrics.ConfigInfo {
	h := sha256.New()
	if err := cfg.Encode(h); err != nil {
		return metrics.ConfigInfo{File: cfg.File}
	}
	return metrics.ConfigInfo{File: cfg.File, Hash: "sha256:" + hex.EncodeToString(h.Sum(nil))}
}
