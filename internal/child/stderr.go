package child

import (
	"bufio"
	"sync"
	"time"
)

const (
	// StderrTailLines is how many of the last stderr lines StderrTail keeps.
	StderrTailLines = 20
	// StderrLineMax is the longest stderr line logged and kept; longer
	// lines are cut, the rest skipped.
	StderrLineMax = 2048

	stderrLogRate  = 50 // lines per second logged; the tail keeps all
	stderrLogBurst = 200
)

// drainStderr reads stderr line by line as fast as the process writes it,
// so a chatty program never blocks on a full pipe. Every line goes to the
// tail; logging is rate limited so a flood cannot slow the drain down to
// the speed of the log sink. The log says when the limit starts dropping
// lines, at the moment it does (a flood that then stops would otherwise
// go unmentioned until the process exits), and how many it dropped once
// logging resumes or the process ends.
func (p *Proc) drainStderr() {
	defer close(p.drained)
	r := bufio.NewReaderSize(p.stderr, StderrLineMax)
	log := p.log
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
