package testenv

import (
	"bufio"
	"io"
	"strings"
	"sync"
	"time"
)

// Lines collects the lines a process writes (its log, read from a pipe) so
// that a test can wait for one to appear or count them.
type Lines struct {
	mu   sync.Mutex
	all  []string
	cond *sync.Cond
	eof  bool
}

// NewLines reads r line by line in the background until EOF.
func NewLines(r io.Reader) *Lines {
	l := &Lines{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.all = append(l.all, sc.Text())
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.eof = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// WaitFor returns the first line containing s, waiting up to d for it; it
// gives up early when the writer has closed its end.
func (l *Lines) WaitFor(s string, d time.Duration) (string, bool) {
	timer := time.AfterFunc(d, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for _, line := range l.all {
			if strings.Contains(line, s) {
				return line, true
			}
		}
		if l.eof || time.Now().After(deadline) {
			return "", false
		}
		l.cond.Wait()
	}
}

// Count returns how many lines so far contain s.
func (l *Lines) Count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.all {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// String returns every line so far.
func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}
