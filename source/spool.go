package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Request body buffering.
//
// nginx talks to a FastCGI application half duplex: once the application's
// response has begun, nginx sends no more of the request body (about
// 192 KiB get through with request buffering on, 290 KiB with it off). A
// transform such as cat answers while it still reads, so a live request
// body handed to it deadlocks behind nginx for bodies beyond those buffers:
// the transform waits for input, nginx for output, until
// fastcgi_read_timeout cuts the response short. The same holds for an
// upstream that answers before it has read the whole body. Spooling reads
// the whole body first, as php-fpm does, so nothing is written to the web
// server before its input has ended; the body's true length is then known
// (a transform gets a Content-Length, php-fpm a true CONTENT_LENGTH) and it
// can be read again (retry, fail open).

// SpoolConfig bounds request body buffering.
type SpoolConfig struct {
	// Dir holds the temp files of bodies larger than Memory; "" means
	// os.TempDir(). Files are unlinked from the start: nothing is left
	// behind when the request ends, fails or the daemon is killed.
	Dir string
	// Memory is the largest body kept in memory; larger ones go to a file.
	Memory int64
	// Max is the largest body accepted: beyond it the request fails with
	// 413 and the rest of the body is not read. 0 means no limit.
	Max int64
}

// Spooled is a request body read to its end. Reader hands out independent
// readers from its start; Close frees the memory or the file.
type Spooled struct {
	mem  []byte
	file *os.File
	n    int64

	mu      sync.Mutex
	readers []io.Closer // reopened files, closed with the spool at the latest
}

// Len is the body's length.
func (s *Spooled) Len() int64 { return s.n }

// InFile reports whether the body went to a temp file.
func (s *Spooled) InFile() bool { return s.file != nil }

// Reader returns a reader over the whole body, independent of earlier ones.
// A file-backed body is reopened as its own *os.File, so the filter can
// splice it into a transform's pipe.
func (s *Spooled) Reader() io.ReadCloser {
	if s.n == 0 {
		return http.NoBody
	}
	if s.file == nil {
		return io.NopCloser(bytes.NewReader(s.mem))
	}
	// /proc/self/fd/N opens the unlinked file again with its own offset.
	if f, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(s.file.Fd()))); err == nil {
		s.mu.Lock()
		s.readers = append(s.readers, f)
		s.mu.Unlock()
		return &limitedFile{File: f, r: io.LimitReader(f, s.n)}
	}
	return io.NopCloser(io.NewSectionReader(s.file, 0, s.n))
}

// Close releases the body and closes the readers handed out (whoever got
// one may close it earlier, and need not).
func (s *Spooled) Close() error {
	if s.file == nil {
		if s.mem != nil { // the shared empty body is never written to
			s.mem = nil
		}
		return nil
	}
	s.mu.Lock()
	for _, r := range s.readers {
		r.Close()
	}
	s.readers = nil
	s.mu.Unlock()
	err := s.file.Close()
	s.file = nil
	return err
}

// limitedFile is a reopened spool file: reads stop at the spooled length
// (the file does not grow, but the bound makes that visible), and the
// *os.File stays reachable for splice.
type limitedFile struct {
	*os.File
	r io.Reader
}

func (f *limitedFile) Read(p []byte) (int, error) { return f.r.Read(p) }

// WriteTo keeps io.Copy from using the embedded *os.File's own WriteTo,
// which would ignore the bound.
func (f *limitedFile) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, f.r) }

// SpoolError is a body that could not be spooled, with the status the
// client gets: 413 too large, 400 shorter than declared, 500 the spool
// itself failed (disk full, directory missing).
type SpoolError struct {
	Status int
	Err    error
}

func (e *SpoolError) Error() string { return "request body: " + e.Err.Error() }
func (e *SpoolError) Unwrap() error { return e.Err }

// noBody is the spool of every empty body: nothing to hold, nothing to
// close, so one value serves all (Close does not write to it).
var noBody Spooled

// ErrBodyTooLarge is the cause of a 413.
var ErrBodyTooLarge = errors.New("request body too large")

