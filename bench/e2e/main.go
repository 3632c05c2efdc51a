// Command e2e is the end-to-end benchmark harness: in one run it measures,
// side by side behind the same nginx,
//
//   - nginx -> fcgi-bridge -> pooled nodejs renderer (testdata/node)
//     against nginx -> fcgiwrap -> the same renderer started per request
//     (the mod_ext_filter cost model);
//   - nginx -> fcgi-bridge, untransformed pass-through of an HTTP app,
//     against nginx proxying straight to the same app (proxy_pass with
//     upstream keepalive);
//
// and prints a markdown table. Load comes from a keep-alive Go HTTP loop
// of its own: fixed concurrency, fixed duration, bounded request count.
// Everything listens on 127.0.0.1 or unix sockets in a temp directory.
//
//	go run ./bench/e2e [-duration 10s] [-c 8]
//
// See bench/e2e/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "measured time per scenario (at most 2m)")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before each scenario")
	conc := flag.Int("c", 8, "concurrent keep-alive connections (at most 256)")
	maxReqs := flag.Int64("max-requests", 2_000_000, "stop a scenario after this many requests")
	renderers := flag.Int("renderers", 2, "pooled node renderers in the bridge (min = max)")
	fcgiwrapChildren := flag.Int("fcgiwrap-children", 0, "fcgiwrap worker processes (0: same as -c)")
	only := flag.String("scenarios", "render,cgi,pass,direct", "comma-separated scenarios to run (for profiling one); the ratios need all four")
	rounds := flag.Int("rounds", 3, "interleave the scenarios in this many rounds of duration/rounds each, so a change in the machine's background load hits all of them alike")
	flag.Parse()
	if *duration <= 0 || *duration > 2*time.Minute || *conc < 1 || *conc > 256 || *warmup < 0 || *warmup > time.Minute || *rounds < 1 || *rounds > 20 {
		fmt.Fprintln(os.Stderr, "bench: -duration must be in (0, 2m], -warmup in [0, 1m], -c in [1, 256], -rounds in [1, 20]")
		os.Exit(2)
	}
	if *fcgiwrapChildren <= 0 {
		*fcgiwrapChildren = *conc
	}
	h := &harness{}
	code := 0
	if err := h.run(*duration, *warmup, *conc, *maxReqs, *renderers, *fcgiwrapChildren, *rounds, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	h.stopAll()
	os.Exit(code)
}

// harness owns the processes it starts and stops them all at the end.
type harness struct {
	mu    sync.Mutex
	procs []*exec.Cmd
	dir   string
}

func (h *harness) start(name string, argv []string, dir string, env []string) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	out, err := os.Create(filepath.Join(h.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	h.mu.Lock()
	h.procs = append(h.procs, cmd)
	h.mu.Unlock()
	return cmd, nil
}

// stopAll terminates every started process group, then removes the
// temp directory.
func (h *harness) stopAll() {
	h.mu.Lock()
	procs := h.procs
	h.procs = nil
	h.mu.Unlock()
	for _, c := range procs {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	}
	for _, c := range procs {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if h.dir != "" {
		os.RemoveAll(h.dir)
	}
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/fcgi-bridge/fcgi-bridge\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the fcgi-bridge repository (go.mod not found)")
		}
		dir = parent
	}
}

func need(bin string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if st, err := os.Stat(filepath.Join(d, bin)); err == nil && st.Mode()&0o111 != 0 {
			return filepath.Join(d, bin), nil
		}
	}
	return "", fmt.Errorf("%s is not installed (see .ci/run for the Debian packages)", bin)
}

// page is what the app answers: a small page's worth of JSON.
var page = map[string]any{
	"title": "Benchmark page",
	"items": []map[string]any{
		{"name": "first <item>", "price": 12.5, "tags": []string{"a", "b"}},
		{"name": "second", "price": 7, "tags": []string{"c"}},
		{"name": "third & last", "price": 99.99, "tags": []string{}},
	},
	"user": map[string]string{"name": "alice", "lang": "en"},
}

