package bridge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// TestSpooledBodyReplays: a spooled request body is replayable at any size,
// so fail = "open" and retry work for bodies far above keep_input, without
// keeping a copy in memory.
func TestSpooledBodyReplays(t *testing.T) {
	dir := t.TempDir()
	cfg, err := conf.Parse("replay.toml", []byte(`
[server]
spool_dir = "`+dir+`"
spool_memory = "1KiB"

`+tt("crash", testtransform.CrashAfterRead, "max = 2")+`
[[route]]
name = "open"
path = "/open"
transform = ["crash"]
fail = "open"
keep_input = "1KiB"
content_type = "text/html; charset=utf-8"

[[route]]
name = "retry"
path = "/retry"
transform = ["crash"]
retry = true
keep_input = "1KiB"
`))
	require.NoError(t, err)
	f := loggedFixture(t, cfg)

	body := strings.Repeat("spooled body ", 20<<10) // 260 KiB: a spool file, far above keep_input
	w := f.do(t, req{method: "POST", uri: "/open", body: body, params: map[string]string{"CONTENT_TYPE": "application/json"}})
	require.Equal(t, 200, w.status)
	assert.Equal(t, len(body), w.body.Len(), "the untransformed body, whole")
	assert.True(t, w.body.String() == body)
	assert.Equal(t, "application/json", w.header.Get("Content-Type"), "the route's content_type is not put on a fallback")
	assert.Contains(t, f.logText(), "action=\"fail open\"")

	// The retry runs on a fresh process with the whole body again. That
	// one crashes too, which the pool counts as a start failure (a second
	// death during a first lease), hence 502 or 503.
	w = f.do(t, req{method: "POST", uri: "/retry", body: body})
	assert.Contains(t, []int{502, 503}, w.status)
	text := f.logText()
	assert.Contains(t, text, "action=retry attempt=1")
	assert.Contains(t, text, "action=\"fail closed\" attempt=2")
	assert.Contains(t, text, "input=spooled")
}
