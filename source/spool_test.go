package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

func spoolDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Empty(t, ents, "the spool directory must stay empty: files are unlinked from the start")
	})
	return dir
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return b
}

func readSpool(t *testing.T, s *Spooled) []byte {
	t.Helper()
	r := s.Reader()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	return b
}

func TestSpool(t *testing.T) {
	dir := spoolDir(t)
	cfg := SpoolConfig{Dir: dir, Memory: 1 << 10, Max: 1 << 20}
	fds := openFDs(t)
	for _, tc := range []struct {
		name     string
		size     int
		declared int64
		inFile   bool
	}{
		{"empty", 0, -1, false},
		{"empty declared", 0, 0, false},
		{"small chunked", 100, -1, false},
		{"small declared", 100, 100, false},
		{"exactly memory", 1 << 10, -1, false},
		{"file chunked", 300 << 10, -1, true},
		{"file declared", 300 << 10, 300 << 10, true},
		{"exactly max", 1 << 20, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := randomBytes(tc.size)
			s, err := Spool(context.Background(), bytes.NewReader(body), tc.declared, cfg)
			require.NoError(t, err)
			assert.Equal(t, int64(tc.size), s.Len())
			assert.Equal(t, tc.inFile, s.InFile())
			// Every reader starts at the beginning: the body can be replayed.
			assert.Equal(t, body, readSpool(t, s))
			assert.Equal(t, body, readSpool(t, s))
			if tc.inFile {
				ents, err := os.ReadDir(dir)
				require.NoError(t, err)
				assert.Empty(t, ents, "a spool file has no name")
			}
			// A reader left open is closed with the spool.
			_ = s.Reader()
			require.NoError(t, s.Close())
		})
	}
	assert.Equal(t, fds, openFDs(t), "file descriptors left open")

	// Bytes beyond a declared length are not part of the body.
	s, err := Spool(context.Background(), strings.NewReader("abcdef"), 3, cfg)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(readSpool(t, s)))
	s.Close()
}

func TestSpoolFailures(t *testing.T) {
	dir := spoolDir(t)
	cfg := SpoolConfig{Dir: dir, Memory: 1 << 10, Max: 64 << 10}
	fds := openFDs(t)
	status := func(err error) int {
		var se *SpoolError
		require.True(t, errors.As(err, &se), "%v", err)
		return se.Status
	}

	// Declared beyond max: refused before a byte is read.
	r := strings.NewReader("unread")
	_, err := Spool(context.Background(), r, 1<<20, cfg)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status(err))
	assert.ErrorIs(t, err, ErrBodyTooLarge)
	assert.Equal(t, 6, r.Len())

	// Chunked beyond max: refused once max is passed, the rest unread.
	big := bytes.NewReader(randomBytes(1 << 20))
	_, err = Spool(context.Background(), big, -1, cfg)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status(err))
	assert.Greater(t, big.Len(), 512<<10, "the body is not read on beyond the limit")

	// A memory limit above max does not let a body past max.
	_, err = Spool(context.Background(), bytes.NewReader(randomBytes(2<<10)), -1, SpoolConfig{Dir: dir, Memory: 4 << 10, Max: 1 << 10})
	assert.Equal(t, http.StatusRequestEntityTooLarge, status(err))

	// Shorter than declared: 400, in memory and in a file.
	for _, n := range []int{100, 32 << 10} {
		_, err = Spool(context.Background(), bytes.NewReader(randomBytes(n)), int64(n)+10, cfg)
		assert.Equal(t, http.StatusBadRequest, status(err), "size %d", n)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	}

	// A read error (the fcgi server's LengthError, a broken connection): 400.
	_, err = Spool(context.Background(), io.MultiReader(bytes.NewReader(randomBytes(8<<10)), iotestErr{}), -1, cfg)
	assert.Equal(t, http.StatusBadRequest, status(err))

	// The client leaves half way, while the body goes to a file: the
	// context's error, nothing left open or on disk.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(randomBytes(16 << 10))
		cancel()
		pw.CloseWithError(errors.New("fcgi: request aborted by the web server"))
	}()
	_, err = Spool(ctx, pr, -1, cfg)
	assert.ErrorIs(t, err, context.Canceled)

	// A spool directory that does not exist: 500 for bodies that need it,
	// small bodies still work.
	missing := SpoolConfig{Dir: dir + "/missing", Memory: 1 << 10, Max: 1 << 20}
	_, err = Spool(context.Background(), bytes.NewReader(randomBytes(4<<10)), -1, missing)
	assert.Equal(t, http.StatusInternalServerError, status(err))
	s, err := Spool(context.Background(), strings.NewReader("small"), -1, missing)
	require.NoError(t, err)
	s.Close()

	assert.Equal(t, fds, openFDs(t), "file descriptors left open")
}

func newApp(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestSpooledSources: with a spooled body every source sends its true
// length: the body source as Content-Length, an HTTP upstream as its
// Content-Length, a FastCGI upstream as CONTENT_LENGTH, also for a chunked
// request that declared none.
func TestSpooledSources(t *testing.T) {
	body := randomBytes(200 << 10)
	spool := func(t *testing.T) *Spooled {
		s, err := Spool(context.Background(), bytes.NewReader(body), -1, SpoolConfig{Dir: spoolDir(t), Memory: 1 << 10, Max: 1 << 20})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	chunked := func() map[string]string {
		return map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/echo", "SCRIPT_NAME": "/echo",
			"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked"}
	}

	t.Run("body", func(t *testing.T) {
		s := spool(t)
		m, err := NewBody("body", "application/octet-stream").Fetch(context.Background(),
			&Request{Params: chunked(), ContentLength: s.Len(), Stdin: s.Reader(), Spooled: true})
		require.NoError(t, err)
		assert.Equal(t, int64(len(body)), m.Length)
		assert.Equal(t, string(body), readAll(t, m))
	})

	t.Run("http", func(t *testing.T) {
		s := spool(t)
		var gotLen int64
		var got []byte
		app := newApp(t, func(w http.ResponseWriter, r *http.Request) {
			gotLen = r.ContentLength
			got, _ = io.ReadAll(r.Body)
			fmt.Fprint(w, "ok")
		})
		src, err := NewHTTP(&conf.Upstream{Name: "app", Kind: conf.UpstreamHTTP, URL: app})
		require.NoError(t, err)
		defer src.Close()
		m, err := src.Fetch(context.Background(), &Request{Params: chunked(), ContentLength: s.Len(), Stdin: s.Reader(), Spooled: true})
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, m))
		assert.Equal(t, int64(len(body)), gotLen)
		assert.Equal(t, body, got)
	})

	t.Run("fastcgi", func(t *testing.T) {
		s := spool(t)
		src, err := NewFastCGI(fcgiUpstream(fakePHP(t)))
		require.NoError(t, err)
		defer src.Close()
		p := chunked()
		p["SCRIPT_NAME"] = "/length.php"
		m, err := src.Fetch(context.Background(), &Request{Params: p, ContentLength: s.Len(), Stdin: s.Reader(), Spooled: true})
		require.NoError(t, err)
		assert.Contains(t, readAll(t, m), fmt.Sprintf(`"length":"%d"`, len(body)))
	})
}
