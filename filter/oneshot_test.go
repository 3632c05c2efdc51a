package filter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/stretchr/testify/require"
)

func TestOneShotConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  OneShotConfig
		want string
	}{
		{"no-program", OneShotConfig{Name: "x"}, "no program"},
		{"placeholder-in-program", OneShotConfig{Name: "x", Args: []string{"{prog}"}, Vars: map[string]string{"prog": ".*"}}, "may not contain placeholders"},
		{"undeclared", OneShotConfig{Name: "x", Args: []string{"head", "-c", "{n}"}}, "Vars does not declare"},
		{"bad-regexp", OneShotConfig{Name: "x", Args: []string{"head"}, Vars: map[string]string{"n": "("}}, "variable \"n\""},
		{"not-found", OneShotConfig{Name: "x", Args: []string{"no-such-program-here"}}, "not found in PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewOneShot(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestOneShotTemplate fills argv only from validated query values; a
// malicious value is refused with 400 and the command never runs.
func TestOneShotTemplate(t *testing.T) {
	dir := t.TempDir()
	touch, err := NewOneShot(OneShotConfig{Name: "touch", Args: []string{"touch", "made-{name}"}, Vars: map[string]string{"name": `[a-z]{1,8}`}, Dir: dir})
	require.NoError(t, err)
	tests := []struct {
		query string
		ok    bool
	}{
		{"name=good", true},
		{"name=bad;touch%20/tmp/pwned", false},
		{"name=..%2F..%2Fetc", false},
		{"name=$(id)", false},
		{"name=a&name=b", false},
		{"other=x", false},
		{"name=toolongname", false},
		{"name=%0a", false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			leaks := startLeakCheck()
			before, _ := os.ReadDir(dir)
			_, _, err := roundTrip(t, touch, textMessage(""), &RequestInfo{Query: tt.query})
			after, _ := os.ReadDir(dir)
			if tt.ok {
				require.NoError(t, err)
				require.FileExists(t, dir+"/made-good")
			} else {
				var e *Error
				require.True(t, errors.As(err, &e), "%v", err)
				require.Equal(t, BadRequest, e.Kind)
				require.Equal(t, 400, e.Status)
				require.Equal(t, len(before), len(after), "the command must not run")
			}
			leaks.check(t)
		})
	}
}

func TestOneShotRuns(t *testing.T) {
	head, err := NewOneShot(OneShotConfig{Name: "head", Args: []string{"head", "-c", "{n}"}, Vars: map[string]string{"n": `[0-9]{1,6}`}, ContentType: "text/x-head"})
	require.NoError(t, err)
	t.Run("output", func(t *testing.T) {
		leaks := startLeakCheck()
		in := textMessage("hello world")
		in.Header.Add("Etag", `"abc"`)
		out, body, err := roundTrip(t, head, in, &RequestInfo{Query: "n=5"})
		require.NoError(t, err)
		require.Equal(t, "hello", body)
		require.Equal(t, "text/x-head", out.Header.Get("Content-Type"))
		require.False(t, out.Header.Has("Etag"), "the input's validators do not describe the output")
		require.Equal(t, int64(-1), out.Length)
		leaks.check(t)
	})

	cat, err := NewOneShot(OneShotConfig{Name: "cat", Args: []string{"cat"}})
	require.NoError(t, err)
	t.Run("64MiB", func(t *testing.T) {
		leaks := startLeakCheck()
		const size = 64 << 20
		src := newRandomBody(size, 7)
		h := sha256.New()
		out, err := cat.Apply(context.Background(), &Message{Status: 200, Length: size, Body: struct {
			io.Reader
			io.Closer
		}{io.TeeReader(src, h), src}}, nil)
		require.NoError(t, err)
		got := sha256.New()
		n, err := io.Copy(got, out.Body)
		require.NoError(t, err)
		out.Body.Close()
		require.Equal(t, int64(size), n)
		require.Equal(t, h.Sum(nil), got.Sum(nil))
		leaks.check(t)
	})

	tests := []struct {
		name        string
		cfg         OneShotConfig
		wantKind    Kind
		afterOutput bool
		wantErr     string
	}{
		{"exit-before-output", OneShotConfig{Name: "false", Args: []string{"false"}}, Crash, false, "exit status 1"},
		{"exit-after-output", OneShotConfig{Name: "cat-missing", Args: []string{"cat", "/proc/self/stat", "/nonexistent"}}, Crash, true, "exit status 1"},
		{"timeout", OneShotConfig{Name: "sleep", Args: []string{"sleep", "30"}, Timeout: 200 * time.Millisecond}, Timeout, false, "200ms"},
		{"start-failure", OneShotConfig{Name: "gone", Args: []string{"/nonexistent/prog"}}, Start, false, "/nonexistent/prog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaks := startLeakCheck()
			tr, err := NewOneShot(tt.cfg)
			require.NoError(t, err)
			start := time.Now()
			out, err := tr.Apply(context.Background(), textMessage("in"), nil)
			if tt.afterOutput {
				require.NoError(t, err)
				_, err = io.ReadAll(out.Body)
				out.Body.Close()
			}
			var e *Error
			require.True(t, errors.As(err, &e), "%v", err)
			require.Equal(t, tt.wantKind, e.Kind, "%v", e)
			require.Contains(t, e.Error(), tt.wantErr)
			require.Less(t, time.Since(start), 3*time.Second)
			if tt.name == "exit-after-output" {
				require.Contains(t, strings.Join(e.StderrTail, "\n"), "No such file")
			}
			leaks.check(t)
		})
	}
}

