//go:build soak

package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The hostile-upstream part of the reliability suite (go test -tags soak
// -run HostileUpstreams ./e2e/): an HTTP upstream and a FastCGI upstream
// that each send their answer in tiny writes or records, endless headers, a
// body longer than declared, or a body shorter than declared followed by
// silence. The bridge reads them through a transform for clients that read
// slowly; every request must end with the status the failure table gives,
// the daemon must survive, and its peak RSS must stay under 64 MiB.

const (
	hostileRSSLimit = 64 << 20
	// hostileRSSAbort ends the run at once: an unbounded bridge would
	// otherwise take the machine's memory.
	hostileRSSAbort = 512 << 20
	tinyParts       = 300_000 // one-byte writes or records per tiny answer
)

// hostileCases name the behaviours both upstreams have, with the statuses
// a client may get. A longer body than declared is a complete message
// followed by stray bytes: the declared body is the answer (as net/http
// and nginx read it) and the connection is not reused once the stray bytes
// are seen. When they arrive only after the connection was checked and
// reused, the next request on it reads them and gets a 502, as it would
// through net/http's Transport.
var hostileCases = []struct {
	name   string
	want   []int
	expect string // the body a 200 must carry ("" = not checked)
	slow   bool   // read by a client that waits before reading
}{
	{"headers", []int{502, 504}, "", false},
	{"longer", []int{200, 502}, "0123456789", false},
	{"shorter", []int{502, 504}, "", false},
	{"tiny", []int{200}, strings.Repeat("X", tinyParts), true},
}

func TestSoakHostileUpstreams(t *testing.T) {
	httpUp := hostileHTTPUpstream(t)
	fcgiUp := hostileFastCGIUpstream(t)
	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[transform.upper]
command = ["@self", "transform", "upper"]
min = 2
max = 8
timeout = "4s"

[upstream.http]
kind = "http"
url = "http://%s/"
response_timeout = "3s"

[upstream.fcgi]
kind = "fastcgi"
address = "tcp:%s"
response_timeout = "3s"

[[route]]
name = "http"
path = "/http/"
source = "http"
transform = ["upper"]

[[route]]
name = "fcgi"
path = "/fcgi/"
source = "fcgi"
transform = ["upper"]
`, httpUp, fcgiUp)
	})
	pid := d.cmd.Process.Pid
	stopWatch := watchRSS(t, d, pid)
	defer stopWatch()

	const perCase, concurrency = 8, 4
	var table strings.Builder
	fmt.Fprintf(&table, "%-6s %-8s %-16s %-8s %s\n", "source", "case", "statuses", "slowest", "peak RSS after")
	for _, kind := range []string{"http", "fcgi"} {
		for _, tc := range hostileCases {
			select {
			case <-d.done:
				t.Fatalf("the bridge exited during the run (%v):\n%s", d.err, table.String())
			default:
			}
			var mu sync.Mutex
			counts := map[int]int{}
			var slowest time.Duration
			sem := make(chan struct{}, concurrency)
			var wg sync.WaitGroup
			for i := range perCase {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					start := time.Now()
					status, body, err := rawFastCGIGet(d.socket, fmt.Sprintf("/%s/%s/%d", kind, tc.name, i), tc.slow)
					took := time.Since(start)
					mu.Lock()
					defer mu.Unlock()
					slowest = max(slowest, took)
					if err != nil {
						t.Errorf("%s %s #%d: %v", kind, tc.name, i, err)
						return
					}
					counts[status]++
					ok := false
					for _, s := range tc.want {
						ok = ok || s == status
					}
					if !ok {
						t.Errorf("%s %s #%d: status %d, want one of %v (%.200q)", kind, tc.name, i, status, tc.want, body)
					} else if status == 200 && tc.expect != "" && body != strings.ToUpper(tc.expect) {
						t.Errorf("%s %s #%d: 200 with %d bytes %.60q, want %d bytes %.60q", kind, tc.name, i, len(body), body, len(tc.expect), strings.ToUpper(tc.expect))
					}
				})
			}
			wg.Wait()
			var statuses []string
			for _, st := range []int{200, 502, 504} {
				if counts[st] > 0 {
					statuses = append(statuses, fmt.Sprintf("%d×%d", st, counts[st]))
				}
			}
			peak, _ := procMemory(pid)
			fmt.Fprintf(&table, "%-6s %-8s %-16s %-8v %.1f MiB\n", kind, tc.name, strings.Join(statuses, " "), slowest.Round(time.Millisecond), float64(peak)/(1<<20))
		}
	}
	peak, rss := procMemory(pid)
	t.Logf("hostile upstreams, %d requests per case at concurrency %d:\n%sbridge RSS now %.1f MiB, peak %.1f MiB",
		perCase, concurrency, table.String(), float64(rss)/(1<<20), float64(peak)/(1<<20))
	if peak > hostileRSSLimit {
		t.Errorf("bridge peak RSS %.1f MiB, limit %d MiB", float64(peak)/(1<<20), hostileRSSLimit>>20)
	}
	select {
	case <-d.done:
		t.Fatalf("the bridge exited during the run: %v", d.err)
	default:
	}
}

// watchRSS kills the bridge if its RSS passes hostileRSSAbort, so a run
// against an unbounded bridge fails instead of exhausting the machine.
func watchRSS(t *testing.T, d *daemon, pid int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-d.done:
				return
			case <-tick.C:
			}
			if _, rss := procMemory(pid); rss > hostileRSSAbort {
				t.Errorf("bridge RSS %.0f MiB passed %d MiB: killed", float64(rss)/(1<<20), hostileRSSAbort>>20)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// procMemory returns a process's peak and current resident set (VmHWM and
// VmRSS) in bytes.
func procMemory(pid int) (peak, rss int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch name {
		case "VmHWM":
			peak = kb << 10
		case "VmRSS":
			rss = kb << 10
		}
	}
	return peak, rss
}

// serveHostile runs serve on each connection to a new TCP listener until
// the test ends, and returns the listener's address.
func serveHostile(t *testing.T, serve func(c net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return l.Addr().String()
}

// hostileCase is the case a request path such as /http/tiny/3 names.
func hostileCase(uri string) string {
	parts := strings.Split(uri, "/")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// hostileHTTPUpstream answers each request as its path's case says.
func hostileHTTPUpstream(t *testing.T) string {
	return serveHostile(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		if f := strings.Fields(line); len(f) >= 2 {
			hostileHTTPAnswer(c, hostileCase(f[1]))
		}
	})
}

func hostileHTTPAnswer(c net.Conn, name string) {
	switch name {
	case "tiny":
		// Chunked, one byte per chunk and per write.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range tinyParts {
			if _, err := io.WriteString(c, "1\r\nx\r\n"); err != nil {
				return
			}
		}
		io.WriteString(c, "0\r\n\r\n")
	case "headers":
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := []byte("X-Endless: " + strings.Repeat("a", 100) + "\r\n")
		for {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	case "longer":
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789")
		c.Write(bytes.Repeat([]byte("more than declared "), 1<<16))
	case "shorter":
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n")
		io.WriteString(c, strings.Repeat("s", 1000))
		io.Copy(io.Discard, c) // silent until the bridge gives up
	}
}

// FastCGI record types (FastCGI 1.0, section 8).
const (
	fcgiBeginRequest = 1
	fcgiEndRequest   = 3
	fcgiParams       = 4
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiGetValues    = 9
	fcgiValuesResult = 10
)

func appendFCGIRecord(b []byte, typ byte, id uint16, content []byte) []byte {
	b = append(b, 1, typ, byte(id>>8), byte(id), byte(len(content)>>8), byte(len(content)), 0, 0)
	return append(b, content...)
}

func appendFCGIPair(b []byte, name, value string) []byte {
	for _, n := range []int{len(name), len(value)} {
		if n < 128 {
			b = append(b, byte(n))
		} else {
			b = binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
		}
	}
	return append(append(b, name...), value...)
}

// readFCGIRecord reads one record; content is valid until the next call.
func readFCGIRecord(r *bufio.Reader, buf []byte) (typ byte, id uint16, content []byte, err error) {
	var h [8]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[4:])) + int(h[6])
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err = io.ReadFull(r, buf); err != nil {
		return 0, 0, nil, err
	}
	return h[1], binary.BigEndian.Uint16(h[2:]), buf[:binary.BigEndian.Uint16(h[4:])], nil
}

// hostileFastCGIUpstream is a FastCGI responder answering as the case in
// the request's REQUEST_URI says, one request per connection.
func hostileFastCGIUpstream(t *testing.T) string {
	return serveHostile(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		var params []byte
		var id uint16
		buf := make([]byte, 0, 64<<10)
		for {
			typ, rid, content, err := readFCGIRecord(br, buf)
			if err != nil {
				return
			}
			switch typ {
			case fcgiGetValues:
				c.Write(appendFCGIRecord(nil, fcgiValuesResult, 0, nil))
				continue
			case fcgiBeginRequest:
				id = rid
			case fcgiParams:
				params = append(params, content...)
			}
			if typ == fcgiStdin && len(content) == 0 {
				break
			}
		}
		// The URI is short: its name and value lengths take a byte each.
		uri := ""
		if i := bytes.Index(params, []byte("REQUEST_URI")); i >= 2 {
			n := int(params[i-1])
			uri = string(params[i+len("REQUEST_URI") : i+len("REQUEST_URI")+n])
		}
		hostileFastCGIAnswer(c, id, hostileCase(uri))
	})
}

func hostileFastCGIAnswer(c net.Conn, id uint16, name string) {
	end := appendFCGIRecord(nil, fcgiEndRequest, id, make([]byte, 8))
	switch name {
	case "tiny":
		// One byte per STDOUT record, sent in batches of records.
		out := appendFCGIRecord(nil, fcgiStdout, id, []byte("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"))
		for i := 0; i < tinyParts; i++ {
			out = appendFCGIRecord(out, fcgiStdout, id, []byte{'x'})
			if len(out) >= 32<<10 {
				if _, err := c.Write(out); err != nil {
					return
				}
				out = out[:0]
			}
		}
		out = appendFCGIRecord(out, fcgiStdout, id, nil)
		c.Write(append(out, end...))
	case "headers":
		c.Write(appendFCGIRecord(nil, fcgiStdout, id, []byte("Status: 200 OK\r\n")))
		rec := appendFCGIRecord(nil, fcgiStdout, id, []byte("X-Endless: "+strings.Repeat("a", 100)+"\r\n"))
		for {
			if _, err := c.Write(rec); err != nil {
				return
			}
		}
	case "longer":
		out := appendFCGIRecord(nil, fcgiStdout, id, []byte("Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789"))
		extra := bytes.Repeat([]byte("more than declared "), 3000)
		for range 20 {
			out = appendFCGIRecord(out, fcgiStdout, id, extra)
		}
		out = appendFCGIRecord(out, fcgiStdout, id, nil)
		c.Write(append(out, end...))
	case "shorter":
		c.Write(appendFCGIRecord(nil, fcgiStdout, id, []byte("Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("s", 1000))))
		io.Copy(io.Discard, c) // silent until the bridge gives up
	}
}

// rawFastCGIGet sends a RESPONDER GET for uri to the bridge on sock and
// returns the CGI status and body. A slow client sends its request, then
// reads nothing for two seconds, as a web server whose client stalls: the
// bridge must hold what it has read meanwhile within its bounds.
func rawFastCGIGet(sock, uri string, slow bool) (int, string, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	var params []byte
	for _, p := range [][2]string{{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", uri}, {"SCRIPT_NAME", uri},
		{"SERVER_PROTOCOL", "HTTP/1.1"}, {"HTTP_HOST", "hostile.test"}, {"CONTENT_LENGTH", ""}} {
		params = appendFCGIPair(params, p[0], p[1])
	}
	req := appendFCGIRecord(nil, fcgiBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0})
	req = appendFCGIRecord(req, fcgiParams, 1, params)
	req = appendFCGIRecord(req, fcgiParams, 1, nil)
	req = appendFCGIRecord(req, fcgiStdin, 1, nil)
	if _, err := c.Write(req); err != nil {
		return 0, "", err
	}
	if slow {
		time.Sleep(2 * time.Second) // the stalled reader is what this case tests
	}
	br := bufio.NewReaderSize(c, 64<<10)
	var out bytes.Buffer
	buf := make([]byte, 0, 64<<10)
	for {
		typ, _, content, err := readFCGIRecord(br, buf)
		if err != nil {
			return 0, "", fmt.Errorf("after %d bytes of output: %w", out.Len(), err)
		}
		if typ == fcgiStdout {
			out.Write(content)
		}
		if typ == fcgiEndRequest {
			break
		}
	}
	head, body, ok := strings.Cut(out.String(), "\r\n\r\n")
	if !ok {
		return 0, "", fmt.Errorf("no CGI head in %.200q", out.String())
	}
	status := 200
	for _, line := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Status: "); ok {
			status, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return status, body, nil
}
