// Package listen turns a listener spec from the command line or the config
// into a net.Listener the FastCGI server accepts on.
//
// Three kinds of spec are understood:
//
//	tcp:HOST:PORT     a TCP socket; loopback only unless an allow list says otherwise
//	unix:PATH         a unix socket, mode 0660 by default, removed on close
//	systemd:[NAME]    a socket passed by systemd socket activation
//
// An exposed FastCGI port lets anyone who can reach it run whatever the
// backend runs (for php-fpm-like backends that is remote code execution), so
// TCP is guarded twice: every accepted connection is checked against an
// allow list (loopback when none is given), and binding a non-loopback
// address without an allow list is refused unless Options.ForceExposed says
// the operator really wants that.
package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

var (
	errAddrInUse    = syscall.EADDRINUSE
	errAccess       = syscall.EACCES
	errAddrNotAvail = syscall.EADDRNOTAVAIL
	errNotExist     = syscall.ENOENT
)

// DefaultSocketMode is the mode of a unix socket when Options.Mode is zero:
// the owner and the group (the web server's group, typically) may connect,
// nobody else.
const DefaultSocketMode fs.FileMode = 0o660

// Options adjust how a spec is opened. The zero value is the safe default.
type Options struct {
	// Mode of a unix socket file; 0 means DefaultSocketMode.
	Mode fs.FileMode
	// Owner and Group of a unix socket file, as names or numeric ids; empty
	// leaves what the process creates (changing them needs privileges).
	Owner, Group string
	// Allow lists the client addresses (IP or CIDR, IPv4 or IPv6) that may
	// connect over TCP. Empty means loopback only.
	Allow []string
	// ForceExposed permits a TCP listener on a non-loopback address without
	// an allow list; every client that can route to it is then accepted.
	ForceExposed bool
	// Logger receives one line per refused connection; nil means slog.Default().
	Logger *slog.Logger
	// Refused, when set, is called for each connection closed because its
	// address is not in the allow list (for the daemon's metrics).
	Refused func()
}

// Spec is a parsed listener spec.
type Spec struct {
	Network string // "tcp", "unix" or "systemd"
	Address string // HOST:PORT, PATH, or the systemd socket name ("" = the next one)
}

func (s Spec) String() string { return s.Network + ":" + s.Address }

// ParseSpec splits a spec into its network and address and checks its form.
// A bare absolute path is taken as unix:PATH and a bare HOST:PORT as tcp:HOST:PORT,
// because that is what people type.
func ParseSpec(spec string) (Spec, error) {
	network, addr, ok := strings.Cut(spec, ":")
	switch {
	case strings.HasPrefix(spec, "/"):
		network, addr = "unix", spec
	case !ok:
		return Spec{}, fmt.Errorf("listen %q: want tcp:HOST:PORT, unix:PATH or systemd:NAME", spec)
	case network != "tcp" && network != "unix" && network != "systemd":
		// "127.0.0.1:9000" or "[::1]:9000" without a scheme.
		if !validHostPort(spec) {
			return Spec{}, fmt.Errorf("listen %q: unknown kind %q; want tcp:HOST:PORT, unix:PATH or systemd:NAME", spec, network)
		}
		network, addr = "tcp", spec
	}
	switch network {
	case "tcp":
		if !validHostPort(addr) {
			return Spec{}, fmt.Errorf("listen %q: want tcp:HOST:PORT (e.g. tcp:127.0.0.1:9000)", spec)
		}
	case "unix":
		if addr == "" {
			return Spec{}, fmt.Errorf("listen %q: want unix:PATH (e.g. unix:/run/fcgi-bridge/fcgi.sock)", spec)
		}
	}
	return Spec{Network: network, Address: addr}, nil
}

func validHostPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// Open parses spec and opens the listener it names.
func Open(spec string, opts Options) (net.Listener, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch s.Network {
	case "tcp":
		return openTCP(s.Address, opts)
	case "unix":
		return openUnix(s.Address, opts)
	default:
		return openSystemd(s.Address, opts)
	}
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func openTCP(addr string, opts Options) (net.Listener, error) {
	allow, err := ParseAllow(opts.Allow)
	if err != nil {
		return nil, fmt.Errorf("listen tcp:%s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	if err := checkExposure("tcp:"+addr, host, allow, opts.ForceExposed); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, explainListenError("tcp:"+addr, err)
	}
	return guard(l, allow, opts), nil
}

// checkExposure refuses a non-loopback bind without an allow list. Host
// names are resolved, and every address they resolve to must be loopback.
func checkExposure(spec, host string, allow *AllowList, force bool) error {
	if allow != nil || force {
		return nil
	}
	if isLoopbackHost(host) {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "every interface"
	}
	return fmt.Errorf("listen %s: refusing to accept FastCGI on %s without an allow list: "+
		"anyone who can reach the port could run requests through the bridge; "+
		"bind to 127.0.0.1, use a unix socket, or list the web servers' addresses in allow "+
		"(allow = [\"0.0.0.0/0\", \"::/0\"] accepts anyone: only behind a firewall)", spec, shown)
}

func isLoopbackHost(host string) bool {
	if host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// explainListenError turns the errors people meet when binding into one
// sentence that says what to do, keeping the cause for errors.Is.
func explainListenError(spec string, err error) error {
	var hint string
	switch {
	case errors.Is(err, errAddrInUse):
		hint = "the address is already in use: another process (or another fcgi-bridge) listens there; stop it or choose another address"
	case errors.Is(err, errAccess) && strings.HasPrefix(spec, "unix:"):
		hint = fmt.Sprintf("permission denied: the bridge's user may not create files in %s; give it write permission there or use a directory it owns (systemd: RuntimeDirectory=)",
			filepath.Dir(strings.TrimPrefix(spec, "unix:")))
	case errors.Is(err, errAccess):
		hint = "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE); or use a port above 1023"
	case errors.Is(err, errAddrNotAvail):
		hint = "the address is not one of this machine's addresses"
	case errors.Is(err, errNotExist):
		hint = "the directory of the socket does not exist; create it (systemd: RuntimeDirectory=) or choose another path"
	default:
		return fmt.Errorf("listen %s: %w", spec, err)
	}
	return fmt.Errorf("listen %s: %s: %w", spec, hint, err)
}