// TestOneShotConvert is the classic case: ImageMagick making a thumbnail,
// its geometry taken from the query.
func TestOneShotConvert(t *testing.T) {
	convert := testenv.Require(t, "convert")
	tr, err := NewOneShot(OneShotConfig{Name: "thumb", Args: []string{convert, "-", "-thumbnail", "{size}", "png:-"},
		Vars: map[string]string{"size": `[0-9]{1,4}x[0-9]{1,4}`}, ContentType: "image/png", Timeout: 30 * time.Second})
	require.NoError(t, err)
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for x := range 640 {
		img.Set(x, x%480, color.RGBA{255, 0, 0, 255})
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	out, body, err := roundTrip(t, tr, &Message{Status: 200, Header: Header{{Name: "Content-Type", Value: "image/png"}}, Length: int64(buf.Len()), Body: io.NopCloser(&buf)}, &RequestInfo{Query: "size=300x200"})
	require.NoError(t, err)
	require.Equal(t, "image/png", out.Header.Get("Content-Type"))
	cfg, err := png.DecodeConfig(strings.NewReader(body))
	require.NoError(t, err)
	require.LessOrEqual(t, cfg.Width, 300)
	require.LessOrEqual(t, cfg.Height, 200)

	_, _, err = roundTrip(t, tr, textMessage("x"), &RequestInfo{Query: "size=300x200%20-write%20/tmp/x"})
	var e *Error
	require.True(t, errors.As(err, &e))
	require.Equal(t, 400, e.Status)
}

func TestOneShotNode(t *testing.T) {
	node, script := nodeRenderer(t)
	tr, err := NewOneShot(OneShotConfig{Name: "render-once", Args: []string{node, script, "--one-shot", "http://example.org/{id}"},
		Vars: map[string]string{"id": `[0-9]+`}, ContentType: "text/html; charset=utf-8"})
	require.NoError(t, err)
	out, body, err := roundTrip(t, tr, jsonMessage(`{"title":"once"}`), &RequestInfo{Query: "id=7"})
	require.NoError(t, err)
	require.Equal(t, "text/html; charset=utf-8", out.Header.Get("Content-Type"))
	require.Contains(t, body, `data-url="http://example.org/7"`)
}

// TestOneShotNoOrphans kills a one-shot program that started a helper in
// the background: the whole process group goes, nothing is orphaned.
func TestOneShotNoOrphans(t *testing.T) {
	sh := testenv.Require(t, "sh")
	tr, err := NewOneShot(OneShotConfig{Name: "forks", Args: []string{sh, "-c", "sleep 30 & echo started; sleep 30"}, Timeout: 500 * time.Millisecond})
	require.NoError(t, err)
	leaks := startLeakCheck()
	out, err := tr.Apply(context.Background(), textMessage(""), nil)
	require.NoError(t, err, "it wrote a line, so the output began")
	_, err = io.ReadAll(out.Body)
	var e *Error
	require.True(t, errors.As(err, &e), "%v", err)
	require.Equal(t, Timeout, e.Kind)
	out.Body.Close()
	require.Eventually(t, func() bool { return len(processGroup(e.Pid)) == 0 }, 3*time.Second, 20*time.Millisecond,
		"processes left in group %d: %v", e.Pid, processGroup(e.Pid))
	leaks.check(t)
}

// A one-shot transform with a credential runs each process under it.
func TestOneShotCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	ids, err := NewOneShot(OneShotConfig{
		Name:       "id",
		Args:       []string{"sh", "-c", `echo "$(id -u) $(id -g) $(id -G)"`},
		Env:        []string{"PATH=/usr/bin:/bin"},
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
	})
	require.NoError(t, err)
	_, body, err := roundTrip(t, ids, textMessage(""), nil)
	require.NoError(t, err)
	require.Equal(t, "65534 65534 65534\n", body, "uid gid groups")
}

