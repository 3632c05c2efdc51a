package pool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
	"golang.org/x/sys/unix"
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
// after Release.
type Process struct {
	pool    *Pool
	pid     int
	path    string
	osProc  *os.Process
	stdin   *os.File
	stdout  *os.File
	stderr  *os.File // read end, owned by the drain goroutine
	started time.Time

	tail stderrTail

	// sigMu serialises group signals with reaping, so a signal never
	// reaches a process group whose leader pid was already reused.
	sigMu  sync.Mutex
	reaped bool

	killOnce sync.Once
	killed   atomic.Bool // Stop, Kill or forceKill was called
	// escalate sends SIGKILL when KillGrace has passed since SIGTERM;
	// stopped once the process is reaped.
	escalate  atomic.Pointer[time.Timer]
	filesOnce sync.Once
	requests  atomic.Int64
	retire    atomic.Bool // Retire was called

	done    chan struct{}
	exit    string // how it ended; written before done is closed
	exitErr error
	// ours: the pool had started killing it before its exit was seen, so
	// the exit is not a crash. Written before done is closed.
	ours bool

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
// it: callers must not close it (Kill does).
func (p *Process) Stdin() *os.File { return p.stdin }

// Stdout returns the read end of the process's stdout pipe, like Stdin
// non-blocking with deadlines (Release clears them). The pool closes it when
// the process is retired.
func (p *Process) Stdout() *os.File { return p.stdout }

// StderrTail returns copies of the last lines the process wrote to stderr.
func (p *Process) StderrTail() []string { return p.tail.lines() }

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
		return p.exit
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
func (p *Process) Stop() {
	p.killOnce.Do(func() {
		p.killed.Store(true)
		_ = p.stdin.Close()
		select {
		case <-p.done:
			return
		default:
		}
		p.signalGroup(unix.SIGTERM)
		grace := p.pool.cfg.KillGrace
		p.escalate.Store(time.AfterFunc(grace, func() {
			p.sigMu.Lock()
			reaped := p.reaped
			p.sigMu.Unlock()
			if reaped {
				return
			}
			p.pool.log.Warn("transform ignored SIGTERM, killing its process group", "pid", p.pid, "grace", grace)
			p.signalGroup(unix.SIGKILL)
		}))
	})
}

// Kill is Stop, then waits until the process has exited and been reaped.
func (p *Process) Kill() {
	p.Stop()
	<-p.done
}

// Exiting reports whether the process has exited or is exiting (the kernel
// is tearing it down, which is when its pipes close). A process whose
// stdout ended while it does not exit closed its stdout and runs on.
func (p *Process) Exiting() bool {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.reaped {
		return true
	}
	// The pid cannot be reused before the reap, which sigMu holds off.
	st, ok := readStat(p.pid)
	return !ok || st.state == 'Z' || st.state == 'X' || st.flags&pfExiting != 0
}

// forceKill sends SIGKILL to the group at once, for Close past its deadline.
func (p *Process) forceKill() {
	p.killed.Store(true)
	p.signalGroup(unix.SIGKILL)
}

func (p *Process) signalGroup(sig syscall.Signal) {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.reaped {
		return
	}
	_ = unix.Kill(-p.pid, sig)
	// The leader too, in case it moved itself to another group.
	_ = unix.Kill(p.pid, sig)
}

// closeFiles releases the parent's pipe ends once nobody uses them.
func (p *Process) closeFiles() {
	p.filesOnce.Do(func() {
		_ = p.stdin.Close()
		_ = p.stdout.Close()
	})
}

// rss returns the resident set size in bytes, from /proc/PID/statm.
func (p *Process) rss() (int64, error) {
	var buf [128]byte
	f, err := os.Open("/proc/" + strconv.Itoa(p.pid) + "/statm")
	if err != nil {
		return 0, err
	}
	n, err := f.Read(buf[:])
	f.Close()
	if err != nil {
		return 0, err
	}
	// statm: size resident shared ... in pages.
	b := buf[:n]
	i := 0
	for i < len(b) && b[i] != ' ' {
		i++
	}
	i++
	var pages int64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		pages = pages*10 + int64(b[i]-'0')
	}
	return pages * int64(os.Getpagesize()), nil
}

// pfExiting is the kernel's PF_EXITING task flag: set when the process
// starts to exit, before its files are closed.
const pfExiting = 0x4

// procStat is what the pool reads of /proc/PID/stat.
type procStat struct {
	state      byte
	ppid, pgrp int
	flags      uint64
	comm       string
}

// readStat reads /proc/PID/stat; false when the process is gone.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	// comm may hold spaces and parentheses: it ends at the last ')'.
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return procStat{}, false
	}
	// state ppid pgrp session tty_nr tpgid flags ...
	f := strings.Fields(s[close+1:])
	if len(f) < 7 || len(f[0]) == 0 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp, flags: flags, comm: s[open+1 : close]}, true
}

type startResult struct {
	proc *Process
	err  error
}

// start launches one process and returns once it runs (or failed to exec).
//
// Why a locked thread: the parent-death signal (Pdeathsig) is delivered
// when the *thread* that forked the child exits, not when the bridge
// process does. The Go runtime terminates a thread when a goroutine that
// locked it exits without unlocking, which any code (a library, a
// syscall-heavy goroutine) may do; a child forked from such a thread would
// be SIGKILLed for no reason. So the fork happens on a goroutine that locks
// its thread and keeps it locked, blocked in waitid, until the child has
// been reaped: nothing else can run on that thread, so it only goes away
// with the bridge itself, and then the kernel kills the child.
func (pl *Pool) start() (*Process, error) {
	res := make(chan startResult, 1)
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		runtime.LockOSThread()
		proc, err := pl.fork()
		res <- startResult{proc, err}
		if err == nil {
			proc.wait()
		}
		// The child is reaped: the thread may serve other goroutines again.
		runtime.UnlockOSThread()
	}()
	r := <-res
	return r.proc, r.err
}

