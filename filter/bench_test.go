package filter

// Benchmarks side by side with their references, for
//
//	go test -run '^$' -bench . -benchmem ./filter/
//
// Small: a 1 KiB exchange through a pooled cat against a raw ping-pong
// through a long-lived cat (goal: at most 2x). Throughput: 1 GiB through a
// pooled cat against a raw cat pipe (goal: at least 0.7x), with the peak
// RSS above idle (goal: under 32 MiB). Splice: stage-to-stage in a chain
// with and without splice(2). Node: pooled against one-shot exchanges of the
// same renderer.

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// rawCat is a long-lived cat with both pipe ends in hand.
type rawCat struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
}

func startRawCat(b *testing.B) *rawCat {
	b.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("cat")
	cmd.Stdin, cmd.Stdout = inR, outW
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	inR.Close()
	outW.Close()
	c := &rawCat{cmd: cmd, stdin: inW, stdout: outR}
	b.Cleanup(func() { c.stdin.Close(); c.cmd.Wait(); c.stdout.Close() })
	return c
}

func catPool(b *testing.B) Transform {
	p := newPool(b, pool.Config{Name: "cat", Command: []string{"cat"}, Min: 1})
	return NewPooled("cat", p, 0)
}

func BenchmarkSmallExchange(b *testing.B) {
	payload := strings.Repeat("x", 1<<10)
	b.Run("raw-cat-pingpong", func(b *testing.B) {
		c := startRawCat(b)
		buf := make([]byte, len(payload))
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			if _, err := c.stdin.WriteString(payload); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c.stdout, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pooled-cat", func(b *testing.B) {
		tr := catPool(b)
		buf := make([]byte, 4<<10)
		b.SetBytes(int64(len(payload)))
		req := &RequestInfo{URL: "http://example.org/x", Method: "GET", Path: "/x"}
		for b.Loop() {
			out, err := tr.Apply(context.Background(), &Message{Status: 200, Header: Header{{Name: "Content-Type", Value: "text/plain"}}, Length: int64(len(payload)), Body: io.NopCloser(strings.NewReader(payload))}, req)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.ReadFull(out.Body, buf[:len(payload)])
			if err != nil || n != len(payload) {
				b.Fatal(n, err)
			}
			if _, err := out.Body.Read(buf); err != io.EOF {
				b.Fatal("want EOF, got", err)
			}
			out.Body.Close()
		}
	})
}

// BenchmarkSmallRatio alternates the raw ping-pong and the pooled exchange
// in one loop, so that both see the same machine load, and reports the
// ratio of their mean latencies.
func BenchmarkSmallRatio(b *testing.B) {
	payload := strings.Repeat("x", 1<<10)
	c := startRawCat(b)
	tr := catPool(b)
	buf := make([]byte, 4<<10)
	var raw, pooled time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.stdin.WriteString(payload); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c.stdout, buf[:len(payload)]); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		out, err := tr.Apply(context.Background(), &Message{Status: 200, Length: int64(len(payload)), Body: io.NopCloser(strings.NewReader(payload))}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(out.Body, buf[:len(payload)]); err != nil {
			b.Fatal(err)
		}
		out.Body.Close()
		pooled += time.Since(t1)
		raw += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(raw.Nanoseconds())/float64(n), "raw-ns")
	b.ReportMetric(float64(pooled.Nanoseconds())/float64(n), "pooled-ns")
	b.ReportMetric(float64(pooled)/float64(raw), "pooled/raw")
}

// pattern is an endless body from a fixed buffer: the benchmark measures
// the bridge, not a generator.
type pattern struct {
	buf []byte
	n   int64
}

func newPattern(n int64) *pattern {
	return &pattern{buf: []byte(strings.Repeat("0123456789abcdef", 64<<10/16)), n: n}
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(int64(len(b)), p.n)], p.buf)
	p.n -= int64(k)
	return k, nil
}

func (p *pattern) Close() error { return nil }

// resetPeakRSS resets VmHWM (Linux 4.0+) and returns the current VmRSS.
func resetPeakRSS() int64 {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return procStatus("VmRSS")
}

