package filter

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
)

// randomBody is n deterministic pseudo-random bytes, generated as read.
type randomBody struct {
	n   int64
	rng *rand.ChaCha8
}

func newRandomBody(n int64, seed byte) *randomBody {
	return &randomBody{n: n, rng: rand.NewChaCha8([32]byte{seed})}
}

func (r *randomBody) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	r.rng.Read(p)
	r.n -= int64(len(p))
	return len(p), nil
}

func (r *randomBody) Close() error { return nil }

// TestCatIdentity sends bodies of many sizes through cat (the real one and
// the test transform), sized and chunked, and compares hashes: the bridge
// writes and reads concurrently, so no size can deadlock it.
func TestCatIdentity(t *testing.T) {
	catPath, err := exec.LookPath("cat")
	require.NoError(t, err)
	transforms := map[string]pool.Config{
		"bin-cat":       {Name: "cat", Command: []string{catPath}},
		"testtransform": {Name: "tt-cat", Command: testtransform.Command(), Env: []string{testtransform.Env(testtransform.Cat)}},
	}
	sizes := []int64{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20, 256 << 20}
	for tname, cfg := range transforms {
		p := newPool(t, cfg)
		tr := NewPooled(cfg.Name, p, 0)
		for _, size := range sizes {
			for _, chunked := range []bool{false, true} {
				if size == 256<<20 && (testing.Short() || tname != "bin-cat") {
					continue
				}
				t.Run(fmt.Sprintf("%s/%d/chunked=%v", tname, size, chunked), func(t *testing.T) {
					in := sha256.New()
					src := newRandomBody(size, byte(size))
					length := size
					msgLength := size
					if chunked {
						msgLength = -1
					}
					if chunked || size == 0 {
						length = -1 // an empty body travels chunked
					}
					msg := &Message{Status: 200, Header: Header{{Name: "Content-Type", Value: "application/octet-stream"}}, Length: msgLength,
						Body: struct {
							io.Reader
							io.Closer
						}{io.TeeReader(src, in), src}}
					out, err := tr.Apply(context.Background(), msg, &RequestInfo{URL: "http://x/"})
					require.NoError(t, err)
					got := sha256.New()
					n, err := io.Copy(got, out.Body)
					require.NoError(t, err)
					require.NoError(t, out.Body.Close())
					require.Equal(t, size, n)
					require.Equal(t, in.Sum(nil), got.Sum(nil))
					require.Equal(t, length, out.Length)
					require.Equal(t, Header{{Name: "Content-Type", Value: "application/octet-stream"}}, out.Header, "reserved and framing headers are stripped")
				})
			}
		}
		require.Equal(t, uint64(1), p.Stats().Spawned, "%s: every exchange ran on the same process", tname)
	}
}
