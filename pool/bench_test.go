package pool

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"
)

func benchPool(b *testing.B, cfg Config) *Pool {
	b.Helper()
	cfg.Name = b.Name()
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// BenchmarkAcquireRelease is the pool's own cost per lease, without I/O.
func BenchmarkAcquireRelease(b *testing.B) {
	b.Run("idle", func(b *testing.B) {
		p := benchPool(b, Config{Command: []string{"cat"}, Min: 1, Max: 1})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			proc, err := p.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			p.Release(proc, true)
		}
	})
	b.Run("contended-2-procs", func(b *testing.B) {
		p := benchPool(b, Config{Command: []string{"cat"}, Min: 2, Max: 2, QueueSize: 1024, QueueTimeout: time.Minute})
		ctx := context.Background()
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				proc, err := p.Acquire(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				p.Release(proc, true)
			}
		})
	})
}

// BenchmarkPingPong1KiB sends 1 KiB to cat and reads it back: through a
// leased process (Acquire, write, read, Release) and, in the same run,
// through a raw long-lived cat pipe, the floor the filter layer is compared
// against.
func BenchmarkPingPong1KiB(b *testing.B) {
	msg := make([]byte, 1024)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	buf := make([]byte, len(msg))
	roundTrip := func(b *testing.B, w io.Writer, r io.Reader) {
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("raw-cat", func(b *testing.B) {
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
		b.Cleanup(func() {
			inW.Close()
			_ = cmd.Wait()
			outR.Close()
		})
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, inW, outR)
		}
	})
	b.Run("pooled-cat", func(b *testing.B) {
		p := benchPool(b, Config{Command: []string{"cat"}, Min: 1, Max: 1})
		ctx := context.Background()
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			proc, err := p.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			roundTrip(b, proc.Stdin(), proc.Stdout())
			p.Release(proc, true)
		}
	})
}
