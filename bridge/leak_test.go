package bridge

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// children lists the pids whose parent is this process.
func children(t *testing.T) []int {
	t.Helper()
	me := strconv.Itoa(os.Getpid())
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, pid)
		}
	}
	return out
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestNoLeaksAfterFaults runs every kind of failure, closes the bridge, and
// checks that no process, goroutine or file descriptor is left behind.
func TestNoLeaksAfterFaults(t *testing.T) {
	goroutines, fds := runtime.NumGoroutine(), openFDs()
	cfg, err := conf.Parse("leak.toml", []byte(
		tt("crash", testtransform.CrashMidReply, "")+
			tt("hang", testtransform.Hang, "timeout = \"200ms\"\nkill_grace = \"100ms\"")+
			tt("garbage", testtransform.Garbage, "")+
			tt("ok", testtransform.Upper, "max = 2")+`
[[route]]
path = "/crash"
transform = ["crash"]
[[route]]
path = "/hang"
transform = ["hang"]
[[route]]
path = "/garbage"
transform = ["garbage"]
[[route]]
transform = ["ok"]
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	f := &fixture{b: b}
	for _, uri := range []string{"/crash", "/hang", "/garbage", "/", "/crash", "/"} {
		w := f.do(t, req{method: "POST", uri: uri, body: strings.Repeat("x", 100<<10)})
		if uri == "/crash" {
			// Output had begun: the status stands, the body is cut short
			// of its announced length and nothing is made up.
			assert.Equal(t, 200, w.status)
			n, _ := strconv.Atoi(w.header.Get("Content-Length"))
			assert.Less(t, w.body.Len(), n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Close(ctx))

	assert.Eventually(t, func() bool { return len(children(t)) == 0 }, 5*time.Second, 20*time.Millisecond,
		"transform processes left: %v", children(t))
	assert.Eventually(t, func() bool { return openFDs() <= fds }, 5*time.Second, 20*time.Millisecond,
		"file descriptors: %d before, %d after", fds, openFDs())
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+2 }, 5*time.Second, 20*time.Millisecond,
		"goroutines: %d before, %d after", goroutines, runtime.NumGoroutine())
}