func (h *harness) run(duration, warmup time.Duration, conc int, maxReqs int64, renderers, fcgiwrapChildren, rounds int, only string) error {
	root, err := findRepoRoot()
	if err != nil {
		return err
	}
	nginx, err := need("nginx")
	if err != nil {
		return err
	}
	fcgiwrap, err := need("fcgiwrap")
	if err != nil {
		return err
	}
	node, err := need("node")
	if err != nil {
		return err
	}
	nodeDir := filepath.Join(root, "testdata", "node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "subprocess-middleware")); err != nil {
		return errors.New("testdata/node/node_modules lacks subprocess-middleware: run npm ci in testdata/node")
	}
	// Sockets must be reachable by nginx's workers: a short, open path.
	h.dir, err = os.MkdirTemp("", "bench-e2e-")
	if err != nil {
		return err
	}
	if err := os.Chmod(h.dir, 0o755); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "bench: interrupted, stopping")
		h.stopAll()
		os.Exit(130)
	}()

	// The HTTP app every scenario's content comes from.
	body, _ := json.Marshal(page)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	})}
	go app.Serve(appLn)
	defer app.Close()
	appAddr := appLn.Addr().String()

	// fcgi-bridge, built from this tree.
	bridgeBin := filepath.Join(h.dir, "fcgi-bridge")
	build := exec.Command("go", "build", "-o", bridgeBin, "./cmd/fcgi-bridge")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build fcgi-bridge: %w", err)
	}
	bridgeSock := filepath.Join(h.dir, "bridge.sock")
	bridgeConf := filepath.Join(h.dir, "bridge.toml")
	err = os.WriteFile(bridgeConf, []byte(fmt.Sprintf(`[[listen]]
addr = "unix:%s"
mode = "0666"

[log]
level = "warn"
access = false

[upstream.app]
kind = "http"
url = "http://%s/"

[transform.render]
command = [%q, "render.js"]
dir = %q
min = %d
max = %d

[[route]]
name = "render"
path = "/render"
source = "app"
transform = ["render"]
source_content_type = ["application/json"]
content_type = "text/html; charset=utf-8"

[[route]]
name = "pass"
path = "/pass"
source = "app"
`, bridgeSock, appAddr, node, nodeDir, renderers, renderers)), 0o644)
	if err != nil {
		return err
	}
	bridgeCmd, err := h.start("fcgi-bridge", []string{bridgeBin, "-c", bridgeConf}, h.dir, nil)
	if err != nil {
		return err
	}
	bridgePid := bridgeCmd.Process.Pid

	// fcgiwrap running a CGI script that starts the renderer per request.
	cgiSock := filepath.Join(h.dir, "fcgiwrap.sock")
	jsonFile := filepath.Join(h.dir, "page.json")
	if err := os.WriteFile(jsonFile, body, 0o644); err != nil {
		return err
	}
	script := filepath.Join(h.dir, "render.cgi")
	err = os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
