package listen

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// sdListenFdsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const sdListenFdsStart = 3

// activation holds the sockets passed by systemd, read from the environment
// once; each is handed out to one Open call.
type activation struct {
	files   []*os.File
	names   []string
	claimed []bool
	err     error
}

var (
	activationOnce  sync.Once
	activationMu    sync.Mutex
	activated       *activation
	activationStart = sdListenFdsStart
)

// loadActivation reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. The
// variables are removed afterwards so that transforms started later do not
// believe the sockets were meant for them, and the descriptors are marked
// close-on-exec so that they do not leak into those transforms either.
func loadActivation() *activation {
	activationOnce.Do(func() {
		activated = parseActivation(os.Getenv, os.Getpid(), activationStart)
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			os.Unsetenv(k)
		}
	})
	return activated
}

func parseActivation(getenv func(string) string, pid, start int) *activation {
	a := &activation{}
	pidStr, fdsStr := getenv("LISTEN_PID"), getenv("LISTEN_FDS")
	if pidStr == "" || fdsStr == "" {
		return a
	}
	if p, err := strconv.Atoi(pidStr); err != nil || p != pid {
		// The sockets were passed to another process (our parent, say).
		return a
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 {
		a.err = fmt.Errorf("LISTEN_FDS=%q is not a count of sockets", fdsStr)
		return a
	}
	var names []string
	if s := getenv("LISTEN_FDNAMES"); s != "" {
		names = strings.Split(s, ":")
	}
	for i := range n {
		fd := start + i
		syscall.CloseOnExec(fd)
		name := ""
		if i < len(names) {
			name = names[i]
		}
		a.files = append(a.files, os.NewFile(uintptr(fd), "systemd:"+name))
		a.names = append(a.names, name)
	}
	a.claimed = make([]bool, n)
	return a
}

// SystemdNames returns the names of the sockets systemd passed (in order,
// "" where unnamed), or nil when the process was not socket-activated.
func SystemdNames() []string {
	a := loadActivation()
	activationMu.Lock()
	defer activationMu.Unlock()
	return append([]string(nil), a.names...)
}

// openSystemd takes the next unclaimed socket passed by systemd, or the next
// one named name (FileDescriptorName= in the socket unit; the unit's name by
// default).
func openSystemd(name string, opts Options) (net.Listener, error) {
	spec := "systemd:" + name
	a := loadActivation()
	activationMu.Lock()
	defer activationMu.Unlock()
	if a.err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, a.err)
	}
	if len(a.files) == 0 {
		return nil, fmt.Errorf("listen %s: no socket was passed by systemd (LISTEN_FDS is not set for this process); start fcgi-bridge through its .socket unit or use tcp:/unix:", spec)
	}
	for i, f := range a.files {
		if a.claimed[i] || (name != "" && a.names[i] != name) {
			continue
		}
		a.claimed[i] = true
		l, err := net.FileListener(f)
		f.Close() // FileListener holds its own duplicate
		if err != nil {
			return nil, fmt.Errorf("listen %s: descriptor %d is not a listening socket (ListenStream= in the socket unit): %w", spec, sdListenFdsStart+i, err)
		}
		if _, ok := l.Addr().(*net.TCPAddr); ok {
			return guardActivated(spec, l, opts)
		}
		return l, nil
	}
	return nil, fmt.Errorf("listen %s: systemd passed no unclaimed socket named %q (names passed: %q)", spec, name, strings.Join(a.names, ","))
}

// guardActivated applies the TCP rules to a socket systemd bound for us.
func guardActivated(spec string, l net.Listener, opts Options) (net.Listener, error) {
	allow, err := ParseAllow(opts.Allow)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	host := ""
	if ip, ok := netip.AddrFromSlice(l.Addr().(*net.TCPAddr).IP); ok && !ip.IsUnspecified() {
		host = ip.Unmap().String()
	}
	if err := checkExposure(spec+" ("+l.Addr().String()+")", host, allow, opts.ForceExposed); err != nil {
		l.Close()
		return nil, err
	}
	return guard(l, allow, opts), nil
}
