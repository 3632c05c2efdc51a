package bridge

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// TestAccessLogPid: the access line of a successful transformed request
// names the transform process that served it.
func TestAccessLogPid(t *testing.T) {
	cfg, err := conf.Parse("pid.toml", []byte(tt("pid", testtransform.Pid, "")+"[[route]]\ntransform = [\"pid\"]\n"))
	require.NoError(t, err)
	f := loggedFixture(t, cfg)

	w := f.do(t, req{method: "POST", uri: "/", body: "x"})
	require.Equal(t, 200, w.status)
	pid, _, _ := strings.Cut(w.body.String(), " ") // "<pid> <exchange number>"
	require.NotEmpty(t, pid)
	access := f.lastLine("msg=access")
	assert.Contains(t, access, " status=200 ")
	assert.Contains(t, access, " pid="+pid)
}

// TestAccessLogBytesOutOfOwnAnswers: an error answer the bridge writes
// itself (404 for no route, 502 for a crashed transform) is counted in the
// access line's bytes_out like any other body.
func TestAccessLogBytesOutOfOwnAnswers(t *testing.T) {
	cfg, err := conf.Parse("own.toml", []byte(tt("crash", testtransform.CrashAfterRead, "")+
		"[[route]]\nname = \"crash\"\npath = \"/crash\"\ntransform = [\"crash\"]\n"))
	require.NoError(t, err)
	f := loggedFixture(t, cfg)

	for _, c := range []struct {
		uri    string
		status int
	}{{"/elsewhere", 404}, {"/crash", 502}} {
		w := f.do(t, req{method: "POST", uri: c.uri, body: "x"})
		require.Equal(t, c.status, w.status, c.uri)
		require.NotZero(t, w.body.Len(), c.uri)
		access := f.lastLine("msg=access", "uri="+c.uri+" ")
		assert.Contains(t, access, fmt.Sprintf(" bytes_out=%d ", w.body.Len()), c.uri)
	}
}

// loggedFixture serves cfg with a bridge whose log the test reads.
func loggedFixture(t *testing.T, cfg *conf.Config) *fixture {
	t.Helper()
	var logs bytes.Buffer
	mu := &sync.Mutex{}
	b, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: mu}, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { b.Close(t.Context()) })
	return &fixture{b: b, logs: &logs, logMu: mu}
}

// lastLine returns the last log line that contains every one of subs.
func (f *fixture) lastLine(subs ...string) string {
	var last string
	for _, line := range strings.Split(f.logText(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			last = line
		}
	}
	return last
}