# mod_ext_filter's cost model: a new renderer process for every response.
# The JSON comes from a file, so the baseline pays nothing to fetch it.
cd %q || exit 1
printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
exec %q render.js --one-shot "http://$HTTP_HOST$REQUEST_URI" <%q
`, nodeDir, node, jsonFile)), 0o755)
	if err != nil {
		return err
	}
	if _, err := h.start("fcgiwrap", []string{fcgiwrap, "-c", fmt.Sprint(fcgiwrapChildren), "-s", "unix:" + cgiSock}, h.dir, []string{"PATH=/usr/bin:/bin"}); err != nil {
		return err
	}

	// nginx in front of all of them.
	port, err := freePort()
	if err != nil {
		return err
	}
	nginxConf := filepath.Join(h.dir, "nginx.conf")
	if err := os.WriteFile(nginxConf, []byte(nginxConfig(h.dir, port, bridgeSock, cgiSock, script, appAddr)), 0o644); err != nil {
		return err
	}
	if _, err := h.start("nginx", []string{nginx, "-p", h.dir + "/", "-c", nginxConf, "-e", filepath.Join(h.dir, "nginx-error.log")}, h.dir, nil); err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, s := range []string{bridgeSock, cgiSock} {
		if err := waitDial("unix", s, 30*time.Second); err != nil {
			return fmt.Errorf("%w\n%s", err, h.logs())
		}
	}
	if err := waitDial("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, h.logs())
	}

	// Check every path answers what it should before measuring.
	checks := []struct{ path, want string }{
		{"/render/page", "<dt>title</dt><dd>Benchmark page</dd>"},
		{"/cgi/page", "<dt>title</dt><dd>Benchmark page</dd>"},
		{"/pass/page", `"title":"Benchmark page"`},
		{"/direct/page", `"title":"Benchmark page"`},
	}
	for _, c := range checks {
		if err := checkPath(base+c.path, c.want); err != nil {
			return fmt.Errorf("%w\n%s", err, h.logs())
		}
	}

	all := []struct{ key, name, path string }{
		{"render", "nginx → fcgi-bridge → pooled node renderer", "/render/page"},
		{"cgi", "nginx → fcgiwrap → node renderer per request", "/cgi/page"},
		{"pass", "nginx → fcgi-bridge → HTTP app (pass-through)", "/pass/page"},
		{"direct", "nginx → proxy_pass keepalive → HTTP app", "/direct/page"},
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		want[strings.TrimSpace(k)] = true
	}
	scen := all[:0:0]
	for _, s := range all {
		if want[s.key] {
			scen = append(scen, s)
		}
	}
	if len(scen) == 0 {
		return fmt.Errorf("-scenarios %q names none of render, cgi, pass, direct", only)
	}
	results := make([]result, len(scen))
	fmt.Fprintf(os.Stderr, "bench: %d connections, %v per scenario in %d interleaved rounds after %v warm-up; %d pooled renderers, %d fcgiwrap children\n",
		conc, duration, rounds, warmup, renderers, fcgiwrapChildren)
	for i, s := range scen {
		results[i].name = s.name
		if warmup > 0 {
			load(base+s.path, conc, warmup, maxReqs)
		}
	}
	for round := 1; round <= rounds; round++ {
		for i, s := range scen {
			cpu0 := cpuTime(bridgePid)
			r := load(base+s.path, conc, duration/time.Duration(rounds), maxReqs)
			if s.key == "render" || s.key == "pass" {
				// Only where the bridge serves: elsewhere its idle CPU
				// divided by few requests would mislead.
				r.bridgeCPU = cpuTime(bridgePid) - cpu0
			}
			results[i].add(r)
			fmt.Fprintf(os.Stderr, "bench: round %d %-48s %9.1f req/s  errors %d\n", round, s.name, r.rps(), r.errors)
		}
	}
	for i := range results {
		sort.Slice(results[i].lat, func(a, b int) bool { return results[i].lat[a] < results[i].lat[b] })
	}

	fmt.Printf("\n%d keep-alive connections, %v per scenario in %d interleaved rounds (after %v warm-up), %s\n\n", conc, duration, rounds, warmup, machine())
	fmt.Println("| scenario | requests | req/s | p50 | p99 | errors | fcgi-bridge CPU per request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		cpu := "–"
		if r.bridgeCPU > 0 && r.ok > 0 {
			cpu = fmt.Sprintf("%d µs", (r.bridgeCPU / time.Duration(r.ok)).Microseconds())
		}
		fmt.Printf("| %s | %d | %.1f | %v | %v | %d | %s |\n", r.name, r.ok, r.rps(), r.pct(50), r.pct(99), r.errors, cpu)
	}
	ratio := func(a, b result) float64 {
		if b.rps() == 0 {
			return 0
		}
		return a.rps() / b.rps()
	}
	if len(results) != len(all) {
		return nil
	}
	fmt.Println()
	fmt.Println("| comparison | ratio | goal |")
	fmt.Println("|---|---:|---:|")
	fmt.Printf("| pooled renderer via fcgi-bridge / renderer per request via fcgiwrap | %.1fx | ≥ 100x |\n", ratio(results[0], results[1]))
	fmt.Printf("| fcgi-bridge pass-through / nginx proxy_pass | %.2fx | ≥ 0.8x |\n", ratio(results[2], results[3]))
	for _, r := range results {
		if r.errors > 0 {
			return fmt.Errorf("%s: %d failed requests (first: %s)", r.name, r.errors, r.firstErr)
		}
	}
	return nil
}

func (h *harness) logs() string {
	var b strings.Builder
	for _, n := range []string{"fcgi-bridge.log", "fcgiwrap.log", "nginx.log", "nginx-error.log"} {
		data, _ := os.ReadFile(filepath.Join(h.dir, n))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", n, data)
	}
	return b.String()
}

func nginxConfig(dir string, port int, bridgeSock, cgiSock, script, appAddr string) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;\n"
	}
	params := `
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;`
	return fmt.Sprintf(`%[1]sdaemon off;
