// Package pool runs long-lived transform processes and leases them to
// callers, one exchange at a time. It owns spawning, readiness, leasing,
// recycling, crash detection, start-up back-off, killing and the draining
// of stderr; it knows nothing of what travels over the pipes (package
// filter frames the messages).
//
// # Flow
//
// A Pool is built by New from a Config. Callers take a *Process with
// Acquire, write a message to Process.Stdin and read the reply from
// Process.Stdout (both *os.File pipes, so the filter layer can splice(2)
// them), then hand the process back with Release. stderr never reaches the
// caller: the pool drains it continuously, line by line, into the
// structured log (attributes pool and pid, rate limited) and keeps the last
// lines for error messages (Process.StderrTail).
//
// # Process lifecycle
//
//	starting ──ready──▶ idle ◀──Release(reusable)── busy
//	   │                 │  ──────Acquire──────────▶ │
//	   │ exec error,     │ exited, idle timeout,     │ Release(not reusable),
//	   │ Ready failed,   │ lifetime                  │ limits reached, exited
//	   ▼ exited at once  ▼                           ▼
//	 start failure    retiring ──Kill──▶ gone ◀───── retiring
//
// A process is starting from the fork until its optional Ready check has
// passed (bounded by StartTimeout). It is then handed to the longest
// waiting caller or put on the idle list. Every process has a goroutine
// blocked in waitid(2) for its whole life, so an exit is noticed when it
// happens, not at the next lease: an idle process that dies is removed and
// replaced at once (Min is kept); a leased one that dies shows as EOF on
// its stdout and a closed Done channel, and is replaced when the caller
// releases it.
//
// # Leases and the queue
//
// Acquire takes the most recently used idle process (so the others age
// towards IdleTimeout), or starts one when fewer than Max exist, or waits.
// Waiters are served strictly first come, first served: a released or
// freshly started process goes to the head of the queue. At most QueueSize
// callers wait; one more, or a wait longer than QueueTimeout, gets
// ErrSaturated, which the caller turns into 503 with Retry-After. Release
// with reusable=false (timeout, protocol error: the pipe state is unknown)
// kills the process and starts a replacement.
//
// # Recycling
//
// A process is retired after MaxRequests leases or MaxLifetime, each varied
// by ±10% per process so that a pool started at once does not restart at
// once; after a lease when the resident memory of the process itself (not
// its helpers; /proc/PID/statm) exceeds MaxRSS; above Min, after
// IdleTimeout without a lease; and after a lease on which the caller called
// Process.Retire (a reply with Connection: close). Stats counts each reason.
//
// # Crashes and start-up failures
//
// A start fails when the program cannot be executed (not found, permission
// denied), when Ready fails or times out, or when the process exits on its
// own within a second of its start before completing a lease (bad flags, a
// missing file: exec succeeded but the program cannot run). A death during
// the first lease is first taken for a crash, since the request may have
// caused it and a retry deserves a fresh process; a second one in a row is
// a start failure when the process left its message unread (it could not
// even read it). One that read its message and died crashed while serving
// it, even when every request makes it crash: that is reported as a crash
// (502), not as a start failure (503). A clean exit (status 0) during the first lease is
// neither: a transform may answer once with Connection: close and exit.
// Failures back off exponentially from 100ms to 30s, with one probe start
// at a time; a served lease resets the back-off. The *StartError says in one sentence
// which program failed, why, how it exited and what it last wrote to
// stderr. While the pool backs off and has no live process to wait for,
// Acquire returns that error at once (the caller answers 503) instead of
// making every caller wait for the queue timeout. A later exit is a crash:
// counted, logged with the stderr tail, and replaced without back-off.
//
// # Killing
//
// Process.Stop closes stdin (a well-behaved transform exits on EOF), sends
// SIGTERM to the process group and SIGKILL to the group when KillGrace has
// passed, and returns at once; Process.Kill does the same and waits for
// the process to be reaped. Both are idempotent. Release never waits for a
// process it retires: a transform that takes the whole grace to die holds
// no request.
// Every process leads its own process group (Setpgid), so helpers it starts
// are killed with it, and when the leader exits the rest of its group is
// killed before the leader is reaped (the pid, and so the group id, cannot
// be reused in between). Close kills every process, idle and leased, and
// waits for them and for every goroutine of the pool.
//
// # No orphans
//
// If the bridge itself dies (even by SIGKILL, when no code of ours runs),
// the kernel kills each transform through the parent-death signal
// (Pdeathsig = SIGKILL). Linux sends that signal when the thread that forked
// the child exits, not when the process does, and the Go runtime may end a
// thread during the process's life; so each process is started
// (internal/child, which one-shot transforms use too) from a goroutine
// that locks its OS thread and keeps it locked, blocked waiting
// for the child, until the child is reaped. No other goroutine can run on
// that thread, so it ends only with the bridge. The signal reaches the
// transform itself, not helpers it forked: those lose their stdin writer
// (EOF) with the bridge, and must exit on it or arrange their own
// parent-death signal. While the bridge runs, helpers die with their
// transform through the group kill.
//
// The cost is one OS thread per live process, blocked in waitid(2).
package pool
