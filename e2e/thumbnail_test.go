package e2e

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// debianConvert is ImageMagick from Debian's imagemagick package. A
// convert elsewhere in PATH (e.g. /usr/local/bin) may be something else.
const debianConvert = "/usr/bin/convert"

// TestImageMagickThumbnail: a one-shot transform, `convert - -thumbnail
// {size} -`, with size from the query and validated by a regexp, behind
// nginx.
func TestImageMagickThumbnail(t *testing.T) {
	if st, err := os.Stat(debianConvert); err != nil || st.Mode()&0o111 == 0 {
		testenv.Missing(t, debianConvert+" is missing (on Debian: apt-get install imagemagick)")
	}
	photo, err := exec.Command(debianConvert, "-size", "640x480", "gradient:", "jpeg:-").Output()
	if err != nil {
		t.Fatalf("make a JPEG with %s: %v", debianConvert, err)
	}
	if c, err := jpeg.DecodeConfig(bytes.NewReader(photo)); err != nil || c.Width != 640 || c.Height != 480 {
		t.Fatalf("generated JPEG: %v %+v", err, c)
	}
	argvLog := filepath.Join(t.TempDir(), "argv.log")
	wrapper := filepath.Join(repoRoot, "e2e", "testdata", "convert-argv.sh")
	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[transform.thumb]
kind = "oneshot"
command = [%q, "-", "-thumbnail"]
args = ["{size}", "-"]
vars = { size = "[0-9]{1,4}x[0-9]{1,4}" }
content_type = "image/jpeg"
env = { ARGV_LOG = %q }
timeout = "30s"

[[route]]
name = "thumb"
path = "/thumb"
method = ["POST"]
source = "body"
transform = ["thumb"]
`, wrapper, argvLog)
	})
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true})

	for _, tc := range []struct {
		size string
		w, h int
	}{{"100x100", 100, 75}, {"320x320", 320, 240}, {"64x48", 64, 48}} {
		r := mustFetch(t, "POST", ngx.URL("/thumb?size="+tc.size), map[string]string{"Content-Type": "image/jpeg"}, bytes.NewReader(photo))
		t.Logf("thumbnail %s: %d, %d bytes in %v", tc.size, r.status, len(r.body), r.took)
		if r.status != 200 || r.header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("thumbnail %s: %d %q %.200q", tc.size, r.status, r.header.Get("Content-Type"), r.body)
		}
		c, err := jpeg.DecodeConfig(strings.NewReader(r.body))
		if err != nil || c.Width != tc.w || c.Height != tc.h {
			t.Errorf("thumbnail %s: %v, %dx%d, want a %dx%d JPEG", tc.size, err, c.Width, c.Height, tc.w, tc.h)
		}
	}
	before, _ := os.ReadFile(argvLog)

	for _, bad := range []string{"300x200;rm -rf /", "@/etc/passwd", "300x200 -write /tmp/x", "$(id)", "100x100\n", "99999x1", ""} {
		r := mustFetch(t, "POST", ngx.URL("/thumb?size="+url.QueryEscape(bad)), map[string]string{"Content-Type": "image/jpeg"}, bytes.NewReader(photo))
		if r.status != 400 {
			t.Errorf("size %q: %d %.200q, want 400", bad, r.status, r.body)
		}
	}
	after, _ := os.ReadFile(argvLog)
	if !bytes.Equal(before, after) {
		t.Errorf("refused sizes reached a command line:\n%s", after[len(before):])
	}
	if n := strings.Count(string(after), "--- "); n != 3 {
		t.Errorf("convert ran %d times, want 3 (the valid sizes only):\n%s", n, after)
	}
	if !strings.Contains(string(after), "\n-\n-thumbnail\n100x100\n-\n") {
		t.Errorf("argument vector: want exactly - -thumbnail 100x100 -, got\n%s", after)
	}
}
