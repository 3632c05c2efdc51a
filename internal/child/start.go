package child

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec says what to run and how.
type Spec struct {
	// Path is the program, already resolved (see ResolveProgram); Args is
	// its whole argv, Args[0] included.
	Path string
	Args []string
	// Env is the whole environment of the process; nil means an empty
	// one, never the bridge's.
	Env []string
	// Dir is the working directory; empty means the bridge's.
	Dir string
	// Cred runs the process under another identity (see Credential); nil
	// keeps the bridge's.
	Cred *syscall.Credential
	// KillGrace is the time between SIGTERM and SIGKILL when the process
	// is stopped; at least one millisecond is used.
	KillGrace time.Duration
	// Log receives the stderr lines and the kill escalation, with the pid
	// added; nil means slog.Default().
	Log *slog.Logger
}

// Proc is one started process. Its methods are safe for concurrent use.
type Proc struct {
	pid     int
	os      *os.Process
	stdin   *os.File
	stdout  *os.File
	stderr  *StderrReader
	errFile *os.File // read end of stderr, owned by the drain
	drained chan struct{}
	grace   time.Duration
	log     *slog.Logger
	tail    stderrTail

	// sigMu serialises signals with the reap, so a signal never reaches a
	// process group whose leader pid was already reused.
	sigMu  sync.Mutex
	reaped bool

	stopOnce sync.Once
	stopped  atomic.Bool // Stop, Kill or KillNow was called
	// escalate sends SIGKILL when the grace after SIGTERM has passed;
	// stopped at the reap.
	escalate  atomic.Pointer[time.Timer]
	filesOnce sync.Once

	done    chan struct{}
	exit    string // how it ended; written before done is closed
	exitErr error
	// ours: Stop, Kill or KillNow came before the exit was seen. Written
	// before done is closed.
	ours bool
}

// Start starts the process and returns once it runs, or the error that
// kept it from starting (pipes, or os.StartProcess's *os.PathError).
//
// Why a locked thread: the parent-death signal (Pdeathsig) is delivered
// when the *thread* that forked the child exits, not when the bridge
// process does. The Go runtime terminates a thread when a goroutine that
// locked it exits without unlocking, which any code (a library, a
// syscall-heavy goroutine, a caller of Start) may do; a child forked from
// such a thread would be SIGKILLed for no reason. So the fork happens on a
// goroutine of its own that locks its thread and keeps it locked, blocked
// in waitid, until the child has been reaped: nothing else runs on that
// thread, so it only goes away with the bridge itself, and then the kernel
// kills the child.
func Start(s *Spec) (*Proc, error) {
	p := &Proc{grace: max(s.KillGrace, time.Millisecond), log: s.Log, drained: make(chan struct{}), done: make(chan struct{})}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.tail.init(StderrTailLines)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := p.fork(s)
		started <- err
		if err == nil {
			p.reap()
		}
		// The child is reaped: the thread may serve other goroutines again.
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proc) fork(s *Spec) error {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func(what string) (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("%s pipe: %w", what, err)
		}
		files = append(files, r, w)
		return r, w, nil
	}
	inR, inW, err := pipe("stdin")
	if err != nil {
		return err
	}
	outR, outW, err := pipe("stdout")
	if err != nil {
		closeAll()
		return err
	}
	errR, errW, err := pipe("stderr")
	if err != nil {
		closeAll()
		return err
	}
	if p.stderr, err = NewStderrReader(errR); err != nil {
		closeAll()
		return fmt.Errorf("stderr pipe: %w", err)
	}
	env := s.Env
	if env == nil {
		env = []string{} // nil would hand the child the bridge's environment
	}
	attr := &os.ProcAttr{
		Dir:   s.Dir,
		Env:   env,
		Files: []*os.File{inR, outW, errW},
		Sys: &syscall.SysProcAttr{
			// Its own process group: terminal signals aimed at the
			// bridge's group do not reach it (the bridge drains first),
			// and a kill reaches its helpers too.
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: s.Cred,
		},
	}
	osProc, err := os.StartProcess(s.Path, s.Args, attr)
	// The child has its copies; ours would keep the pipes open for ever.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return err
	}
	p.pid, p.os = osProc.Pid, osProc
	p.stdin, p.stdout, p.errFile = inW, outR, errR
	p.log = p.log.With("pid", p.pid)
	go p.drainStderr()
	return nil
}

// reap runs on the locked thread for the process's whole life.
func (p *Proc) reap() {
	// Learn of the exit without reaping, so the pid (and with it the group
	// id) stays reserved while the rest of the group is swept.
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
	p.ours = p.stopped.Load()
	if t := p.escalate.Load(); t != nil {
		t.Stop()
	}
	p.sigMu.Lock()
	// Helpers the program started die with it rather than becoming
	// orphans; they also hold the stderr pipe open.
	_ = unix.Kill(-p.pid, unix.SIGKILL)
	p.reaped = true
	p.sigMu.Unlock()
	st, err := p.os.Wait()
	if err != nil {
		p.exit, p.exitErr = "wait: "+err.Error(), err
	} else {
		p.exit = st.String()
		if !st.Success() {
			p.exitErr = errors.New(p.exit)
		}
	}
	// The whole group is dead: what it wrote to stderr is in the pipe. A
	// helper that left the group may still hold the pipe open, so the
	// drain stops once the pipe is empty instead of waiting for EOF.
	p.stderr.Exited()
	<-p.drained
	p.errFile.Close()
	close(p.done)
}
