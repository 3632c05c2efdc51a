package main

import (
	"fmt"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
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
