package pool

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Pool keeps long-lived processes of one command and leases them out.
type Pool struct {
	cfg    Config
	launch *launch
	log    *slog.Logger
	tick   time.Duration // maintenance period

	// ctx bounds readiness checks; cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{} // wakes the maintainer; buffered 1
	quit   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	idle     []*Process // least recently released first
	busy     int
	starting int
	all      map[*Process]struct{} // started and not yet finalised
	waiters  list.List             // of *waiter, FIFO
	// Consecutive start failures and the back-off they imply.
	failures int
	// firstLeaseDeaths counts consecutive processes that died on their own
	// during their first lease; from the second one on, that is a start
	// failure too (see exited).
	firstLeaseDeaths int
	backoffUntil     time.Time
	lastStartErr     *StartError
	stats            Stats
}

type waiter struct {
	ch   chan waitResult // buffered 1; receives exactly one result
	elem *list.Element   // nil once removed from the queue; guarded by Pool.mu
}

type waitResult struct {
	proc *Process
	err  error
}

// New validates cfg, starts Min processes and waits until each has either
// come up or failed. Start failures do not fail New: they are logged, the
// pool backs off and Acquire reports them, so a transform installed later is
// picked up without a restart.
func New(cfg Config) (*Pool, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l, err := c.launch()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:    c,
		launch: l,
		log:    c.Logger.With("pool", c.Name),
		kick:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		all:    make(map[*Process]struct{}),
		tick:   time.Second,
	}
	for _, d := range []time.Duration{c.IdleTimeout, c.MaxLifetime} {
		if d > 0 {
			p.tick = min(p.tick, max(d/4, 5*time.Millisecond))
		}
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())

	var initial sync.WaitGroup
	p.mu.Lock()
	for range c.Min {
		initial.Add(1)
		p.spawnLocked(&initial)
	}
	p.mu.Unlock()
	initial.Wait()

	p.wg.Add(1)
	go p.maintainLoop()
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Acquire leases a process. It takes an idle one at once, or starts one
// when fewer than Max exist, or waits in a FIFO queue for one to be
// released. It returns ErrSaturated (wrapped) when the queue is full or the
// wait exceeds QueueTimeout, the last *StartError at once when starts are
// failing and no process is alive to wait for, ErrClosed after Close, and
// ctx.Err() when ctx ends first.
func (p *Pool) Acquire(ctx context.Context) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.stats.Acquires++
	if n := len(p.idle); n > 0 {
		// Most recently used first: the others age towards IdleTimeout.
		proc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		proc.state = stateBusy
		proc.leased = true
		p.busy++
		p.mu.Unlock()
		return proc, nil
	}
	now := time.Now()
	if p.failures > 0 && now.Before(p.backoffUntil) && p.busy == 0 && p.starting == 0 {
		err := p.lastStartErr
		p.mu.Unlock()
		return nil, err
	}
	if p.waiters.Len() >= p.starting && len(p.idle)+p.busy+p.starting < p.cfg.Max && p.canStartLocked(now) {
		p.spawnLocked(nil)
	}
	if p.waiters.Len() >= p.cfg.QueueSize+p.starting {
		p.stats.Saturated++
		p.mu.Unlock()
		return nil, fmt.Errorf("pool %q: all %d processes busy and %d callers queued: %w", p.cfg.Name, p.cfg.Max, p.cfg.QueueSize, ErrSaturated)
	}
	w := &waiter{ch: make(chan waitResult, 1)}
	w.elem = p.waiters.PushBack(w)
	p.mu.Unlock()
	defer traceWait(ctx, now)

	timer := time.NewTimer(p.cfg.QueueTimeout)
	defer timer.Stop()
	var r waitResult
	select {
	case r = <-w.ch:
	case <-timer.C:
		p.mu.Lock()
		if w.elem != nil {
			p.waiters.Remove(w.elem)
			w.elem = nil
			p.stats.Saturated++
			p.recordWaitLocked(now)
			p.mu.Unlock()
			return nil, fmt.Errorf("pool %q: no process free within %s: %w", p.cfg.Name, p.cfg.QueueTimeout, ErrSaturated)
		}
		p.mu.Unlock()
		r = <-w.ch // handed over just now: take it
	case <-ctx.Done():
		p.mu.Lock()
		if w.elem != nil {
			p.waiters.Remove(w.elem)
			w.elem = nil
			p.recordWaitLocked(now)
			p.mu.Unlock()
			return nil, ctx.Err()
		}
		p.mu.Unlock()
		if r = <-w.ch; r.proc != nil {
			p.putBack(r.proc)
		}
		return nil, ctx.Err()
	}
	p.mu.Lock()
	p.recordWaitLocked(now)
	p.mu.Unlock()
	return r.proc, r.err
}

