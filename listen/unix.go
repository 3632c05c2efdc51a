package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxSocketPath is the longest path bind(2) accepts for a unix socket
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// openUnix binds the socket in place under a umask that gives it exactly
// its final mode, so there is no moment when it is more open than
// configured, then sets the owner. The umask is process-wide: fork is held
// off meanwhile (syscall.ForkLock) so no transform starts with the
// temporary umask, and files other goroutines create in that instant can
// only come out tighter, never looser. Binding in place (rather than in a
// staging directory and moving the file) keeps the socket's own name, which
// is what accepted connections report as their local address.
func openUnix(path string, opts Options) (net.Listener, error) {
	spec := "unix:" + path
	if len(path) > 0 && path[0] == '@' {
		// A Linux abstract socket has no file, so no mode, owner or stale file.
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, explainListenError(spec, err)
		}
		return l, nil
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("listen %s: the path is %d bytes long; unix socket paths are limited to %d", spec, len(path), maxSocketPath)
	}
	mode := opts.Mode.Perm()
	if mode == 0 {
		mode = DefaultSocketMode
	}
	uid, gid, err := lookupOwner(opts.Owner, opts.Group)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	syscall.ForkLock.Lock()
	old := syscall.Umask(int(0o777 &^ mode))
	// bind(2) fails with EADDRINUSE when something appeared at path since
	// the stale check, so a file or a live socket is never replaced.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	syscall.ForkLock.Unlock()
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen %s: another process created a file at the same path at the same moment; is a second fcgi-bridge starting? %w", spec, err)
		}
		return nil, explainListenError(spec, err)
	}
	ul.SetUnlinkOnClose(false)
	if err := setModeOwner(path, mode, uid, gid, opts.Owner, opts.Group); err != nil {
		ul.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	return newUnixListener(ul, path)
}

func setModeOwner(path string, mode fs.FileMode, uid, gid int, owner, group string) error {
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return chownError(uid, gid, owner, group, err)
		}
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		return fmt.Errorf("set the socket's mode to %#o: %w", mode.Perm(), err)
	}
	return nil
}

// removeStale removes a socket file left behind by a process that is gone.
// It refuses to remove anything that is not a socket, and a socket that
// something still answers on.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("permission denied: the bridge's user cannot reach %s (a directory on the way lacks x permission for it): %w", filepath.Dir(path), err)
	}
	if err != nil {
		return fmt.Errorf("inspect the existing %s: %w", path, err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s); refusing to replace it, remove it yourself if it is not needed", path, st.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another process is already serving on %s; stop it first (is fcgi-bridge running twice?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether the existing socket %s is still in use, so it is left alone: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale socket %s: %w", path, err)
	}
	return nil
}

// lookupOwner resolves user and group names or numeric ids; -1 means keep.
func lookupOwner(owner, group string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = strconv.Atoi(owner); err != nil {
			u, lerr := user.Lookup(owner)
			if lerr != nil {
				return -1, -1, fmt.Errorf("socket owner %q: %w", owner, lerr)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if gid, err = strconv.Atoi(group); err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return -1, -1, fmt.Errorf("socket group %q: %w", group, lerr)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, nil
}

// unixListener removes its socket file on Close, but only while the file is
// still the one it created: a newer instance that took the path over keeps
// its socket.
type unixListener struct {
	*net.UnixListener
	path     string
	dev, ino uint64
	once     sync.Once
	err      error
}

func newUnixListener(ul *net.UnixListener, path string) (net.Listener, error) {
	l := &unixListener{UnixListener: ul, path: path}
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err == nil {
		l.dev, l.ino = uint64(st.Dev), st.Ino
	}
	return l, nil
}

func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		var st syscall.Stat_t
		if syscall.Lstat(l.path, &st) == nil && uint64(st.Dev) == l.dev && st.Ino == l.ino {
			os.Remove(l.path)
		}
	})
	return l.err
}

// chownError says which owner and group the socket was to get, as
// configured and as ids, and what would let the bridge give them: without
// CAP_CHOWN a process may only give its files a group it is a member of,
// and never another owner.
func chownError(uid, gid int, owner, group string, err error) error {
	var want []string
	if uid >= 0 {
		want = append(want, fmt.Sprintf("owner %q (uid %d)", owner, uid))
	}
	if gid >= 0 {
		want = append(want, fmt.Sprintf("group %q (gid %d)", group, gid))
	}
	what := fmt.Sprintf("give the socket %s", strings.Join(want, " and "))
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%s: %w", what, err)
	}
	me := strconv.Itoa(os.Geteuid())
	if u, lerr := user.LookupId(me); lerr == nil {
		me = u.Username
	}
	switch {
	case uid >= 0 && uid != os.Geteuid():
		return fmt.Errorf("%s: only root (or CAP_CHOWN) may give a file another owner, and the bridge runs as %s: drop the listener's owner key, or start the bridge as root (it may run transforms under another user): %w", what, me, err)
	default:
		return fmt.Errorf("%s: the bridge runs as %s, which is not a member of that group: add it (usermod -aG %s %s, then restart the bridge) or start the bridge as root: %w", what, me, group, me, err)
	}
}
