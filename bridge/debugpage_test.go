package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDebugAnswer runs one transform per failure kind behind two routes,
// one in developer mode: with debug the error answer explains the failure
// (route, transform, phase, exit, stderr, offending line, mistake, hint),
// without it the answer is the status text and nothing of the transform's.
func TestDebugAnswer(t *testing.T) {
	kinds := []struct {
		name, transform string
		status          int
		plainStatus     int      // without debug, when not status
		want            []string // in the debug answer (text form)
		leak            string   // from the transform; never in the plain answer
	}{
		{"start", "[transform.start]\ncommand = [\"/nonexistent/renderer\"]\nmin = 0\n", 503, 0,
			[]string{"phase:     start", "cannot start /nonexistent/renderer", "hint:      check the command path"}, "/nonexistent/renderer"},
		// Closes its stdin at once; the second wait orders its exit after
		// the bridge's write failed, so the phase is known.
		{"write", "[transform.write]\ncommand = [\"sh\", \"-c\", \"exec 0<&-; echo closed stdin >&2; sleep 1; exit 5\"]\nmin = 0\n", 502, 0,
			[]string{"phase:     write", "exit:      exit status 5", "closed stdin"}, "closed stdin"},
		{"crash", tt("crash", testtransform.CrashAfterRead, ""), 502, 0,
			[]string{"phase:     read reply", "exit:      exit status 3", "testtransform: crash-after-read: exiting with status 3"}, "exiting with status 3"},
		{"timeout", tt("timeout", testtransform.Hang, "timeout = \"300ms\"\nkill_grace = \"100ms\""), 504, 0,
			[]string{"phase:     timeout", "no complete reply within 300ms", "not answering"}, "not answering"},
		{"protocol", tt("protocol", testtransform.Garbage, ""), 502, 0,
			[]string{"phase:     protocol error", "line 1:    this is not HTTP at all", "mistake:   status line is not HTTP/1.1 NNN", `\x00\x01\x02\r\n`}, "not HTTP"},
		{"cgi-status", tt("cgi-status", testtransform.CGIStatus, ""), 502, 0,
			[]string{"line 1:    Status: 200 OK", "hint:      begin the reply with a status line"}, "Status: 200"},
		{"no-blank-line", tt("no-blank-line", testtransform.NoBlankLine, ""), 502, 0,
			[]string{"line 4:    <p>abc</p>", "mistake:   no blank line after the headers"}, "<p>abc"},
		// Without debug the head is out before the body breaks off: the
		// client gets a truncated 200 (the request is aborted) and the log
		// says why, with the pid and the hint.
		{"short-body", tt("short-body", testtransform.ShortBody, "timeout = \"300ms\"\nkill_grace = \"100ms\""), 504, 200,
			[]string{"phase:     timeout", "mistake:   body shorter than Content-Length", "hint:      update Content-Length when you change the body"}, "body shorter"},
	}
	var cfg strings.Builder
	for _, k := range kinds {
		cfg.WriteString(k.transform)
		fmt.Fprintf(&cfg, "[[route]]\nname = %q\npath = \"/%s/plain\"\ntransform = [%q]\n", k.name+"-plain", k.name, k.name)
		fmt.Fprintf(&cfg, "[[route]]\nname = %q\npath = \"/%s/debug\"\ntransform = [%q]\ndebug = true\n", k.name+"-debug", k.name, k.name)
	}
	f := newDebugFixture(t, cfg.String())
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			body := "abc"
			if k.name == "write" {
				body = strings.Repeat("x", 1<<20) // more than the pipe holds
			}
			w := f.do(t, req{method: "POST", uri: "/" + k.name + "/plain", body: body})
			if k.plainStatus != 0 {
				require.Equal(t, k.plainStatus, w.status, w.body.String())
				assert.NotContains(t, w.body.String(), k.leak)
				log := f.logText()
				assert.Regexp(t, `msg="response body failed after output began" route=short-body-plain pid=[1-9]`, log)
				assert.Contains(t, log, "update Content-Length when you change the body")
			} else {
				require.Equal(t, k.status, w.status, w.body.String())
				plain := fmt.Sprintf("%d %s\n", k.status, http.StatusText(k.status))
				assert.Equal(t, plain, w.body.String(), "debug off: the usual short answer only")
				assert.Equal(t, "text/plain; charset=utf-8", w.header.Get("Content-Type"))
			}

			w = f.do(t, req{method: "POST", uri: "/" + k.name + "/debug", body: body})
			require.Equal(t, k.status, w.status, w.body.String())
			body = w.body.String()
			assert.Equal(t, "text/plain; charset=utf-8", w.header.Get("Content-Type"))
			assert.Contains(t, body, "route:     "+k.name+"-debug")
			assert.Contains(t, body, `transform "`+k.name+`" failed`)
			for _, want := range k.want {
				assert.Contains(t, body, want)
			}
			assert.Contains(t, body, k.leak)
			if k.status == 503 {
				assert.Equal(t, "1", w.header.Get("Retry-After"))
			}
		})
	}
}