func (p *Pool) recordWaitLocked(since time.Time) {
	p.stats.Waits++
	p.stats.WaitTime += time.Since(since)
}

// Release returns a leased process. With reusable=false (the exchange
// failed or timed out, the protocol state is unknown) the process is killed
// and replaced. A reusable process is recycled instead when it reached its
// request count, lifetime or RSS limit, and otherwise goes to the longest
// waiting caller or the idle list. A process that died while leased is
// replaced here.
func (p *Pool) Release(proc *Process, reusable bool) {
	var rss int64
	if reusable {
		// The next lease must not inherit the caller's deadlines.
		_ = proc.Stdin().SetWriteDeadline(time.Time{})
		_ = proc.Stdout().SetReadDeadline(time.Time{})
		if p.cfg.MaxRSS > 0 {
			// Read outside the lock: it is a few syscalls.
			rss, _ = proc.proc.RSS()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if proc.state != stateBusy {
		if !p.closed {
			p.log.Error("release of a process that is not leased", "pid", proc.pid)
		}
		return
	}
	p.busy--
	n := proc.requests.Add(1)
	reason := retireNone
	if proc.exitSeen {
		reason = retireExited
	} else {
		if n == 1 && reusable {
			// It served and lives: starting works.
			p.failures = 0
			p.firstLeaseDeaths = 0
		}
		switch {
		case p.closed:
			reason = retireClosed
		case !reusable:
			reason = retireDiscarded
			p.stats.Discarded++
		case proc.retire.Load():
			reason = retireAsked
			p.stats.RecycledRetire++
		case proc.maxRequests > 0 && n >= proc.maxRequests:
			reason = retireRequests
			p.stats.RecycledRequests++
		case !proc.retireAt.IsZero() && !time.Now().Before(proc.retireAt):
			reason = retireLifetime
			p.stats.RecycledLifetime++
		case p.cfg.MaxRSS > 0 && rss > p.cfg.MaxRSS:
			reason = retireRSS
			p.stats.RecycledRSS++
		}
	}
	if reason != retireNone {
		p.retireLocked(proc, reason)
		p.replenishLocked(time.Now())
		return
	}
	p.handOutLocked(proc)
}

// putBack returns a process that was handed to a caller who gave up before
// seeing it; it does not count as a lease.
func (p *Pool) putBack(proc *Process) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if proc.state != stateBusy {
		return
	}
	p.busy--
	if p.closed {
		p.retireLocked(proc, retireClosed)
		return
	}
	if proc.exitSeen {
		p.retireLocked(proc, retireExited)
		p.replenishLocked(time.Now())
		return
	}
	p.handOutLocked(proc)
}

// handOutLocked gives a ready process to the longest waiting caller, or
// makes it idle.
func (p *Pool) handOutLocked(proc *Process) {
	if front := p.waiters.Front(); front != nil {
		w := p.waiters.Remove(front).(*waiter)
		w.elem = nil
		proc.state = stateBusy
		proc.leased = true
		p.busy++
		w.ch <- waitResult{proc: proc}
		return
	}
	proc.state = stateIdle
	proc.idleSince = time.Now()
	p.idle = append(p.idle, proc)
}

// retireReason says why a process leaves the pool; its String is what the
// debug log shows.
type retireReason uint8

const (
	retireNone      retireReason = iota
	retireExited                 // the process exited on its own
	retireClosed                 // the pool closes
	retireDiscarded              // the caller found it unfit to serve again
	retireAsked                  // it answered Connection: close
	retireRequests               // max_requests reached
	retireLifetime               // max_lifetime reached
	retireRSS                    // above max_rss
	retireIdle                   // idle past idle_timeout, above min
)

var retireNames = [...]string{"", "exited", "closed", "discarded", "retire", "requests", "lifetime", "rss", "idle"}

func (r retireReason) String() string { return retireNames[r] }

// retireLocked takes proc out of service and kills it in the background.
func (p *Pool) retireLocked(proc *Process, reason retireReason) {
	proc.state = stateRetiring
	p.log.Debug("retiring transform", "pid", proc.pid, "reason", reason.String(), "requests", proc.requests.Load())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		proc.Kill()
		proc.proc.CloseFiles()
		p.mu.Lock()
		delete(p.all, proc)
		p.mu.Unlock()
	}()
}

func (p *Pool) canStartLocked(now time.Time) bool {
	if p.failures == 0 {
		return true
	}
	// While starts fail, one probe at a time once the back-off has passed.
	return !now.Before(p.backoffUntil) && p.starting == 0
}

