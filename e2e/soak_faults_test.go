//go:build soak

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// The reliability suite is opt-in and long:
//
//	go test -tags soak -run TestFaultMatrix -v ./e2e/
//
// Its sizes are flags (-soak.requests=200) or, for runs through scripts,
// environment variables (SOAK_REQUESTS=200).
var (
	soakRequests    = flag.Int("soak.requests", envInt("SOAK_REQUESTS", 2000), "requests per fault of the fault matrix")
	soakConcurrency = flag.Int("soak.concurrency", envInt("SOAK_CONCURRENCY", 8), "requests in flight at once")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// outcomeAborted is a request that the bridge ended with an error after its
// output began: the FastCGI request did not complete normally (a broken
// stream or a non-zero application status), so the web server fails the
// transfer instead of passing a truncated body off as whole.
const outcomeAborted = "aborted"

// fault is one row of the matrix: a transform that misbehaves one way and
// what the design's failure table (§4) says the client gets.
type fault struct {
	name   string
	mode   string // testtransform mode
	extra  string // more [transform] settings
	expect []string
	// why says which row of the failure table applies.
	why string
}

var faults = []fault{
	{name: "exit-at-once", mode: testtransform.CrashAtStart,
		// The first processes may be leased before their exit is seen:
		// that is a crash before output (502); from then on the pool
		// backs off and every request gets the start failure (503).
		expect: []string{"503", "502"}, why: "start-up keeps failing: 503 (a lease that saw the death: 502)"},
	// Every process of this transform dies in its first lease, on its
	// own and within a second of its start: from the second such death
	// in a row the pool takes it for a program that cannot start, and
	// backs off (503) instead of forking a process per request.
	{name: "crash-mid-reply", mode: testtransform.CrashMidReply,
		expect: []string{outcomeAborted, "503"}, why: "crash after output began: the request ends with an error; start-up keeps failing: 503"},
	{name: "garbage", mode: testtransform.Garbage,
		expect: []string{"502"}, why: "protocol broken before output: 502"},
	{name: "hang", mode: testtransform.Hang, extra: `timeout = "200ms"`,
		expect: []string{"504"}, why: "exceeds its timeout: 504"},
	{name: "stderr-flood", mode: testtransform.StderrFlood,
		expect: []string{"200"}, why: "1 MiB of stderr per request is drained: 200, body intact"},
	// Deaf to SIGTERM too: each process lingers for its kill grace, which
	// must cost the request nothing.
	{name: "close-stdout", mode: testtransform.CloseStdout, extra: `kill_grace = "200ms"`,
		expect: []string{"502"}, why: "output closed without a reply: 502, at once"},
}

func faultConfig(exe string) func(string) string {
	return func(string) string {
		var b strings.Builder
		for _, f := range faults {
			// min 0 and a short idle timeout: once the run is over every
			// process retires, and the fd count must come back to where
			// it started.
			fmt.Fprintf(&b, `
[transform.%s]
command = [%q]
env = { %s = %q }
min = 0
max = 8
queue = 64
queue_timeout = "30s"
idle_timeout = "1s"
%s

[[route]]
name = %q
path = "/%s"
source = "body"
transform = [%q]
`, f.name, exe, testtransform.EnvMode, f.mode, f.extra, f.name, f.name, f.name)
		}
		return b.String()
	}
}

// soakRequest sends one RESPONDER request with body to path and returns
// its outcome: the status, outcomeAborted, or a description of what else
// happened.
func soakRequest(c *fcgi.Client, path, body string) (string, time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	params := []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: "POST"}, {Name: "REQUEST_URI", Value: path},
		{Name: "SCRIPT_NAME", Value: path}, {Name: "SERVER_NAME", Value: "localhost"},
		{Name: "SERVER_PORT", Value: "80"}, {Name: "HTTP_HOST", Value: "localhost"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"}, {Name: "REMOTE_ADDR", Value: "127.0.0.1"},
		{Name: "CONTENT_TYPE", Value: "text/plain"}, {Name: "CONTENT_LENGTH", Value: strconv.Itoa(len(body))},
	}
	resp, err := c.Do(ctx, &fcgi.ClientRequest{Params: params, Stdin: strings.NewReader(body)})
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return "error: " + err.Error(), time.Since(start)
		}
		// The bridge ended the request, or broke its connection on
		// purpose (its way to fail a response that began, when the
		// request is alone on it).
		return outcomeAborted, time.Since(start)
	}
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		return outcomeAborted, time.Since(start)
	}
	got, err := io.ReadAll(cgi.Body)
	took := time.Since(start)
	if err != nil || resp.AppStatus != 0 {
		return outcomeAborted, took
	}
	if cl := cgi.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(got)) {
		return outcomeAborted, took
	}
	if cgi.Status == 200 && string(got) != body {
		return fmt.Sprintf("200 with a wrong body (%d bytes)", len(got)), took
	}
	return strconv.Itoa(cgi.Status), took
}