worker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    keepalive_requests 1000000;
    upstream bridge { server unix:%[4]s; keepalive 64; }
    upstream cgi { server unix:%[5]s; }
    upstream app { server %[7]s; keepalive 64; }
    server {
        listen 127.0.0.1:%[3]d;
        server_name localhost;
        location /render/ {
            fastcgi_pass bridge;
            fastcgi_keep_conn on;%[8]s
        }
        location /pass/ {
            fastcgi_pass bridge;
            fastcgi_keep_conn on;%[8]s
        }
        location /cgi/ {
            fastcgi_pass cgi;%[8]s
            fastcgi_param SCRIPT_FILENAME %[6]s;
        }
        location /direct/ {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
`, user, dir, port, bridgeSock, cgiSock, script, appAddr, params)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitDial(network, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not accepting after %v: %w", network, addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkPath(url, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("check %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
		return fmt.Errorf("check %s: %d %.300q, want %q in the body", url, resp.StatusCode, b, want)
	}
	return nil
}

// result is one scenario's measurement.
type result struct {
	name     string
	ok       int64
	errors   int64
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration
	// bridgeCPU is the CPU time fcgi-bridge itself (not its transforms)
	// used during the measurement.
	bridgeCPU time.Duration
}

// add accumulates another measurement of the same scenario.
func (r *result) add(o result) {
	r.ok += o.ok
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.bridgeCPU += o.bridgeCPU
	r.lat = append(r.lat, o.lat...)
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

func (r result) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := (len(r.lat) - 1) * p / 100
	return r.lat[i].Round(10 * time.Microsecond)
}

// load runs conc keep-alive clients against url for d (or until maxReqs
// requests), each sending its next request when the previous answer is
// read in full.
func load(url string, conc int, d time.Duration, maxReqs int64) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var sent, ok, errs atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, conc)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for time.Now().Before(deadline) && sent.Add(1) <= maxReqs {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err == nil {
					for {
						_, rerr := resp.Body.Read(buf)
						if rerr != nil {
							if rerr != io.EOF {
								err = rerr
							}
							break
						}
					}
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
				lats[w] = append(lats[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	r := result{ok: ok.Load(), errors: errs.Load(), elapsed: time.Since(start)}
	if v, _ := firstErr.Load().(string); v != "" {
		r.firstErr = v
	}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	return r
}

// cpuTime is the user+system CPU time of process pid (all its threads,
// not its children), from /proc/PID/stat in clock ticks of 10 ms.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// machine describes where the figures come from.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					model = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	out, _ := exec.Command("nproc").Output()
	return fmt.Sprintf("%s CPUs (%s)", strings.TrimSpace(string(out)), model)
}