// replenishLocked starts processes to keep Min alive and to serve queued
// callers, within Max and the back-off.
func (p *Pool) replenishLocked(now time.Time) {
	if p.closed {
		return
	}
	live := len(p.idle) + p.busy
	need := max(p.cfg.Min-live-p.starting, p.waiters.Len()-p.starting)
	need = min(need, p.cfg.Max-live-p.starting)
	for ; need > 0 && p.canStartLocked(now); need-- {
		p.spawnLocked(nil)
	}
	if need > 0 && p.failures > 0 {
		p.failHopelessWaitersLocked()
	}
}

// failHopelessWaitersLocked fails queued callers at once when starts are
// failing and no process is alive or starting that could serve them.
func (p *Pool) failHopelessWaitersLocked() {
	if p.busy > 0 || p.starting > 0 || p.lastStartErr == nil {
		return
	}
	for e := p.waiters.Front(); e != nil; e = p.waiters.Front() {
		w := p.waiters.Remove(e).(*waiter)
		w.elem = nil
		w.ch <- waitResult{err: p.lastStartErr}
	}
}

func (p *Pool) spawnLocked(initial *sync.WaitGroup) {
	p.starting++
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if initial != nil {
			defer initial.Done()
		}
		p.spawn()
	}()
}

func (p *Pool) spawn() {
	proc, err := p.start()
	var serr *StartError
	if err != nil {
		serr = p.startError(err, nil)
	} else {
		// Known to Close from now on, so a Close past its deadline
		// SIGKILLs it even during a slow readiness check.
		p.mu.Lock()
		p.all[proc] = struct{}{}
		p.mu.Unlock()
	}
	if serr == nil && p.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.StartTimeout)
		err = p.cfg.Ready(ctx, proc)
		cancel()
		if err != nil {
			proc.Kill()
			serr = p.startError(fmt.Errorf("readiness check failed: %w", err), proc)
		}
	}
	p.started(proc, serr)
}

func (p *Pool) startError(cause error, proc *Process) *StartError {
	e := &StartError{Pool: p.cfg.Name, Path: p.launch.path, Err: cause}
	if proc != nil {
		// Callers hold Pool.mu after exited() ran, or Kill returned: the
		// exit description is written.
		e.Exit = proc.proc.Exited()
		e.Stderr = proc.StderrTail()
	}
	return e
}

// started records the outcome of a start; serr is nil on success.
func (p *Pool) started(proc *Process, serr *StartError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	now := time.Now()
	if serr == nil && proc.exitSeen {
		serr = p.startError(errEarlyExit, proc)
	}
	if serr != nil {
		if proc != nil {
			proc.state = stateRetiring
			delete(p.all, proc)
			proc.proc.CloseFiles() // it has exited
		}
		if p.closed {
			return // a readiness check cut short by Close is no failure
		}
		p.recordStartFailureLocked(serr, now)
		p.replenishLocked(now)
		p.failHopelessWaitersLocked()
		return
	}
	if p.closed {
		p.retireLocked(proc, retireClosed)
		return
	}
	p.stats.Spawned++
	p.log.Debug("transform started", "pid", proc.pid, "path", proc.path)
	proc.maxRequests = int64(jitter(float64(p.cfg.MaxRequests)))
	if p.cfg.MaxLifetime > 0 {
		proc.retireAt = proc.started.Add(time.Duration(jitter(float64(p.cfg.MaxLifetime))))
	}
	p.handOutLocked(proc)
}

func (p *Pool) recordStartFailureLocked(serr *StartError, now time.Time) {
	p.failures++
	p.stats.StartFailures++
	delay := backoffCap
	if p.failures < 20 {
		delay = min(backoffCap, backoffBase<<(p.failures-1))
	}
	p.backoffUntil = now.Add(delay)
	serr.Failures = p.failures
	serr.RetryAt = p.backoffUntil
	p.lastStartErr = serr
	p.log.Error("transform failed to start", "path", serr.Path, "cause", serr.Err.Error(),
		"exit", serr.Exit, "stderr", serr.Stderr, "failures", p.failures, "retry_in", delay)
	p.kickLocked()
}

