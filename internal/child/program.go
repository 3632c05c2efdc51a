package child

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotInPath is the cause when a bare program name is not in PATH.
var ErrNotInPath = errors.New("not found in PATH")

// ResolveProgram turns a configured program name into the path Start
// runs. A name without a slash is looked up in the bridge's PATH, not the
// child's: the child's environment is deliberately minimal and may have no
// PATH. A relative path with a slash is taken relative to dir. On failure
// it returns name itself with the error, so that a later attempt can say
// what it tried.
func ResolveProgram(name, dir string) (string, error) {
	switch {
	case !strings.Contains(name, "/"):
		p, err := exec.LookPath(name)
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return name, fmt.Errorf("%q %w", name, ErrNotInPath)
			}
			return name, err
		}
		return p, nil
	case !filepath.IsAbs(name) && dir != "":
		return filepath.Join(dir, name), nil
	default:
		return name, nil
	}
}

// Environ returns the values of the variables named in pass that are set
// in the bridge's environment, followed by env ("NAME=value" entries),
// keeping one entry per name, the last: env wins over pass.
func Environ(env, pass []string) []string {
	out := make([]string, 0, len(env)+len(pass))
	seen := make(map[string]int, len(env)+len(pass))
	add := func(kv string) {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := seen[name]; ok {
			out[i] = kv
			return
		}
		seen[name] = len(out)
		out = append(out, kv)
	}
	for _, name := range pass {
		if v, ok := os.LookupEnv(name); ok {
			add(name + "=" + v)
		}
	}
	for _, kv := range env {
		add(kv)
	}
	return out
}

// Credential resolves a user and a group (names or ids; either may be "")
// to the identity a child process runs under: the user's uid and primary
// group, the group replacing that group when given, and no supplementary
// groups. It fails unless the bridge runs as root.
func Credential(userName, groupName string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("user %q / group %q need the bridge to run as root (it runs as uid %d)", userName, groupName, os.Geteuid())
	}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", userName, err)
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %q: uid %q: %w", userName, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %q: gid %q: %w", userName, u.Gid, err)
		}
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", groupName, err)
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("group %q: gid %q: %w", groupName, g.Gid, err)
		}
		cred.Gid = uint32(gid)
	}
	return cred, nil
}
