package pool

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
)

// ErrSaturated is returned by Acquire when every process is busy and either
// the wait queue is full or the wait exceeded Config.QueueTimeout. Callers
// answer 503 with a Retry-After header.
var ErrSaturated = errors.New("pool saturated")

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("pool closed")

// StartError says why a transform process could not be started or did not
// stay up long enough to serve: the program, the cause, how it exited and
// the last lines it wrote to stderr. While the pool backs off after such a
// failure, Acquire returns the last StartError at once instead of queueing.
type StartError struct {
	Pool string
	Path string // program as resolved (or argv[0] when it could not be resolved)
	// Err is the cause: the exec error (not found, permission denied), the
	// readiness check's error, or an early exit.
	Err error
	// Exit describes how the process ended ("exit status 3", "signal:
	// killed"); empty when it never ran.
	Exit string
	// Stderr holds the last lines the process wrote to stderr.
	Stderr []string
	// Failures counts consecutive start failures; RetryAt is when the pool
	// will try again.
	Failures int
	RetryAt  time.Time
}

// errEarlyExit is the cause of a StartError for a process that exited before
// it served anything.
var errEarlyExit = errors.New("exited right after start")

// errNotInPath is the cause when a bare command name is not in PATH.
var errNotInPath = child.ErrNotInPath

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pool %q: cannot start %s: %v", e.Pool, e.Path, e.Err)
	if e.Exit != "" {
		fmt.Fprintf(&b, " (%s)", e.Exit)
	}
	if tail := StderrSummary(e.Stderr); len(tail) > 0 {
		b.WriteString(", stderr: ")
		for i, l := range tail {
			if i > 0 {
				b.WriteString(" | ")
			}
			fmt.Fprintf(&b, "%q", l)
		}
	}
	if hint := e.hint(); hint != "" {
		b.WriteString("; ")
		b.WriteString(hint)
	}
	if !e.RetryAt.IsZero() {
		d := time.Until(e.RetryAt).Round(time.Millisecond)
		if d < 0 {
			d = 0
		}
		fmt.Fprintf(&b, "; attempt %d failed, next in %s", e.Failures, d)
	}
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

// Hint says what to do about the most common causes; "" when there is no
// advice.
func (e *StartError) Hint() string { return e.hint() }

func (e *StartError) hint() string {
	switch {
	case errors.Is(e.Err, syscall.ENOENT), errors.Is(e.Err, exec.ErrNotFound), errors.Is(e.Err, errNotInPath):
		return "check the command path"
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		return "check that the bridge's user may execute it"
	case errors.Is(e.Err, errEarlyExit):
		return "run the command by hand to see why"
	}
	return ""
}

// StderrSummary picks the stderr lines an error message quotes: the last
// three that are not blank, and before them, when it is not among them,
// the first line that names an error. Runtimes print the cause first and
// then a stack trace and a banner (node ends with its version), so the
// last lines alone rarely say what went wrong.
func StderrSummary(lines []string) []string {
	var kept []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			kept = append(kept, l)
		}
	}
	if len(kept) <= 3 {
		return kept
	}
	last := kept[len(kept)-3:]
	for i, l := range kept[:len(kept)-3] {
		if namesError(l) {
			out := []string{l}
			if i < len(kept)-4 {
				out = append(out, "…")
			}
			return append(out, last...)
		}
	}
	return last
}

// namesError reports a line that looks like a runtime's statement of a
// failure: "Error: …", "panic: …", "Fatal …", "KeyError: …".
func namesError(l string) bool {
	l = strings.ToLower(l)
	for _, w := range []string{"error", "exception", "panic", "fatal"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}
