package filter

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/require"
)

// nodeRenderer returns the node binary and the path of the renderer built
// on the npm package subprocess-middleware, or skips (fails under CI).
func nodeRenderer(t testing.TB) (node, script string) {
	t.Helper()
	node = testenv.Require(t, "node")
	dir, err := filepath.Abs("../testdata/node")
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(dir, "node_modules/subprocess-middleware/package.json")); err != nil {
		testenv.Missing(t, "testdata/node/node_modules is missing (run: cd testdata/node && npm ci)")
	}
	return node, filepath.Join(dir, "render.js")
}

func newNodePool(t testing.TB) *pool.Pool {
	node, script := nodeRenderer(t)
	return newPool(t, pool.Config{Name: "render", Command: []string{node, script}})
}

func jsonMessage(body string, header ...Field) *Message {
	h := append(Header{{Name: "Content-Type", Value: "application/json"}}, header...)
	return &Message{Status: 200, Header: h, Length: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
}

func TestNodeRenderer(t *testing.T) {
	p := newNodePool(t)
	tr := NewPooled("render", p, 0)
	req := &RequestInfo{URL: "http://example.org/items/1?x=<y>", Method: "GET", Path: "/items/1", Query: "x=<y>"}

	// Two Set-Cookie lines: subprocess-middleware 0.2.0's HTTPStream
	// merges a third duplicate wrongly (it stores Array.push's return
	// value), a bug of that library; TestDuplicateHeaders shows the bridge
	// keeps any number.
	t.Run("set-cookies", func(t *testing.T) {
		out, body, err := roundTrip(t, tr, jsonMessage(`{"title":"One","tags":["a","b"]}`,
			Field{Name: "Set-Cookie", Value: "a=1; Path=/"}, Field{Name: "Set-Cookie", Value: "c=3; HttpOnly"}), req)
		require.NoError(t, err)
		require.Equal(t, 200, out.Status)
		require.Equal(t, []string{"a=1; Path=/", "c=3; HttpOnly"}, out.Header.Values("Set-Cookie"))
		require.Equal(t, "text/html; charset=utf-8", out.Header.Get("Content-Type"))
		require.False(t, out.Header.Has("X-Request-URL"), "reserved headers are stripped from the reply")
		require.False(t, out.Header.Has("Connection"))
		require.Contains(t, body, `data-url="http://example.org/items/1?x=&lt;y&gt;"`, "the renderer read X-Request-URL")
		require.Equal(t, int64(len(body)), out.Length)
	})

	t.Run("throw-then-serve", func(t *testing.T) {
		out, body, err := roundTrip(t, tr, jsonMessage(`{"__throw__":"marker"}`), req)
		require.NoError(t, err, "a 500 from the transform is its answer, not a failure")
		require.Equal(t, 500, out.Status)
		require.Contains(t, body, "render refused the input: marker")
		out, body, err = roundTrip(t, tr, jsonMessage(`{"ok":true}`), req)
		require.NoError(t, err)
		require.Equal(t, 200, out.Status)
		require.Contains(t, body, "<dt>ok</dt>")
	})

	// Node answers a chunked 204 with "Connection: close", so the process
	// is retired; the stream stays in step and the next exchange works.
	t.Run("no-content-keeps-stream-in-step", func(t *testing.T) {
		out, _, err := roundTrip(t, tr, &Message{Status: 204, Length: 0}, req)
		require.NoError(t, err)
		require.Equal(t, 204, out.Status)
		_, body, err := roundTrip(t, tr, jsonMessage(`{"after":"204"}`), req)
		require.NoError(t, err)
		require.Contains(t, body, "<dt>after</dt>")
	})

	t.Run("200-sequential-same-process", func(t *testing.T) {
		var pid string
		spawned := p.Stats().Spawned
		for i := range 200 {
			out, body, err := roundTrip(t, tr, jsonMessage(fmt.Sprintf(`{"n":%d}`, i)), req)
			require.NoError(t, err)
			require.Contains(t, body, fmt.Sprintf("<dd>%d</dd>", i))
			if i == 0 {
				pid = out.Header.Get("X-Rendered-By")
			}
			require.Equal(t, pid, out.Header.Get("X-Rendered-By"), "exchange %d ran on another process", i)
		}
		require.Equal(t, spawned, p.Stats().Spawned)
	})

	t.Run("5MB-json", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`{"title":"big","items":[`)
		for i := 0; b.Len() < 5<<20; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":%d,"name":"item %d","note":"<%d>"}`, i, i, i)
		}
		b.WriteString(`],"last":"the end"}`)
		for _, chunked := range []bool{false, true} {
			msg := jsonMessage(b.String())
			if chunked {
				msg.Length = -1
			}
			out, body, err := roundTrip(t, tr, msg, req)
			require.NoError(t, err)
			require.Equal(t, 200, out.Status)
			require.True(t, strings.HasSuffix(body, "<dt>last</dt><dd>the end</dd></dl></body></html>\n"), "chunked=%v: ...%s", chunked, body[max(0, len(body)-100):])
		}
	})
}

func TestNodeChain(t *testing.T) {
	// JSON -> HTML in node, then upper-cased by the Go test transform, then
	// through cat: three stages streaming into each other.
	np := newNodePool(t)
	up := newModePool(t, "upper")
	cat := newPool(t, pool.Config{Name: "cat", Command: []string{"cat"}})
	chain := Chain{NewPooled("render", np, 0), NewPooled("upper", up, 0), NewPooled("cat", cat, 0)}
	require.Equal(t, "render|upper|cat", chain.Name())
	out, body, err := roundTrip(t, chain, jsonMessage(`{"title":"chained"}`), &RequestInfo{URL: "http://x/"})
	require.NoError(t, err)
	require.Equal(t, 200, out.Status)
	require.Contains(t, body, "<TITLE>CHAINED</TITLE>")
}
