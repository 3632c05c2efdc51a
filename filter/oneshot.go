package filter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/child"
)

// OneShotConfig configures a transform that runs a new process per request,
// mod_ext_filter style: the raw input body on its stdin, its raw stdout
// streamed back as the body.
type OneShotConfig struct {
	Name string
	// Args is the argv template. Args[0] is the program (a path, or a name
	// looked up in PATH when the transform is created); it may not hold
	// placeholders. In the other arguments "{name}" is replaced by the
	// value of the query parameter name, which must be present once and
	// match Vars[name] in full. No shell is involved.
	Args []string
	// Vars maps each placeholder to the regexp its value must match
	// (anchored at both ends), e.g. "size": `[0-9]{1,4}x[0-9]{1,4}`.
	Vars map[string]string
	// ContentType is the Content-Type of the output; "" keeps the input's.
	ContentType string
	// Timeout bounds a run from start until its output ends; 0 means none.
	Timeout time.Duration
	// Env is the whole environment of the process (nil: empty).
	Env []string
	Dir string
	// Credential runs each process under another identity (see
	// child.Credential); nil keeps the bridge's.
	Credential *syscall.Credential
	// Logger receives the process's stderr lines; nil means slog.Default().
	Logger *slog.Logger
}

var placeholder = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// oneShotKillGrace is how long a one-shot process has between SIGTERM and
// SIGKILL when it must stop early.
const oneShotKillGrace = 500 * time.Millisecond

type oneShot struct {
	cfg  OneShotConfig
	path string
	vars map[string]*regexp.Regexp
	log  *slog.Logger
}

// NewOneShot checks cfg (program found, every placeholder declared, every
// regexp valid) and returns the transform.
func NewOneShot(cfg OneShotConfig) (Transform, error) {
	if len(cfg.Args) == 0 || cfg.Args[0] == "" {
		return nil, fmt.Errorf("one-shot transform %q: no program in Args", cfg.Name)
	}
	if placeholder.MatchString(cfg.Args[0]) {
		return nil, fmt.Errorf("one-shot transform %q: the program %q may not contain placeholders", cfg.Name, cfg.Args[0])
	}
	t := &oneShot{cfg: cfg, vars: map[string]*regexp.Regexp{}, log: cfg.Logger}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.log = t.log.With("transform", cfg.Name)
	for name, expr := range cfg.Vars {
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			return nil, fmt.Errorf("one-shot transform %q: variable %q: %w", cfg.Name, name, err)
		}
		t.vars[name] = re
	}
	for _, arg := range cfg.Args[1:] {
		for _, m := range placeholder.FindAllStringSubmatch(arg, -1) {
			if _, ok := t.vars[m[1]]; !ok {
				return nil, fmt.Errorf("one-shot transform %q: argument %q uses {%s}, which Vars does not declare", cfg.Name, arg, m[1])
			}
		}
	}
	path, err := child.ResolveProgram(cfg.Args[0], cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("one-shot transform %q: program %w", cfg.Name, err)
	}
	t.path = path
	return t, nil
}

func (t *oneShot) Name() string { return t.cfg.Name }

// expand fills the argv template from the query, or says which value is
// wrong.
func (t *oneShot) expand(req *RequestInfo) ([]string, error) {
	var q url.Values
	if req != nil {
		var err error
		if q, err = url.ParseQuery(req.Query); err != nil {
			return nil, fmt.Errorf("query %q: %w", req.Query, err)
		}
	}
	args := make([]string, len(t.cfg.Args))
	args[0] = t.cfg.Args[0]
	var bad error
	for i, arg := range t.cfg.Args[1:] {
		args[i+1] = placeholder.ReplaceAllStringFunc(arg, func(ph string) string {
			name := ph[1 : len(ph)-1]
			vs := q[name]
			switch {
			case bad != nil:
			case len(vs) != 1:
				bad = fmt.Errorf("query parameter %q must be given exactly once (got %d)", name, len(vs))
			case !t.vars[name].MatchString(vs[0]):
				bad = fmt.Errorf("query parameter %s=%q does not match %s", name, vs[0], t.vars[name])
			default:
				return vs[0]
			}
			return ""
		})
	}
	return args, bad
}

func (t *oneShot) Apply(ctx context.Context, in *Message, req *RequestInfo) (*Message, error) {
	args, err := t.expand(req)
	if err != nil {
		closeBody(in)
		return nil, newError(t.cfg.Name, 0, BadRequest, err)
	}
	r, err := t.start(ctx, args, in)
	if err != nil {
		closeBody(in)
		return nil, err
	}
	if _, err := r.br.Peek(1); err != nil {
		// No output at all: a failure unless the program exited 0.
		r.awaitExit()
		if e := r.failure(err); e != nil {
			r.Close()
			return nil, e
		}
	}
	// The input's headers stay, except those that described its body
	// (length, validators, framing) and the bridge's reserved ones.
	out := &Message{Status: in.Status, Reason: in.Reason, Length: -1, Body: r}
	for _, f := range in.Header {
		if isFraming(f.Name) || isReserved(f.Name) || strings.EqualFold(f.Name, "Etag") || strings.EqualFold(f.Name, "Content-Md5") {
			continue
		}
		out.Header = append(out.Header, f)
	}
	if t.cfg.ContentType != "" {
		out.Header.Set("Content-Type", t.cfg.ContentType)
	}
	return out, nil
}

