package bridge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) Stderr() io.Writer           { return io.Discard }
func (d *discardWriter) Flush() error                { return nil }

// ReadFrom is there because fcgi's ResponseWriter has it too, so io.Copy
// does not allocate a buffer per request.
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// BenchmarkServe measures the bridge's own cost per request (routing,
// source, response writing) for a pass-through route, and the round trip
// through a pooled `cat`, at two body sizes.
func BenchmarkServe(b *testing.B) {
	catPath, err := exec.LookPath("cat")
	if err != nil {
		b.Skip("cat not found")
	}
	cfg, err := conf.Parse("bench.toml", []byte(fmt.Sprintf(`
[transform.cat]
command = [%q]
min = 1
max = 1
[[route]]
name = "pass"
path = "/pass"
[[route]]
name = "cat"
transform = ["cat"]
`, catPath)))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Log.Access = false
	br, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(context.Background())
	for _, route := range []string{"/pass", "/cat"} {
		for _, size := range []int{1 << 10, 1 << 20} {
			body := strings.Repeat("x", size)
			b.Run(fmt.Sprintf("%s/%dKiB", strings.TrimPrefix(route, "/"), size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					r := &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, ContentLength: int64(size), DataLength: -1,
						Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": route, "CONTENT_LENGTH": strconv.Itoa(size)},
						Stdin:  strings.NewReader(body), Data: strings.NewReader("")}
					br.ServeFCGI(&discardWriter{h: http.Header{}}, r)
				}
			})
		}
	}
}
