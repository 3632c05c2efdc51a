package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

// logOutput is where the daemon logs: stderr, or a file that USR1 reopens
// so that logrotate can move it away and signal the daemon.
type logOutput struct {
	level *slog.LevelVar
	file  *reopenableFile // nil when logging to stderr
}

func newLogger(c conf.Log, stderr io.Writer) (*slog.Logger, *logOutput, error) {
	lvl, err := conf.ParseLevel(c.Level)
	if err != nil {
		return nil, nil, err
	}
	out := &logOutput{level: &slog.LevelVar{}}
	out.level.Set(lvl)
	w := stderr
	if c.File != "" {
		f, err := openLogFile(c.File)
		if err != nil {
			return nil, nil, err
		}
		out.file = f
		w = f
	}
	opts := &slog.HandlerOptions{Level: out.level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), out, nil
}

// reopenableFile is an append-only log file whose descriptor can be swapped
// while other goroutines write.
type reopenableFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*reopenableFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &reopenableFile{path: path, f: f}, nil
}

func (r *reopenableFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// Reopen opens the path again (a new file after rotation) and closes the old
// descriptor. On failure the old file stays in use.
func (r *reopenableFile) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	return old.Close()
}

func (r *reopenableFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