func (pl *Pool) fork() (*Process, error) {
	l := pl.launch
	if l.pathErr != nil {
		return nil, l.pathErr
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	attr := &os.ProcAttr{
		Dir:   l.dir,
		Env:   l.env,
		Files: []*os.File{inR, outW, errW},
		Sys: &syscall.SysProcAttr{
			// Its own process group: terminal signals aimed at the
			// bridge's group do not reach it (the bridge drains first),
			// and Kill reaches its helpers too.
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: l.cred,
		},
	}
	osProc, err := os.StartProcess(l.path, l.argv, attr)
	// The child has its copies; ours would keep the pipes open forever.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the StartError already
		}
		return nil, err
	}
	p := &Process{
		pool:    pl,
		pid:     osProc.Pid,
		path:    l.path,
		osProc:  osProc,
		stdin:   inW,
		stdout:  outR,
		stderr:  errR,
		started: time.Now(),
		done:    make(chan struct{}),
	}
	p.tail.init(stderrTailLines)
	return p, nil
}

// wait runs on the locked thread for the process's whole life.
func (p *Process) wait() {
	drained := make(chan struct{})
	stderr, serr := child.NewStderrReader(p.stderr)
	p.pool.wg.Add(1)
	go func() {
		defer p.pool.wg.Done()
		defer close(drained)
		if serr != nil {
			p.pool.log.Error("cannot read transform stderr", "pid", p.pid, "err", serr)
			return
		}
		p.drainStderr(stderr)
	}()

	// Learn of the exit without reaping, so the pid (and with it the group
	// id) stays reserved while the rest of the group is swept.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.ours = p.killed.Load()
	if t := p.escalate.Load(); t != nil {
		t.Stop()
	}
	p.sigMu.Lock()
	// Helpers the transform started die with it rather than becoming
	// orphans; they also hold the stderr pipe open.
	_ = unix.Kill(-p.pid, unix.SIGKILL)
	p.reaped = true
	p.sigMu.Unlock()
	st, err := p.osProc.Wait()
	if err != nil {
		p.exit, p.exitErr = "wait: "+err.Error(), err
	} else {
		p.exit = st.String()
		if !st.Success() {
			p.exitErr = errors.New(p.exit)
		}
	}
	// The whole group is dead: what it wrote to stderr is in the pipe.
	// A helper that left the group may still hold the pipe open, so the
	// drain stops once the pipe is empty instead of waiting for EOF.
	stderr.Exited()
	<-drained
	p.stderr.Close()
	p.pool.exited(p)
	close(p.done)
}

const (
	stderrTailLines = 20
	stderrLineMax   = 2048 // longer lines are cut, the rest skipped
	stderrLogRate   = 50   // lines per second logged; the tail keeps all
	stderrLogBurst  = 200
)

// drainStderr reads stderr line by line as fast as the process writes it,
// so a chatty transform never blocks on a full pipe. Every line goes to the
// tail; logging is rate limited so a flood cannot slow the drain down to
// the speed of the log sink. The log says when the limit starts dropping
// lines, at the moment it does (a flood that then stops would otherwise
// go unmentioned until the process exits), and how many it dropped once
// logging resumes or the process ends.
func (p *Process) drainStderr(stderr io.Reader) {
	r := bufio.NewReaderSize(stderr, stderrLineMax)
	log := p.pool.log.With("pid", p.pid)
	tokens := float64(stderrLogBurst)
	last := time.Now()
	suppressed := 0
	skipping := false
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			full := line[len(line)-1] == '\n'
			if !skipping {
				text := line
				if full {
					text = text[:len(text)-1]
				}
				if n := len(text); n > 0 && text[n-1] == '\r' {
					text = text[:n-1]
				}
				p.tail.add(text)
				now := time.Now()
				tokens = min(float64(stderrLogBurst), tokens+now.Sub(last).Seconds()*stderrLogRate)
				last = now
				if tokens >= 1 {
					tokens--
					if suppressed > 0 {
						log.Warn("transform stderr lines not logged (rate limit)", "lines", suppressed)
						suppressed = 0
					}
					if full {
						log.Info("transform stderr", "line", string(text))
					} else {
						log.Info("transform stderr", "line", string(text), "truncated", true)
					}
				} else {
					if suppressed == 0 {
						log.Warn("transform stderr rate limit reached, lines dropped from the log", "limit_per_second", stderrLogRate)
					}
					suppressed++
				}
			}
			skipping = !full
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	if suppressed > 0 {
		log.Warn("transform stderr lines not logged (rate limit)", "lines", suppressed)
	}
}

// stderrTail is a ring of the last lines, reusing its buffers.
type stderrTail struct {
	mu    sync.Mutex
	buf   [][]byte
	next  int
	count int
}

func (t *stderrTail) init(n int) { t.buf = make([][]byte, n) }

func (t *stderrTail) add(line []byte) {
	t.mu.Lock()
	t.buf[t.next] = append(t.buf[t.next][:0], line...)
	t.next = (t.next + 1) % len(t.buf)
	if t.count < len(t.buf) {
		t.count++
	}
	t.mu.Unlock()
}

func (t *stderrTail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, t.count)
	start := (t.next - t.count + len(t.buf)) % len(t.buf)
	for i := range t.count {
		out = append(out, string(t.buf[(start+i)%len(t.buf)]))
	}
	return out
}