// A helper that leaves the program's process group and keeps its stderr
// open must not hold the request: once the program is reaped, its stderr
// is read to the end of what is in the pipe and the run ends.
func TestOneShotStrayHelperHoldsStderr(t *testing.T) {
	tr, err := NewOneShot(OneShotConfig{Name: "stray", Args: testtransform.Command(),
		Env: []string{testtransform.Env(testtransform.StrayStderr)}, Logger: discardLogger()})
	require.NoError(t, err)
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		out, err := tr.Apply(context.Background(), textMessage(""), nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(out.Body)
		out.Body.Close()
		done <- result{string(b), err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run waits for the stray helper to close stderr")
	}
	require.NoError(t, r.err)
	stray, err := strconv.Atoi(strings.TrimSpace(r.body))
	require.NoError(t, err, "body %q", r.body)
	require.NoError(t, syscall.Kill(stray, syscall.SIGKILL))
}

// The parent-death signal that keeps a one-shot program from outliving
// the bridge fires when the OS thread that forked it ends, and the runtime
// ends a thread whenever a goroutine that locked it returns without
// unlocking. A caller doing that must not kill the program it started: the
// fork happens on a thread of its own, held until the reap.
func TestOneShotSurvivesCallerThreadExit(t *testing.T) {
	sh := testenv.Require(t, "sh")
	tr, err := NewOneShot(OneShotConfig{Name: "late-input", Args: []string{sh, "-c", "echo ready; exec cat"}, Logger: discardLogger()})
	require.NoError(t, err)
	leaks := startLeakCheck()
	input, feed := io.Pipe()
	in := &Message{Status: 200, Length: -1, Body: input}
	var out *Message
	require.True(t, testenv.OnEndingThread(10*time.Second, func() {
		out, err = tr.Apply(context.Background(), in, nil)
	}), "the caller's thread did not end")
	require.NoError(t, err, "the program wrote its first line")
	go func() {
		_, _ = io.WriteString(feed, "still here\n")
		feed.Close()
	}()
	body, err := io.ReadAll(out.Body)
	out.Body.Close()
	require.NoError(t, err, "the program was killed when the caller's thread ended")
	require.Equal(t, "ready\nstill here\n", string(body))
	leaks.check(t)
}