// Spool reads body to its end. declared is the length the request states
// (-1 unknown, e.g. chunked): a body shorter than it fails with 400, one
// declared larger than cfg.Max fails with 413 before a byte is read. A
// cancelled ctx (the client left) returns ctx's error; whatever was
// written is gone with the unlinked file.
func Spool(ctx context.Context, body io.Reader, declared int64, cfg SpoolConfig) (*Spooled, error) {
	if cfg.Max > 0 && declared > cfg.Max {
		return nil, &SpoolError{Status: http.StatusRequestEntityTooLarge,
			Err: fmt.Errorf("%w: %d bytes declared, at most %d accepted", ErrBodyTooLarge, declared, cfg.Max)}
	}
	if declared == 0 {
		return &noBody, nil
	}
	// A declared length is the body's length: bytes beyond it are not
	// part of it (the fcgi server drops them too).
	src := body
	if declared > 0 {
		src = io.LimitReader(body, declared)
	} else {
		// Most requests without a declared length (GET and HEAD behind
		// nginx or Apache) have no body: one small read tells, before
		// anything is allocated for the spool.
		var probe [1]byte
		n, err := io.ReadFull(body, probe[:])
		if n == 0 {
			if err == io.EOF {
				return &noBody, nil
			}
			return failEarly(ctx, err)
		}
		src = io.MultiReader(bytes.NewReader([]byte{probe[0]}), body)
	}
	s := &Spooled{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	fail := func(err error) (*Spooled, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *SpoolError
		if errors.As(err, &se) {
			return nil, se
		}
		// The fcgi server reports a body shorter than CONTENT_LENGTH as a
		// *fcgi.LengthError, other readers as io.ErrUnexpectedEOF; a read
		// error is the client's side failing either way.
		return nil, &SpoolError{Status: http.StatusBadRequest, Err: fmt.Errorf("read: %w", err)}
	}
	// Memory first: most bodies are small, and a small one needs no file.
	memMax := max(cfg.Memory, 0)
	buf, err := io.ReadAll(io.LimitReader(src, memMax+1))
	if err != nil {
		return fail(err)
	}
	if cfg.Max > 0 && int64(len(buf)) > cfg.Max {
		return nil, &SpoolError{Status: http.StatusRequestEntityTooLarge,
			Err: fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, cfg.Max)}
	}
	if int64(len(buf)) <= memMax {
		s.mem, s.n = buf, int64(len(buf))
		if err := checkLength(s.n, declared); err != nil {
			return fail(err)
		}
		ok = true
		return s, nil
	}
	// Larger than memory allows: on to an unlinked file.
	f, err := tempFile(cfg.Dir)
	if err != nil {
		return nil, &SpoolError{Status: http.StatusInternalServerError, Err: err}
	}
	s.file = f
	if _, err := f.Write(buf); err != nil {
		return nil, &SpoolError{Status: http.StatusInternalServerError, Err: fmt.Errorf("write spool file: %w", err)}
	}
	n := int64(len(buf))
	if cfg.Max > 0 {
		// One byte beyond the limit tells "too large" from "exactly Max".
		src = io.LimitReader(body, cfg.Max-n+1)
	}
	w, err := io.Copy(&ctxWriter{ctx: ctx, w: f}, src)
	n += w
	if err != nil {
		var we *spoolWriteError
		if errors.As(err, &we) {
			return nil, &SpoolError{Status: http.StatusInternalServerError, Err: fmt.Errorf("write spool file: %w", we.err)}
		}
		return fail(err)
	}
	if cfg.Max > 0 && n > cfg.Max {
		return nil, &SpoolError{Status: http.StatusRequestEntityTooLarge,
			Err: fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, cfg.Max)}
	}
	if err := checkLength(n, declared); err != nil {
		return fail(err)
	}
	s.n = n
	ok = true
	return s, nil
}

// failEarly classifies a read failure before the spool was set up.
func failEarly(ctx context.Context, err error) (*Spooled, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, &SpoolError{Status: http.StatusBadRequest, Err: fmt.Errorf("read: %w", err)}
}

func checkLength(n, declared int64) error {
	if declared >= 0 && n < declared {
		return fmt.Errorf("ended after %d of the %d bytes declared: %w", n, declared, io.ErrUnexpectedEOF)
	}
	return nil
}

// ctxWriter stops a copy into the spool once the client has left, and
// marks write errors so they are told apart from read errors.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

type spoolWriteError struct{ err error }

func (e *spoolWriteError) Error() string { return e.err.Error() }

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, &spoolWriteError{err}
	}
	return n, nil
}

// tempFile opens a file without a name in dir (O_TMPFILE), or, where the
// filesystem lacks that, creates one and unlinks it at once: either way no
// other process can open it and nothing survives the descriptor.
func tempFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_RDWR, 0o600)
	if err == nil {
		return f, nil
	}
	f, err2 := os.CreateTemp(dir, ".fcgi-bridge-body-*")
	if err2 != nil {
		return nil, fmt.Errorf("spool file in %s: %w", dir, errors.Join(err, err2))
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink spool file: %w", err)
	}
	return f, nil
}