// procStatus returns a /proc/self/status size field in bytes.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func BenchmarkThroughput1GiB(b *testing.B) {
	const size = 1 << 30
	b.Run("raw-cat", func(b *testing.B) {
		c := startRawCat(b)
		b.SetBytes(size)
		idle := resetPeakRSS()
		for b.Loop() {
			done := make(chan error, 1)
			go func() {
				_, err := io.CopyBuffer(c.stdin, io.LimitReader(newPattern(size), size), make([]byte, ioBufferSize))
				done <- err
			}()
			buf := make([]byte, ioBufferSize)
			var got int64
			for got < size {
				n, err := c.stdout.Read(buf)
				got += int64(n)
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(procStatus("VmHWM")-idle)/(1<<20), "peak-RSS-MiB")
	})
	b.Run("pooled-cat", func(b *testing.B) {
		tr := catPool(b)
		b.SetBytes(size)
		idle := resetPeakRSS()
		for b.Loop() {
			out, err := tr.Apply(context.Background(), &Message{Status: 200, Length: size, Body: newPattern(size)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, out.Body)
			if err != nil || n != size {
				b.Fatal(n, err)
			}
			out.Body.Close()
		}
		b.ReportMetric(float64(procStatus("VmHWM")-idle)/(1<<20), "peak-RSS-MiB")
	})
}

// hideSplice is a stage that passes its input on as a plain reader, so the
// next stage cannot splice from it.
type hideSplice struct{ Transform }

func (h hideSplice) Apply(ctx context.Context, in *Message, req *RequestInfo) (*Message, error) {
	out, err := h.Transform.Apply(ctx, in, req)
	if err == nil {
		out.Body = struct{ io.ReadCloser }{out.Body}
	}
	return out, err
}

// BenchmarkSplice measures stage-to-stage streaming in a chain of two cats,
// with splice(2) between the first stage's stdout and the second's stdin
// and with read+write through user space.
func BenchmarkSplice(b *testing.B) {
	const size = 256 << 20
	for _, mode := range []string{"splice", "copy"} {
		b.Run(mode, func(b *testing.B) {
			first := catPool(b)
			if mode == "copy" {
				first = hideSplice{first}
			}
			chain := Chain{first, catPool(b)}
			b.SetBytes(size)
			for b.Loop() {
				out, err := chain.Apply(context.Background(), &Message{Status: 200, Length: size, Body: newPattern(size)}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, out.Body); err != nil || n != size {
					b.Fatal(n, err)
				}
				out.Body.Close()
			}
		})
	}
}

// BenchmarkNode compares the same renderer pooled (one long-lived node
// process, the pipe protocol) and one-shot (a node process per request).
func BenchmarkNode(b *testing.B) {
	node, script := nodeRenderer(b)
	p := newPool(b, pool.Config{Name: "render", Command: []string{node, script}, Min: 1})
	pooled := NewPooled("render", p, 0)
	oneShot, err := NewOneShot(OneShotConfig{Name: "render-once", Args: []string{node, script, "--one-shot", "http://example.org/"}, ContentType: "text/html"})
	if err != nil {
		b.Fatal(err)
	}
	doc := `{"title":"bench","items":[` + strings.Repeat(`{"a":1,"b":"two"},`, 50) + `{}]}`
	run := func(tr Transform) {
		_, _, err := roundTrip(b, tr, jsonMessage(doc), &RequestInfo{URL: "http://example.org/"})
		if err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: the pooled process's JIT compiles the renderer over the first
	// exchanges; a long-lived process is measured warm, which is the point.
	for range 100 {
		run(pooled)
	}
	var pooledTime, oneShotTime time.Duration
	var pooledN, oneShotN int
	for b.Loop() {
		// Ten pooled exchanges per one-shot one keeps the run short while
		// both rates are measured in the same run.
		t0 := time.Now()
		for range 10 {
			run(pooled)
		}
		t1 := time.Now()
		run(oneShot)
		oneShotTime += time.Since(t1)
		pooledTime += t1.Sub(t0)
		pooledN += 10
		oneShotN++
	}
	pooledRate := float64(pooledN) / pooledTime.Seconds()
	oneShotRate := float64(oneShotN) / oneShotTime.Seconds()
	b.ReportMetric(pooledRate, "pooled-exch/s")
	b.ReportMetric(oneShotRate, "oneshot-exch/s")
	b.ReportMetric(pooledRate/oneShotRate, "pooled/oneshot")
}
