package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// peakRSS returns the process's VmHWM (peak resident set) in bytes.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// catConfig: request bodies (route "echo") and files under root (route
// "files", path /files) through one pooled cat.
func catConfig(t *testing.T, root string) func(string) string {
	cat := testenv.Require(t, "cat")
	return func(string) string {
		return fmt.Sprintf(`
[upstream.files]
kind = "file"
root = %q

[transform.cat]
command = [%q]
min = 1
max = 2

[[route]]
name = "files"
path = "/files"
source = "files"
transform = ["cat"]

[[route]]
name = "echo"
source = "body"
transform = ["cat"]
`, root, cat)
	}
}

// pseudoRandom is size reproducible bytes.
func pseudoRandom(size int64) io.Reader {
	return io.LimitReader(rand.New(rand.NewSource(size)), size)
}

// roundTrip sends body (size bytes, nil for a GET) and checks that the
// answer is 200 with exactly want's bytes.
func roundTrip(t *testing.T, method, url string, body io.Reader, size int64, want []byte) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	start := time.Now()
	// Its own client: the shared one's 60 s limit would cut a slow machine short.
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatalf("%s %s (%d MiB): %v", method, url, size>>20, err)
	}
	defer resp.Body.Close()
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	took := time.Since(start)
	if err != nil || resp.StatusCode != 200 || n != size {
		t.Fatalf("%s %s: status %d, %d of %d bytes back after %v, %v", method, url, resp.StatusCode, n, size, took, err)
	}
	if string(got.Sum(nil)) != string(want) {
		t.Fatalf("%s %s: %d MiB came back different", method, url, size>>20)
	}
	return took
}

// TestNginxStreamsLargeFile: a 128 MiB file through the file source, a
// pooled cat and nginx (response buffering off), byte for byte, while the
// daemon's peak memory stays far below the file's size.
func TestNginxStreamsLargeFile(t *testing.T) {
	// The whole request path is looked up under the root, /files included.
	root := filepath.Join(t.TempDir(), "site")
	if err := os.MkdirAll(filepath.Join(root, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 128 << 20
	f, err := os.Create(filepath.Join(root, "files", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, sum), pseudoRandom(size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d := startBridge(t, catConfig(t, root))
	ngx := peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true, NoResponseBuffering: true})
	took := roundTrip(t, "GET", ngx.URL("/files/big.bin"), nil, size, sum.Sum(nil))
	rss := peakRSS(d.cmd.Process.Pid)
	t.Logf("128 MiB file -> cat -> nginx in %v (%.0f MiB/s); daemon peak RSS %d MiB", took, float64(size>>20)/took.Seconds(), rss>>20)
	if rss > 64<<20 {
		t.Errorf("daemon peak RSS %d MiB for a 128 MiB file: memory grows with the content", rss>>20)
	}
}

// TestLargeRequestBodyThroughStreamingTransform: a request body bigger
// than the buffers on the way, through the body source and a transform
// that answers while it still reads (cat), behind each web server.
//
// Apache and lighttpd keep sending the request body while they read the
// response. nginx does not: once the upstream's response has begun it no
// longer sends the rest of the request body. Without request body
// buffering the transform would starve for input, the bridge for output,
// and nginx would give up after fastcgi_read_timeout with a truncated 200;
// the bridge spools the body first (as php-fpm does), so every peer gets
// the whole body back, and a regression fails here within 5 s.
func TestLargeRequestBodyThroughStreamingTransform(t *testing.T) {
	const size = 32 << 20
	sum := sha256.New()
	io.Copy(sum, pseudoRandom(size))
	want := sum.Sum(nil)
	for _, peer := range []string{"apache2", "lighttpd", "nginx"} {
		t.Run(peer, func(t *testing.T) {
			d := startBridge(t, catConfig(t, t.TempDir()))
			var s *peers.Server
			switch peer {
			case "apache2":
				s = peers.StartApache(t, peers.ApacheConfig{FastCGI: d.upstream()})
			case "lighttpd":
				s = peers.StartLighttpd(t, peers.LighttpdConfig{FastCGI: d.upstream()})
			case "nginx":
				s = peers.StartNginx(t, peers.NginxConfig{FastCGI: d.upstream(), KeepConn: true, ReadTimeout: "5s"})
				// Shown only when it fails (or with -v).
				t.Logf("if this fails: nginx is half duplex towards FastCGI, it stops sending the request body once the response began, " +
					"so the body source (source/builtin.go, bodySource.Fetch) must take the whole body first (spooling beyond a memory limit) " +
					"instead of handing the live STDIN to the transform")
			}
			took := roundTrip(t, "POST", s.URL("/echo"), pseudoRandom(size), size, want)
			rss := peakRSS(d.cmd.Process.Pid)
			t.Logf("%s: 32 MiB POST -> body -> cat -> back in %v; daemon peak RSS %d MiB", peer, took, rss>>20)
			if rss > 64<<20 {
				t.Errorf("daemon peak RSS %d MiB for a 32 MiB body", rss>>20)
			}
		})
	}
}
