package filter

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
)

// TestSplicePaths moves bodies over every splice path (file into stdin,
// stage stdout into the next stage's stdin, reply into a file) and checks
// the bytes, against the same bodies without splice.
func TestSplicePaths(t *testing.T) {
	const size = 8<<20 + 12345
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src")
	f, err := os.Create(srcPath)
	require.NoError(t, err)
	want := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, want), newRandomBody(size, 3))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	leaks := startLeakCheck()
	cat1 := newPool(t, pool.Config{Name: "cat1", Command: []string{"cat"}})
	cat2 := newPool(t, pool.Config{Name: "cat2", Command: []string{"cat"}})
	tests := []struct {
		name   string
		tr     Transform
		toFile bool
	}{
		{"file-to-stdin", NewPooled("cat1", cat1, 0), false},
		{"stage-to-stage", Chain{NewPooled("cat1", cat1, 0), NewPooled("cat2", cat2, 0)}, false},
		{"stage-to-stage-no-splice", Chain{hideSplice{NewPooled("cat1", cat1, 0)}, NewPooled("cat2", cat2, 0)}, false},
		{"reply-to-file", NewPooled("cat1", cat1, 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := os.Open(srcPath)
			require.NoError(t, err)
			out, err := tt.tr.Apply(context.Background(), &Message{Status: 200, Length: size, Body: src}, nil)
			require.NoError(t, err)
			got := sha256.New()
			if tt.toFile {
				dst, err := os.Create(filepath.Join(dir, "dst"))
				require.NoError(t, err)
				n, err := io.Copy(dst, out.Body)
				require.NoError(t, err)
				require.Equal(t, int64(size), n)
				_, err = dst.Seek(0, 0)
				require.NoError(t, err)
				_, err = io.Copy(got, dst)
				require.NoError(t, err)
				dst.Close()
			} else {
				n, err := io.Copy(got, out.Body)
				require.NoError(t, err)
				require.Equal(t, int64(size), n)
			}
			require.NoError(t, out.Body.Close())
			require.Equal(t, want.Sum(nil), got.Sum(nil))
		})
	}
	require.Equal(t, uint64(1), cat1.Stats().Spawned, "splicing keeps the framing: the process is reused")
	require.Equal(t, uint64(1), cat2.Stats().Spawned)
	closePool(t, cat1)
	closePool(t, cat2)
	leaks.check(t)
}

// TestCloseDuringRead closes the body while another goroutine is blocked
// reading it: the read ends with an error and nothing leaks.
func TestCloseDuringRead(t *testing.T) {
	leaks := startLeakCheck()
	p := newModePool(t, "hang-mid-reply")
	out, err := NewPooled("t", p, 0).Apply(context.Background(), textMessage("abcdef"), nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(out.Body)
		done <- err
	}()
	require.NoError(t, out.Body.Close())
	require.Error(t, <-done)
	closePool(t, p)
	leaks.check(t)
}

// TestChainFailures breaks a stage of a chain and checks that the caller
// gets the failing stage's error, that both pools serve again, and that
// nothing leaks.
func TestChainFailures(t *testing.T) {
	tests := []struct {
		name       string
		first      string // test transform modes
		second     string
		failing    string // stage named in the error
		wantKind   Kind
		duringRead bool
	}{
		{"first-crashes-mid-reply", "crash-mid-reply", "cat", "first", Crash, true},
		{"first-crashes-before-reply", "crash-after-read", "cat", "first", Crash, false},
		{"second-crashes", "cat", "crash-after-read", "second", Crash, false},
		{"second-garbage", "cat", "garbage", "second", Protocol, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaks := startLeakCheck()
			quick := func(c *pool.Config) { c.QueueTimeout = 2 * time.Second }
			p1 := newModePool(t, tt.first, quick)
			p2 := newModePool(t, tt.second, quick)
			chain := Chain{NewPooled("first", p1, 60*time.Second), NewPooled("second", p2, 60*time.Second)}
			for range 2 {
				out, err := chain.Apply(context.Background(), textMessage(strings.Repeat("c", 200000)), nil)
				if err == nil {
					// The last stage may have begun its output before an
					// earlier one broke: then the body read fails.
					require.True(t, tt.duringRead, "only a failure during the body may pass Apply")
					_, err = io.ReadAll(out.Body)
					out.Body.Close()
				}
				var e *Error
				require.True(t, errors.As(err, &e), "%v", err)
				require.Equal(t, tt.failing, e.Transform, "%v", e)
				require.Equal(t, tt.wantKind, e.Kind, "%v", e)
			}
			closePool(t, p1)
			closePool(t, p2)
			leaks.check(t)
		})
	}
}