// exited runs once a process has been reaped and its stderr drained, on its
// waiter goroutine, before Done is closed: whoever sees Done closed also
// sees the pool's accounting of the exit (back-off, replacement, counters).
func (p *Pool) exited(proc *Process) {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc.exitSeen = true
	switch proc.state {
	case stateStarting:
		return // spawn() reports it as a start failure
	case stateIdle:
		for i, q := range p.idle {
			if q == proc {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		proc.state = stateRetiring
		delete(p.all, proc)
		proc.proc.CloseFiles()
	case stateBusy:
		// The caller sees EOF on stdout and Done closed; Release replaces it.
	case stateRetiring:
		// Released as broken before its death was seen, or being retired:
		// the retiring goroutine finalises it.
	}
	how, exitErr := proc.proc.Exit()
	if proc.proc.Stopped() {
		return
	}
	now := time.Now()
	// An exit soon after the start, before any lease completed, is a start
	// failure and backs off. During the first lease it is a crash the
	// caller reports (the request may have caused it; a retry gets a fresh
	// process), unless it is the second such death in a row of a process
	// that left its input unread: then the program cannot serve at all. One
	// that read its whole message and died crashed while serving it, every
	// time if each request makes it crash; that is not a start failure. A
	// clean exit during the first lease is neither: a transform may answer
	// once with Connection: close and exit.
	early := proc.requests.Load() == 0 && now.Sub(proc.started) < earlyExitWindow
	if early && proc.leased {
		if exitErr == nil || proc.retire.Load() || !proc.inputUnread() {
			early = false
		} else {
			p.firstLeaseDeaths++
			early = p.firstLeaseDeaths >= 2
		}
	}
	if early {
		p.recordStartFailureLocked(p.startError(errEarlyExit, proc), now)
	} else {
		p.stats.Crashed++
		if proc.state == stateBusy {
			// The caller's error reports this death with the stderr tail;
			// quoting it here too logged each traceback twice.
			p.log.Warn("transform exited", "pid", proc.pid, "exit", how, "requests", proc.requests.Load(), "while", "leased")
		} else {
			p.log.Warn("transform exited", "pid", proc.pid, "exit", how, "requests", proc.requests.Load(), "stderr", proc.StderrTail())
		}
	}
	p.replenishLocked(now)
}

func (p *Pool) kickLocked() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// maintainLoop retires idle and aged processes, keeps Min alive and retries
// starts after the back-off.
func (p *Pool) maintainLoop() {
	defer p.wg.Done()
	t := time.NewTimer(p.tick)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-p.kick:
		case <-t.C:
		}
		t.Reset(p.maintain(time.Now()))
	}
}

func (p *Pool) maintain(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.tick
	}
	kept := p.idle[:0]
	for _, proc := range p.idle {
		if !proc.retireAt.IsZero() && !now.Before(proc.retireAt) {
			p.stats.RecycledLifetime++
			p.retireLocked(proc, retireLifetime)
			continue
		}
		kept = append(kept, proc)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	if p.cfg.IdleTimeout > 0 {
		// The oldest idle processes are first.
		n := 0
		for n < len(p.idle) && len(p.idle)-n+p.busy > p.cfg.Min && now.Sub(p.idle[n].idleSince) >= p.cfg.IdleTimeout {
			p.stats.RecycledIdle++
			p.retireLocked(p.idle[n], retireIdle)
			n++
		}
		if n > 0 {
			m := copy(p.idle, p.idle[n:])
			clear(p.idle[m:])
			p.idle = p.idle[:m]
		}
	}
	p.replenishLocked(now)
	next := p.tick
	if p.failures > 0 && now.Before(p.backoffUntil) {
		next = min(next, p.backoffUntil.Sub(now))
	}
	return next
}

// Close kills every process (idle ones and leased ones; callers holding one
// see their pipes fail), fails queued callers with ErrClosed and waits for
// all processes and the pool's goroutines to end. When ctx ends first the
// remaining process groups get SIGKILL at once; Close still waits for them
// and returns ctx.Err().
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
		for e := p.waiters.Front(); e != nil; e = p.waiters.Front() {
			w := p.waiters.Remove(e).(*waiter)
			w.elem = nil
			w.ch <- waitResult{err: ErrClosed}
		}
		for _, proc := range p.idle {
			p.retireLocked(proc, retireClosed)
		}
		clear(p.idle)
		p.idle = p.idle[:0]
		for proc := range p.all {
			if proc.state == stateBusy {
				p.busy--
				p.retireLocked(proc, retireClosed)
			}
		}
	}
	p.mu.Unlock()
	p.cancel()

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	for proc := range p.all {
		proc.proc.KillNow()
	}
	p.mu.Unlock()
	<-done
	return ctx.Err()
}

// Stats returns a snapshot of the counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Idle, s.Busy, s.Starting, s.Queue = len(p.idle), p.busy, p.starting, p.waiters.Len()
	for proc := range p.all {
		if proc.state == stateRetiring {
			s.Retiring++
		}
	}
	if p.failures > 0 {
		s.BackoffUntil = p.backoffUntil
	}
	return s
}

// jitter varies v by up to ±jitterFraction so that processes started
// together do not all recycle together; 0 stays 0.
func jitter(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return max(1, v*(1+(rand.Float64()*2-1)*jitterFraction))
}