// oneShotRun is one process and its output; it is the Body of the
// returned Message.
type oneShotRun struct {
	t       *oneShot
	proc    *child.Proc
	pid     int
	ctx     context.Context
	br      *bufio.Reader
	written chan struct{}
	in      io.ReadCloser

	aborted   atomic.Int32 // Kind+1
	timer     *time.Timer
	stopCtx   func() bool
	readMu    sync.Mutex // held by Read and by Close's teardown
	err       error
	eof       bool
	closeOnce sync.Once
}

func (t *oneShot) start(ctx context.Context, args []string, in *Message) (*oneShotRun, error) {
	proc, err := child.Start(&child.Spec{Path: t.path, Args: args, Env: t.cfg.Env, Dir: t.cfg.Dir,
		Cred: t.cfg.Credential, KillGrace: oneShotKillGrace, Log: t.log})
	if err != nil {
		return nil, newError(t.cfg.Name, 0, Start, fmt.Errorf("start %s: %w", t.path, err))
	}
	r := &oneShotRun{t: t, proc: proc, pid: proc.Pid(), ctx: ctx, written: make(chan struct{}), in: in.Body}
	r.br = readBuffers.Get().(*bufio.Reader)
	r.br.Reset(proc.Stdout())
	go r.write(in)
	if t.cfg.Timeout > 0 {
		r.timer = time.AfterFunc(t.cfg.Timeout, func() { r.abort(Timeout) })
	}
	r.stopCtx = context.AfterFunc(ctx, func() {
		if ctx.Err() == context.DeadlineExceeded {
			r.abort(Timeout)
		} else {
			r.abort(Canceled)
		}
	})
	return r, nil
}

func (r *oneShotRun) write(in *Message) {
	defer close(r.written)
	stdin := r.proc.Stdin()
	if in.Body != nil {
		var err error
		if in.Length >= spliceMin {
			_, handled, serr := spliceTo(stdin, in.Body, in.Length)
			if !handled {
				_, err = io.Copy(stdin, in.Body)
			} else {
				err = serr
			}
		} else {
			_, err = io.Copy(stdin, in.Body)
		}
		var ie *inputError
		if errors.As(err, &ie) {
			r.abort(Input)
		}
		in.Body.Close()
	}
	stdin.Close() // EOF tells the program its input is complete
}

// abort stops the process group without waiting (SIGTERM, then SIGKILL
// after a short grace), recording why for failure.
func (r *oneShotRun) abort(kind Kind) {
	if r.aborted.CompareAndSwap(0, int32(kind)+1) {
		r.proc.Stop()
	}
}

// awaitExit waits for the process to be reaped and its stderr drained.
func (r *oneShotRun) awaitExit() { <-r.proc.Done() }

// failure returns the *Error for a run that ended (cause is what the read
// saw), or nil when it ended well.
func (r *oneShotRun) failure(cause error) *Error {
	name := r.t.cfg.Name
	if k := r.aborted.Load(); k != 0 {
		kind := Kind(k - 1)
		switch kind {
		case Timeout:
			cause = fmt.Errorf("no end of output within %s", r.t.cfg.Timeout)
			if r.ctx.Err() != nil {
				cause = errors.New("the request's deadline passed")
			}
		case Canceled:
			cause = r.ctx.Err()
		case Input:
			cause = errors.New("its input broke off")
		}
		e := newError(name, r.pid, kind, cause)
		e.StderrTail = r.proc.StderrTail()
		return e
	}
	if how, exitErr := r.proc.Exit(); exitErr != nil {
		e := newError(name, r.pid, Crash, fmt.Errorf("%s: %w", r.path(), exitErr))
		e.StderrTail = r.proc.StderrTail()
		e.Exit = how
		return e
	}
	if cause != nil && cause != io.EOF {
		return newError(name, r.pid, Crash, cause)
	}
	return nil
}

func (r *oneShotRun) path() string { return r.t.path }

func (r *oneShotRun) Read(p []byte) (int, error) {
	r.readMu.Lock()
	defer r.readMu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	if r.eof {
		return 0, io.EOF
	}
	n, err := r.br.Read(p)
	if err == nil {
		return n, nil
	}
	r.awaitExit()
	if e := r.failure(err); e != nil {
		r.err = e
		return n, e
	}
	r.eof = true
	r.stopWatch()
	return n, io.EOF
}

func (r *oneShotRun) stopWatch() {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.stopCtx()
}

// Close stops the process if it still runs and waits until nothing of the
// run is left: process reaped, pipes closed, goroutines ended.
func (r *oneShotRun) Close() error {
	r.closeOnce.Do(func() {
		r.stopWatch()
		r.proc.Kill()
		if r.in != nil {
			r.in.Close()
		}
		<-r.written
		r.readMu.Lock()
		defer r.readMu.Unlock()
		r.proc.CloseFiles()
		r.br.Reset(nil)
		readBuffers.Put(r.br)
		if r.err == nil && !r.eof {
			r.err = newError(r.t.cfg.Name, r.pid, Canceled, errors.New("the output was closed before its end"))
		} else if r.err == nil {
			r.err = io.EOF
		}
	})
	return nil
}