// The transform's stderr and output reach the page escaped for its format:
// a <script> in stderr is text in HTML, a string in JSON.
func TestDebugAnswerEscapes(t *testing.T) {
	const script = `<script>alert("x")</script>`
	cfg := `[transform.xss]
command = ["sh", "-c", '''read line; echo '` + script + `' >&2; printf 'HTTP/1.1 200 OK\r\n<script>x</script>\r\n\r\n'; sleep 5''']
min = 0

[[route]]
name = "xss"
transform = ["xss"]
debug = true
`
	f := newDebugFixture(t, cfg)

	w := f.do(t, req{method: "POST", uri: "/", body: "abc", params: map[string]string{"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}})
	require.Equal(t, 502, w.status, w.body.String())
	require.Equal(t, "text/html; charset=utf-8", w.header.Get("Content-Type"))
	require.Equal(t, "nosniff", w.header.Get("X-Content-Type-Options"))
	page := w.body.String()
	require.NotContains(t, page, "<script>")
	require.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	require.Contains(t, page, "&lt;script&gt;x&lt;/script&gt;", "the offending line, escaped")
	require.Contains(t, page, "no blank line after the headers")

	w = f.do(t, req{method: "POST", uri: "/", body: "abc", params: map[string]string{"HTTP_ACCEPT": "application/json"}})
	require.Equal(t, 502, w.status)
	require.Equal(t, "application/json", w.header.Get("Content-Type"))
	var d filter.Diagnosis
	require.NoError(t, json.Unmarshal(w.body.Bytes(), &d), w.body.String())
	require.Contains(t, d.Stderr, script)
	require.Equal(t, "xss", d.Route)
	require.Equal(t, filter.PhaseProtocol, d.Phase)
	require.Equal(t, 2, d.Line)
	require.NotContains(t, w.body.String(), "<script>", "JSON escapes < and >")
}

// In developer mode a reply that succeeds is served as it is.
func TestDebugPassesGoodReplies(t *testing.T) {
	f := newDebugFixture(t, tt("upper", testtransform.Upper, "")+"[[route]]\ntransform = [\"upper\"]\ndebug = true\n")
	w := f.do(t, req{method: "POST", uri: "/", body: strings.Repeat("abc", 500000)})
	require.Equal(t, 200, w.status)
	require.Equal(t, strings.Repeat("ABC", 500000), w.body.String())
	require.Equal(t, "1500000", w.header.Get("Content-Length"))
}

func TestDebugFormat(t *testing.T) {
	for accept, want := range map[string]string{
		"":                                "text",
		"*/*":                             "text",
		"text/html,application/xhtml+xml": "html",
		"application/json, text/html":     "json",
		"text/html;q=0, application/json": "json",
		"text/plain, text/html":           "text",
		"garbage;;":                       "text",
	} {
		assert.Equal(t, want, debugFormat(accept), "Accept: %q", accept)
	}
}

func newDebugFixture(t *testing.T, cfgText string) *fixture {
	t.Helper()
	cfg, err := conf.Parse("debug.toml", []byte(cfgText))
	require.NoError(t, err, cfgText)
	logs := &bytes.Buffer{}
	f := &fixture{logs: logs, logMu: &sync.Mutex{}}
	b, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: logs, mu: f.logMu}, nil))))
	require.NoError(t, err)
	f.b = b
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, b.Close(ctx))
	})
	return f
}

// The access line counts the bytes of the answers the bridge writes itself
// (an error's short text, a developer mode page, a 404) as it counts a
// transform's.
func TestAccessCountsBridgeAnswers(t *testing.T) {
	f := newDebugFixture(t, tt("crash", testtransform.CrashAfterRead, "")+
		"[[route]]\nname = \"plain\"\npath = \"/plain\"\ntransform = [\"crash\"]\n"+
		"[[route]]\nname = \"debug\"\npath = \"/debug\"\ntransform = [\"crash\"]\ndebug = true\n")
	for _, tc := range []struct{ uri, route string }{{"/plain", "plain"}, {"/debug", "debug"}, {"/none", "-"}} {
		w := f.do(t, req{method: "POST", uri: tc.uri, body: "abc"})
		require.NotZero(t, w.body.Len())
		assert.Regexp(t, fmt.Sprintf(`msg=access route=%s .* status=%d bytes_in=\d+ bytes_out=%d `, regexp.QuoteMeta(tc.route), w.status, w.body.Len()), f.logText())
	}
}
