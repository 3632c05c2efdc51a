package child

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Pid returns the process id, which is also its process group id.
func (p *Proc) Pid() int { return p.pid }

// Stdin returns the write end of the process's stdin pipe. It is an
// *os.File so that callers can splice(2) into it; it is non-blocking and
// registered with the runtime poller, so deadlines work. Stop closes it;
// so does CloseFiles.
func (p *Proc) Stdin() *os.File { return p.stdin }

// Stdout returns the read end of the process's stdout pipe, like Stdin
// non-blocking with deadlines. CloseFiles closes it.
func (p *Proc) Stdout() *os.File { return p.stdout }

// StderrTail returns copies of the last lines the process wrote to stderr.
func (p *Proc) StderrTail() []string { return p.tail.lines() }

// Done is closed once the process has exited, the rest of its group has
// been killed, it has been reaped and its stderr drained.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited describes how the process ended ("exit status 1", "signal:
// killed"); empty while it runs.
func (p *Proc) Exited() string {
	select {
	case <-p.done:
		return p.exit
	default:
		return ""
	}
}

// Exit returns, once Done is closed, how the process ended and an error
// unless it exited with status 0; before that, "" and nil.
func (p *Proc) Exit() (string, error) {
	select {
	case <-p.done:
		return p.exit, p.exitErr
	default:
		return "", nil
	}
}

// Stopped reports, once Done is closed, whether Stop, Kill or KillNow was
// called before the exit was seen: an end the caller asked for, not a
// crash.
func (p *Proc) Stopped() bool {
	select {
	case <-p.done:
		return p.ours
	default:
		return false
	}
}

// Stop starts ending the process and returns at once: it closes stdin (a
// well-behaved program exits on EOF), sends SIGTERM to the process group
// and arranges for SIGKILL to follow after the kill grace. Done is closed
// when the process is gone. It is idempotent and safe to call from several
// goroutines, with Kill too. Callers use it where they must not wait for a
// process that takes its time to die.
func (p *Proc) Stop() {
	p.stopOnce.Do(func() {
		p.stopped.Store(true)
		_ = p.stdin.Close()
		select {
		case <-p.done:
			return
		default:
		}
		p.signalGroup(unix.SIGTERM)
		p.escalate.Store(time.AfterFunc(p.grace, func() {
			p.sigMu.Lock()
			reaped := p.reaped
			p.sigMu.Unlock()
			if reaped {
				return
			}
			p.log.Warn("transform ignored SIGTERM, killing its process group", "grace", p.grace)
			p.signalGroup(unix.SIGKILL)
		}))
	})
}

// Kill is Stop, then waits until Done is closed.
func (p *Proc) Kill() {
	p.Stop()
	<-p.done
}

// KillNow sends SIGKILL to the process group at once, without a grace and
// without waiting: for a shutdown whose deadline has passed.
func (p *Proc) KillNow() {
	p.stopped.Store(true)
	p.signalGroup(unix.SIGKILL)
}

func (p *Proc) signalGroup(sig syscall.Signal) {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.reaped {
		return
	}
	_ = unix.Kill(-p.pid, sig)
	// The leader too, in case it moved itself to another group.
	_ = unix.Kill(p.pid, sig)
}

// CloseFiles closes the parent's ends of stdin and stdout, once nobody
// uses them any more. It is idempotent.
func (p *Proc) CloseFiles() {
	p.filesOnce.Do(func() {
		_ = p.stdin.Close()
		_ = p.stdout.Close()
	})
}

// Exiting reports whether the process has exited or is exiting (the kernel
// is tearing it down, which is when its pipes close). A process whose
// stdout ended while it does not exit closed its stdout and runs on.
func (p *Proc) Exiting() bool {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.reaped {
		return true
	}
	// The pid cannot be reused before the reap, which sigMu holds off.
	st, ok := ReadStat(p.pid)
	return !ok || st.State == 'Z' || st.State == 'X' || st.Flags&pfExiting != 0
}

// RSS returns the resident set size in bytes, from /proc/PID/statm.
func (p *Proc) RSS() (int64, error) {
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

// Stat is what the package reads of /proc/PID/stat.
type Stat struct {
	State      byte
	PPid, Pgrp int
	Flags      uint64
	Comm       string
}

// ReadStat reads /proc/PID/stat; false when the process is gone.
func ReadStat(pid int) (Stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, false
	}
	s := string(b)
	// comm may hold spaces and parentheses: it ends at the last ')'.
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return Stat{}, false
	}
	// state ppid pgrp session tty_nr tpgid flags ...
	f := strings.Fields(s[close+1:])
	if len(f) < 7 || len(f[0]) == 0 {
		return Stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return Stat{State: f[0][0], PPid: ppid, Pgrp: pgrp, Flags: flags, Comm: s[open+1 : close]}, true
}
