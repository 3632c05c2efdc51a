// Command fcgi-bench measures a FastCGI responder round trip over a unix
// socket with kept connections: this project's fcgi.Server against Go's
// net/http/fcgi, both serving the same trivial handler in this process, both
// driven by the fcgi-request load generator (a separate process) at each
// concurrency, alternately, in one run. It prints a markdown table.
//
//	go run ./bench/cmd/fcgi-bench                      # builds fcgi-request itself
//	go run ./bench/cmd/fcgi-bench --duration 10s --rounds 5 --concurrency 1,32
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	stdfcgi "net/http/fcgi"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/spf13/pflag"
)

var body = []byte("hello, world\n")

// The same trivial handler for both servers: a fixed body with an explicit
// type and length.
func ourHandler(w fcgi.ResponseWriter, r *fcgi.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(200)
	w.Write(body)
}

func stdHandler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(200)
	w.Write(body)
}

type report struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	RPS      float64 `json:"requests_per_second"`
	Latency  struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
	FirstError string `json:"first_error"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "fcgi-bench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		tool        = pflag.String("fcgi-request", "", "fcgi-request binary (default: build ./cmd/fcgi-request)")
		duration    = pflag.Duration("duration", 5*time.Second, "length of each measurement")
		rounds      = pflag.Int("rounds", 3, "measurements per server and concurrency; the median is reported")
		concurrency = pflag.String("concurrency", "1,32", "comma-separated concurrency levels")
		jsonOut     = pflag.Bool("json", false, "also print every measurement as JSON lines on stderr")
	)
	pflag.Parse()
	var levels []int
	for _, s := range strings.Split(*concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--concurrency %q: want numbers like 1,32", *concurrency)
		}
		levels = append(levels, n)
	}

	dir, err := os.MkdirTemp("", "fcgi-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	if *tool == "" {
		*tool = filepath.Join(dir, "fcgi-request")
		build := exec.Command("go", "build", "-o", *tool, "./cmd/fcgi-request")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build fcgi-request (run from the repository root, or pass --fcgi-request): %w", err)
		}
	}

	ourSock := filepath.Join(dir, "fcgi.sock")
	ourL, err := net.Listen("unix", ourSock)
	if err != nil {
		return err
	}
	ours := &fcgi.Server{Handler: fcgi.HandlerFunc(ourHandler)}
	go ours.Serve(ourL)
	defer ours.Close()

	stdSock := filepath.Join(dir, "std.sock")
	stdL, err := net.Listen("unix", stdSock)
	if err != nil {
		return err
	}
	go stdfcgi.Serve(stdL, http.HandlerFunc(stdHandler))
	defer stdL.Close()

	servers := []struct{ name, addr string }{
		{"fcgi", "unix:" + ourSock},
		{"net/http/fcgi", "unix:" + stdSock},
	}
	// Check both answer before measuring.
	for _, s := range servers {
		out, err := exec.Command(*tool, s.addr, "/bench", "-i").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello, world") {
			return fmt.Errorf("%s does not answer: %v\n%s", s.name, err, out)
		}
	}

	type key struct {
		server string
		c      int
	}
	results := map[key][]report{}
	for round := 0; round < *rounds; round++ {
		for _, c := range levels {
			// Alternate which server goes first so drift hits both alike.
			order := servers
			if round%2 == 1 {
				order = []struct{ name, addr string }{servers[1], servers[0]}
			}
			for _, s := range order {
				rep, err := measure(*tool, s.addr, c, *duration)
				if err != nil {
					return fmt.Errorf("%s at concurrency %d: %w", s.name, c, err)
				}
				results[key{s.name, c}] = append(results[key{s.name, c}], rep)
				fmt.Fprintf(os.Stderr, "round %d  %-14s c=%-3d %10.0f req/s  p50 %.3fms  p99 %.3fms  errors %d\n",
					round+1, s.name, c, rep.RPS, rep.Latency.P50, rep.Latency.P99, rep.Errors)
				if *jsonOut {
					b, _ := json.Marshal(map[string]any{"server": s.name, "concurrency": c, "round": round + 1, "report": rep})
					fmt.Fprintln(os.Stderr, string(b))
				}
			}
		}
	}

	fmt.Printf("\nResponder round trip, unix socket, keep-conn, %d-byte body; fcgi-request load mode, %v per run, median of %d runs; %s, GOMAXPROCS=%d, %s\n\n",
		len(body), *duration, *rounds, runtime.Version(), runtime.GOMAXPROCS(0), cpuModel())
	fmt.Println("| concurrency | fcgi req/s | net/http/fcgi req/s | ratio | fcgi p50 / p99 ms | net/http/fcgi p50 / p99 ms |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|")
	for _, c := range levels {
		a := median(results[key{"fcgi", c}])
		b := median(results[key{"net/http/fcgi", c}])
		fmt.Printf("| %d | %.0f | %.0f | %.2fx | %.3f / %.3f | %.3f / %.3f |\n",
			c, a.RPS, b.RPS, a.RPS/b.RPS, a.Latency.P50, a.Latency.P99, b.Latency.P50, b.Latency.P99)
	}
	return nil
}

func measure(tool, addr string, c int, d time.Duration) (report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, addr, "/bench", "-k", "-c", strconv.Itoa(c), "--duration", d.String(), "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var rep report
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return rep, fmt.Errorf("fcgi-request: %v %v: %s", err, jerr, stderr.String())
	}
	if rep.Errors > 0 {
		return rep, fmt.Errorf("%d errors, first: %s", rep.Errors, rep.FirstError)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return rep, err
	}
	return rep, nil
}

// median picks the run with the median throughput.
func median(rs []report) report {
	s := append([]report(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].RPS < s[j].RPS })
	return s[len(s)/2]
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 1<<16))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return fmt.Sprintf("%d x %s", runtime.NumCPU(), strings.TrimSpace(v))
			}
		}
	}
	return runtime.GOARCH
}
