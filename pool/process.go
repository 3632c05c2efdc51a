package pool

import (
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
)

// procState is where a process is in its life; guarded by Pool.mu.
type procState int

const (
	stateStarting procState = iota // forked, readiness not yet confirmed
	stateIdle                      // in the idle list, ready to lease
	stateBusy                      // leased to a caller
	stateRetiring                  // being killed; no longer counted
)

// Process is one running transform. A caller holds it between Acquire and
// Release and talks to it over Stdin and Stdout; it must not keep either
// after Release. The process itself (start, signals, reap, stderr) is a
// *child.Proc; Process adds what the pool keeps of a lease.
type Process struct {
	pool    *Pool
	proc    *child.Proc
	pid     int
	path    string
	started time.Time

	requests atomic.Int64
	retire   atomic.Bool // Retire was called

	// done is closed after proc's Done, once the pool has taken note of
	// the exit.
	done chan struct{}

	// Guarded by Pool.mu.
	state       procState
	leased      bool // has been handed to a caller
	exitSeen    bool // exited() ran: the process is dead and reaped
	maxRequests int64
	retireAt    time.Time
	idleSince   time.Time
}

// Pid returns the process id, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Stdin returns the write end of the process's stdin pipe. It is an
// *os.File so the filter layer can splice(2) into it; it is non-blocking
// and registered with the runtime poller, so deadlines work. The pool owns
// it: callers must not close it (Stop does).
func (p *Process) Stdin() *os.File { return p.proc.Stdin() }

// Stdout returns the read end of the process's stdout pipe, like Stdin
// non-blocking with deadlines (Release clears them). The pool closes it when
// the process is retired.
func (p *Process) Stdout() *os.File { return p.proc.Stdout() }

// StderrTail returns copies of the last lines the process wrote to stderr.
func (p *Process) StderrTail() []string { return p.proc.StderrTail() }

// Done is closed once the process has exited, been reaped and its stderr
// drained, and the pool has taken note (counters, back-off, replacement).
func (p *Process) Done() <-chan struct{} { return p.done }

// Requests returns the number of completed leases.
func (p *Process) Requests() int64 { return p.requests.Load() }

// Retire asks for the process to be replaced when it is released rather
// than reused, without counting a failure: for a transform that announced
// it will exit (a reply with Connection: close). Release then retires it
// even with reusable=true.
func (p *Process) Retire() { p.retire.Store(true) }

// Started returns when the process was started.
func (p *Process) Started() time.Time { return p.started }

// Exited describes how the process ended ("exit status 1", "signal:
// killed"); empty while it runs.
func (p *Process) Exited() string {
	select {
	case <-p.done:
		return p.proc.Exited()
	default:
		return ""
	}
}

// Stop starts ending the process and returns at once: it closes stdin (a
// well-behaved transform exits on EOF), sends SIGTERM to the process group
// and arranges for SIGKILL to follow after KillGrace. Done is closed when
// the process is gone. It is idempotent and safe to call from several
// goroutines, with Kill too. Callers use it where they must not wait for a
// process that takes its time to die (a request whose reply is complete,
// or that failed); the pool reaps it.
func (p *Process) Stop() { p.proc.Stop() }

// Kill is Stop, then waits until the process has exited and been reaped.
func (p *Process) Kill() {
	p.proc.Stop()
	<-p.done
}

// Exiting reports whether the process has exited or is exiting (the kernel
// is tearing it down, which is when its pipes close). A process whose
// stdout ended while it does not exit closed its stdout and runs on.
func (p *Process) Exiting() bool { return p.proc.Exiting() }

// start launches one process and returns once it runs (or failed to exec).
func (pl *Pool) start() (*Process, error) {
	l := pl.launch
	if l.pathErr != nil {
		return nil, l.pathErr
	}
	proc, err := child.Start(&child.Spec{
		Path: l.path, Args: l.argv, Env: l.env, Dir: l.dir, Cred: l.cred,
		KillGrace: pl.cfg.KillGrace, Log: pl.log,
	})
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the StartError already
		}
		return nil, err
	}
	p := &Process{
		pool:    pl,
		proc:    proc,
		pid:     proc.Pid(),
		path:    l.path,
		started: time.Now(),
		done:    make(chan struct{}),
	}
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		<-proc.Done()
		pl.exited(p)
		close(p.done)
	}()
	return p, nil
}