func countFDsOf(pid int) int {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents)
}

func rssOf(pid int) string {
	_, rss := procMemory(pid)
	return fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20))
}

type faultResult struct {
	fault
	outcomes map[string]int
	lat      []time.Duration
	wall     time.Duration
}

func (r *faultResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(q*float64(len(r.lat))))]
}

// TestFaultMatrix runs every fault of the failure table against the real
// daemon, many requests each at once: each request must get the status the
// table gives, the daemon must stay up, and once the run is over no fd and
// no process may be left.
func TestFaultMatrix(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := startBridge(t, faultConfig(exe))
	pid := d.cmd.Process.Pid
	baseFDs := countFDsOf(pid)
	c := &fcgi.Client{Network: "unix", Address: d.socket, KeepConn: true, MaxIdleConns: *soakConcurrency}

	n, conc := *soakRequests, *soakConcurrency
	var results []*faultResult
	for _, f := range faults {
		r := &faultResult{fault: f, outcomes: map[string]int{}}
		var mu sync.Mutex
		next := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					outcome, took := soakRequest(c, "/"+f.name, fmt.Sprintf("request %d of %s\n", i, f.name))
					mu.Lock()
					r.outcomes[outcome]++
					r.lat = append(r.lat, took)
					mu.Unlock()
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		r.wall = time.Since(start)
		slices.Sort(r.lat)
		results = append(results, r)
		t.Logf("%s: %v in %v", f.name, r.outcomes, r.wall.Round(time.Millisecond))
		select {
		case <-d.done:
			t.Fatalf("the daemon exited during %s: %v", f.name, d.err)
		default:
		}
	}
	rss := rssOf(pid)
	c.Close()

	// Every process retires after its idle timeout and the client's
	// connections are closed: the daemon must be back to its fds at start
	// and have no process below it. Neither gives a signal: poll.
	var fds int
	var kids []int
	settled := testenv.Poll(30*time.Second, func() bool {
		fds, kids = countFDsOf(pid), descendants(pid)
		return fds <= baseFDs && len(kids) == 0
	})

	var table strings.Builder
	fmt.Fprintf(&table, "\n%d requests per fault, %d at once, fcgi-bridge pid %d\n\n", n, conc, pid)
	fmt.Fprintf(&table, "| fault | failure table | expected | got | p50 | p99 | max | wall |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		var got []string
		for o, k := range r.outcomes {
			got = append(got, fmt.Sprintf("%s ×%d", o, k))
		}
		sort.Strings(got)
		fmt.Fprintf(&table, "| %s | %s | %s | %s | %v | %v | %v | %v |\n", r.name, r.why, strings.Join(r.expect, " or "), strings.Join(got, ", "),
			r.quantile(0.5).Round(time.Millisecond), r.quantile(0.99).Round(time.Millisecond), r.lat[len(r.lat)-1].Round(time.Millisecond), r.wall.Round(time.Millisecond))
		for o, k := range r.outcomes {
			if !slices.Contains(r.expect, o) {
				t.Errorf("%s: %d requests got %q, the failure table says %v", r.name, k, o, r.expect)
			}
		}
	}
	fmt.Fprintf(&table, "\nafter the run: daemon RSS %s; fds %d (at start %d); processes below the daemon %d\n", rss, fds, baseFDs, len(kids))
	t.Log(table.String())
	if !settled {
		var names []string
		for _, k := range kids {
			if b, err := exec.Command("ps", "-o", "pid=,stat=,args=", "-p", strconv.Itoa(k)).Output(); err == nil {
				names = append(names, strings.TrimSpace(string(b)))
			}
		}
		t.Errorf("leaks after the run: %d fds (%d at start), processes %v", fds, baseFDs, names)
	}
}
