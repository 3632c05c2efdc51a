package conf

import (
	"fmt"
	"net"
	"strings"
)

// Developer mode (server.debug, route.debug, --debug): when a transform
// fails, the error answer the bridge writes describes the failure (phase,
// exit status, stderr, the offending reply line) instead of the short
// status text. That shows a transform's stderr to whoever can send a
// request, so it is off by default and the check warns when it is on for a
// listener other hosts can reach.

// DebugOn reports whether developer mode is on for the route. A route
// that does not set debug has server.debug's value once loaded.
func (r *Route) DebugOn() bool { return r.Debug != nil && *r.Debug }

// SetDebug turns developer mode on for the whole configuration, as --debug
// does.
func (c *Config) SetDebug() {
	c.Server.Debug = true
	for _, r := range c.Route {
		on := true
		r.Debug = &on
	}
}

// inheritDebug gives each route that does not set debug server.debug's
// value.
func (c *Config) inheritDebug() {
	for _, r := range c.Route {
		if r.Debug == nil {
			on := c.Server.Debug
			r.Debug = &on
		}
	}
}

// DebugWarnings returns one warning per listener that other hosts can
// reach (not loopback, not a unix socket) when developer mode is on for
// some route: its error pages would show them the transforms' stderr.
func (c *Config) DebugWarnings() []string {
	var routes []string
	for _, r := range c.Route {
		if r.DebugOn() {
			routes = append(routes, r.Name)
		}
	}
	if len(routes) == 0 {
		return nil
	}
	var out []string
	for i, l := range c.Listen {
		if localListener(l.Addr) {
			continue
		}
		out = append(out, fmt.Sprintf("%s: listen.%d.addr %q is not a loopback address or a unix socket, and debug is on for route %s: "+
			"a failing transform's error page shows its stderr and output to anyone who reaches it; use debug only in development, on a local listener",
			c.File, i, l.Addr, strings.Join(routes, ", ")))
	}
	return out
}

// localListener reports whether only this host can connect to addr: a unix
// socket or a TCP address on a loopback IP or "localhost". systemd
// sockets are not known here and count as reachable.
func localListener(addr string) bool {
	network, address, err := ParseListenAddr(addr)
	if err != nil {
		return false
	}
	switch network {
	case "unix":
		return true
	case "tcp":
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return false
		}
		if host == "localhost" {
			return true
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
	return false
}
