package listen

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
)

// AllowList is a set of client address prefixes permitted to connect over TCP.
type AllowList struct {
	prefixes []netip.Prefix
}

// ParseAllow parses addresses and CIDRs ("10.0.0.5", "10.0.0.0/24", "::1",
// "fd00::/8"). An empty list returns nil, which means loopback only.
func ParseAllow(entries []string) (*AllowList, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	a := &AllowList{}
	for _, e := range entries {
		p, err := ParseAllowEntry(e)
		if err != nil {
			return nil, fmt.Errorf("allow: %w", err)
		}
		a.prefixes = append(a.prefixes, p)
	}
	return a, nil
}

// ParseAllowEntry parses one allow-list entry, an IP address or a CIDR
// prefix, into a prefix (an address is a prefix of its full length). It is
// the one parser of allow entries: the configuration's checks use it too.
func ParseAllowEntry(e string) (netip.Prefix, error) {
	e = strings.TrimSpace(e)
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR: %w", e, err)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(e)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR such as 10.0.0.0/8 (host names are not accepted, so that a DNS change cannot open the port)", e)
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// Allows reports whether a client at ip may connect. A nil list allows
// loopback only. IPv4-mapped IPv6 addresses are compared as IPv4, since a
// dual-stack socket reports IPv4 clients that way.
func (a *AllowList) Allows(ip netip.Addr) bool {
	ip = ip.Unmap()
	if a == nil {
		return ip.IsLoopback()
	}
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// guard wraps a TCP listener so that connections from clients outside the
// allow list are closed as soon as they are accepted. With force and no
// allow list the listener is returned as it is.
func guard(l net.Listener, allow *AllowList, opts Options) net.Listener {
	if allow == nil && opts.ForceExposed {
		return l
	}
	return &guardedListener{Listener: l, allow: allow, log: opts.logger(), counted: opts.Refused}
}

// guardedListener filters clients by address. Refusals are logged one line
// each, but at most maxRefusalLogs in a row until a client is accepted, so
// that a port scan cannot flood the log.
type guardedListener struct {
	net.Listener
	allow   *AllowList
	log     *slog.Logger
	refused atomic.Int64
	counted func() // Options.Refused
}

const maxRefusalLogs = 100

func (g *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g.permits(c.RemoteAddr()) {
			g.refused.Store(0)
			return c, nil
		}
		if g.counted != nil {
			g.counted()
		}
		n := g.refused.Add(1)
		if n <= maxRefusalLogs {
			g.log.Warn("refused FastCGI connection from an address not in the allow list",
				"listener", g.Addr().String(), "client", c.RemoteAddr().String())
		}
		c.Close()
	}
}

func (g *guardedListener) permits(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ok && g.allow.Allows(ip)
}
