// Command e2e is the end-to-end benchmark harness: in one run it measures,
// side by side behind the same nginx,
//
//   - nginx -> fcgi-bridge -> pooled nodejs renderer (testdata/node)
//     against nginx -> fcgiwrap -> the same renderer started per request
//     (the mod_ext_filter cost model);
//   - nginx -> fcgi-bridge, untransformed pass-through of an HTTP app,
//     against nginx proxying straight to the same app (proxy_pass with
//     upstream keepalive);
//   - for reference, nginx -> a second nginx server over a unix socket ->
//     the same app: the cheapest extra hop there is, with the bridge's
//     topology, so the pass-through can be judged against what any
//     intermediary costs on this machine and not only against none;
//   - for reference, nginx -> a minimal Go FastCGI relay (bench/e2e/floor)
//     -> the same app: the bridge's hop done with the least work a Go
//     program on the standard library's netpoller can do, so the bridge's
//     own overhead can be told from the cost of the hop itself, and the
//     same relay piping the app's answer through its own pooled node
//     renderers, so the bridge's render overhead can be told from the cost
//     of the pipe exchange itself;
//
// and prints markdown tables, with the CPU time per request of the whole
// machine and of nginx, the intermediary (fcgi-bridge or the floor relay),
// the bridge's transforms, the HTTP app (bench/e2e/app, a process of its
// own) and the harness, which only generates the load: a keep-alive HTTP
// loop of its own, fixed concurrency, fixed duration, bounded request count.
// Everything listens on 127.0.0.1 or unix sockets in a temp directory.
//
//	go run ./bench/e2e [-duration 10s] [-c 8]
//
// See bench/e2e/README.md.
package main

import (
	"context"
	"encoding/binary"
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
	"strconv"
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
	only := flag.String("scenarios", "render,cgi,pass,floor,floor-render,direct,hop", "comma-separated scenarios to run (for profiling one); a ratio is printed when both its scenarios ran")
	client := flag.String("client", "raw", "load generator: raw (a minimal HTTP/1.1 loop, the default) or net/http (Go's client, 20–30 µs more CPU per request on the same CPUs)")
	compare := flag.String("compare", "", "a second fcgi-bridge binary, run beside the tree's build with the same configuration: adds render-b and pass-b, measured in the same interleaved rounds, and the ratios of the two builds")
	rounds := flag.Int("rounds", 3, "interleave the scenarios in this many rounds of duration/rounds each, so a change in the machine's background load hits all of them alike")
	flag.Parse()
	switch *client {
	case "raw":
	case "net/http":
		generate = func(addr, path string, conc int, d time.Duration, maxReqs int64) result {
			return load("http://"+addr+path, conc, d, maxReqs)
		}
	default:
		fmt.Fprintf(os.Stderr, "bench: -client %q: want raw or net/http\n", *client)
		os.Exit(2)
	}
	if *duration <= 0 || *duration > 2*time.Minute || *conc < 1 || *conc > 256 || *warmup < 0 || *warmup > time.Minute || *rounds < 1 || *rounds > 20 {
		fmt.Fprintln(os.Stderr, "bench: -duration must be in (0, 2m], -warmup in [0, 1m], -c in [1, 256], -rounds in [1, 20]")
		os.Exit(2)
	}
	if *fcgiwrapChildren <= 0 {
		*fcgiwrapChildren = *conc
	}
	h := &harness{}
	code := 0
	if err := h.run(*duration, *warmup, *conc, *maxReqs, *renderers, *fcgiwrapChildren, *rounds, *only, *compare); err != nil {
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

func (h *harness) run(duration, warmup time.Duration, conc int, maxReqs int64, renderers, fcgiwrapChildren, rounds int, only, compare string) error {
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

	// The HTTP app every scenario's content comes from, a process of its
	// own so its CPU is counted apart from the load generator's.
	body, _ := json.Marshal(page)
	jsonFile := filepath.Join(h.dir, "page.json")
	if err := os.WriteFile(jsonFile, body, 0o644); err != nil {
		return err
	}
	appBin, err := h.goBuild(root, "app", "./bench/e2e/app")
	if err != nil {
		return err
	}
	appPort, err := freePort()
	if err != nil {
		return err
	}
	appAddr := fmt.Sprintf("127.0.0.1:%d", appPort)
	appCmd, err := h.start("app", []string{appBin, "-addr", appAddr, "-page", jsonFile}, h.dir, nil)
	if err != nil {
		return err
	}
	appPid := appCmd.Process.Pid
	if err := waitDial("tcp", appAddr, 30*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, h.logs())
	}

	// fcgi-bridge, built from this tree.
	bridgeBin, err := h.goBuild(root, "fcgi-bridge", "./cmd/fcgi-bridge")
	if err != nil {
		return err
	}
	bridgeSock := filepath.Join(h.dir, "bridge.sock")
	bridgePid, err := h.startBridge("fcgi-bridge", bridgeBin, bridgeSock, "", appAddr, node, nodeDir, renderers)
	if err != nil {
		return err
	}
	// The minimal Go relay, the floor the pass-through and (with its own
	// pooled renderers) the render scenario are measured against.
	floorBin, err := h.goBuild(root, "floor", "./bench/e2e/floor")
	if err != nil {
		return err
	}
	floorSock := filepath.Join(h.dir, "floor.sock")
	floorCmd, err := h.start("floor", []string{floorBin, "-listen", floorSock, "-app", appAddr,
		"-renderers", fmt.Sprint(renderers), "-node", node, "-render-dir", nodeDir}, h.dir, nil)
	if err != nil {
		return err
	}
	floorPid := floorCmd.Process.Pid
	// The build to compare with, if any: same configuration, its own
	// socket, its routes under /render-b/ and /pass-b/.
	bridgeSockB, bridgePidB := "", 0
	if compare != "" {
		bridgeSockB = filepath.Join(h.dir, "bridge-b.sock")
		if bridgePidB, err = h.startBridge("fcgi-bridge-b", compare, bridgeSockB, "-b", appAddr, node, nodeDir, renderers); err != nil {
			return err
		}
	}

	// fcgiwrap running a CGI script that starts the renderer per request.
	cgiSock := filepath.Join(h.dir, "fcgiwrap.sock")
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
	if err := os.WriteFile(nginxConf, []byte(nginxConfig(h.dir, port, bridgeSock, cgiSock, script, appAddr, bridgeSockB, floorSock)), 0o644); err != nil {
		return err
	}
	// With daemon off the started process is nginx's master; its workers
	// are its children.
	nginxCmd, err := h.start("nginx", []string{nginx, "-p", h.dir + "/", "-c", nginxConf, "-e", filepath.Join(h.dir, "nginx-error.log")}, h.dir, nil)
	if err != nil {
		return err
	}
	nginxPid := nginxCmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := "http://" + addr
	hopSock := filepath.Join(h.dir, "hop.sock")
	socks := []string{bridgeSock, cgiSock, hopSock, floorSock}
	if bridgeSockB != "" {
		socks = append(socks, bridgeSockB)
	}
	for _, s := range socks {
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
		{"/floor/page", `"title":"Benchmark page"`},
		{"/floor-render/page", "<dt>title</dt><dd>Benchmark page</dd>"},
		{"/direct/page", `"title":"Benchmark page"`},
		{"/hop/page", `"title":"Benchmark page"`},
	}
	if compare != "" {
		checks = append(checks, struct{ path, want string }{"/render-b/page", "<dt>title</dt><dd>Benchmark page</dd>"},
			struct{ path, want string }{"/pass-b/page", `"title":"Benchmark page"`})
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
		{"floor", "nginx → minimal Go FastCGI relay (reference) → HTTP app", "/floor/page"},
		{"floor-render", "nginx → minimal Go relay + pooled node renderer (reference)", "/floor-render/page"},
		{"direct", "nginx → proxy_pass keepalive → HTTP app", "/direct/page"},
		{"hop", "nginx → nginx proxy hop (unix socket) → HTTP app", "/hop/page"},
		{"render-b", "nginx → fcgi-bridge (-compare build) → pooled node renderer", "/render-b/page"},
		{"pass-b", "nginx → fcgi-bridge (-compare build) → HTTP app (pass-through)", "/pass-b/page"},
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		k = strings.TrimSpace(k)
		want[k] = true
		if compare != "" && (k == "render" || k == "pass") {
			want[k+"-b"] = true
		}
	}
	scen := all[:0:0]
	for _, s := range all {
		if want[s.key] {
			scen = append(scen, s)
		}
	}
	if len(scen) == 0 {
		return fmt.Errorf("-scenarios %q names none of render, cgi, pass, floor, floor-render, direct, hop", only)
	}
	results := make([]result, len(scen))
	fmt.Fprintf(os.Stderr, "bench: %d connections, %v per scenario in %d interleaved rounds after %v warm-up; %d pooled renderers, %d fcgiwrap children\n",
		conc, duration, rounds, warmup, renderers, fcgiwrapChildren)
	for i, s := range scen {
		results[i].key, results[i].name = s.key, s.name
		if warmup > 0 {
			generate(addr, s.path, conc, warmup, maxReqs)
		}
	}
	tick := clockTick()
	self := os.Getpid()
	for round := 1; round <= rounds; round++ {
		for i, s := range scen {
			before := takeCPUSnapshot()
			r := generate(addr, s.path, conc, duration/time.Duration(rounds), maxReqs)
			after := takeCPUSnapshot()
			r.machineCPU = time.Duration(after.busy-before.busy) * tick
			r.idleTicks, r.stealTicks, r.totalTicks = after.idle-before.idle, after.steal-before.steal, after.total-before.total
			r.nginxCPU = time.Duration(ownCPU(before, after, nginxPid)+childrenCPU(before, after, nginxPid)) * tick
			r.harnessCPU = time.Duration(ownCPU(before, after, self)) * tick
			r.appCPU = time.Duration(ownCPU(before, after, appPid)) * tick
			// The intermediary's (the bridge's, or the floor relay's) and
			// the renderers' columns only where they serve: elsewhere
			// their idle CPU divided by requests they never saw would
			// mislead.
			pid := bridgePid
			if strings.HasSuffix(s.key, "-b") {
				pid = bridgePidB
			}
			if s.key == "floor" || s.key == "floor-render" {
				pid = floorPid
			}
			switch s.key {
			case "render", "pass", "render-b", "pass-b", "floor", "floor-render":
				r.bridgeCPU = time.Duration(ownCPU(before, after, pid)) * tick
				r.hasBridge = true
			}
			switch s.key {
			case "render", "render-b", "floor-render":
				r.transformCPU = time.Duration(childrenCPU(before, after, pid)) * tick
				r.hasTransforms = true
			}
			results[i].add(r)
			fmt.Fprintf(os.Stderr, "bench: round %d %-50s %9.1f req/s  errors %d\n", round, s.name, r.rps(), r.errors)
		}
	}
	for i := range results {
		sort.Slice(results[i].lat, func(a, b int) bool { return results[i].lat[a] < results[i].lat[b] })
	}

	fmt.Printf("\n%d keep-alive connections, %v per scenario in %d interleaved rounds (after %v warm-up), %s\n\n", conc, duration, rounds, warmup, machine())
	fmt.Println("CPU columns: CPU time per successful request. machine: all CPUs' busy time (/proc/stat user+nice+system+irq+softirq);")
	fmt.Println("fcgi-bridge: the intermediary, fcgi-bridge or in the floor scenarios the minimal Go relay; transforms: its child processes, the pooled renderers;")
	fmt.Println("app: the HTTP app's process (bench/e2e/app), which every scenario's content comes from; load: this harness, the load generator alone;")
	fmt.Println("idle / steal: shares of all CPU time idle (with iowait) and taken by the hypervisor.")
	fmt.Println()
	fmt.Println("| scenario | requests | req/s | p50 | p99 | errors | machine CPU/req | nginx CPU/req | fcgi-bridge CPU/req | transforms CPU/req | app CPU/req | load CPU/req | idle / steal |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %d | %.1f | %v | %v | %d | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.ok, r.rps(), r.pct(50), r.pct(99), r.errors,
			r.perRequest(r.machineCPU, true), r.perRequest(r.nginxCPU, true), r.perRequest(r.bridgeCPU, r.hasBridge),
			r.perRequest(r.transformCPU, r.hasTransforms), r.perRequest(r.appCPU, true), r.perRequest(r.harnessCPU, true), r.idleSteal())
	}

	byKey := map[string]result{}
	for _, r := range results {
		byKey[r.key] = r
	}
	header := false
	for _, c := range comparisons() {
		value, ok := c.value(byKey)
		if !ok {
			continue
		}
		if !header {
			fmt.Println()
			fmt.Println("| comparison | ratio | goal | met |")
			fmt.Println("|---|---:|---:|---|")
			header = true
		}
		fmt.Printf("| %s | %s | %s | %s |\n", c.label, fmtValue(c.format, value), c.goal, c.met(value))
	}
	for _, r := range results {
		if r.errors > 0 {
			return fmt.Errorf("%s: %d failed requests (first: %s)", r.name, r.errors, r.firstErr)
		}
	}
	return nil
}

// goBuild builds the package pkg of the tree at root into the harness's
// directory as name.
func (h *harness) goBuild(root, name, pkg string) (string, error) {
	bin := filepath.Join(h.dir, name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return bin, nil
}

// startBridge writes the bridge's configuration (its routes' paths end in
// suffix) and starts bin with it.
func (h *harness) startBridge(name, bin, sock, suffix, appAddr, node, nodeDir string, renderers int) (int, error) {
	conf := filepath.Join(h.dir, name+".toml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`[[listen]]
addr = "unix:%[1]s"
mode = "0666"

[log]
level = "warn"
access = false

[upstream.app]
kind = "http"
url = "http://%[2]s/"

[transform.render]
command = [%[3]q, "render.js"]
dir = %[4]q
min = %[5]d
max = %[6]d

[[route]]
name = "render"
path = "/render%[7]s"
source = "app"
transform = ["render"]
source_content_type = ["application/json"]
content_type = "text/html; charset=utf-8"

[[route]]
name = "pass"
path = "/pass%[7]s"
source = "app"
`, sock, appAddr, node, nodeDir, renderers, renderers, suffix)), 0o644)
	if err != nil {
		return 0, err
	}
	cmd, err := h.start(name, []string{bin, "-c", conf}, h.dir, nil)
	if err != nil {
		return 0, err
	}
	return cmd.Process.Pid, nil
}

func (h *harness) logs() string {
	var b strings.Builder
	for _, n := range []string{"app.log", "fcgi-bridge.log", "fcgi-bridge-b.log", "floor.log", "fcgiwrap.log", "nginx.log", "nginx-error.log"} {
		data, _ := os.ReadFile(filepath.Join(h.dir, n))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", n, data)
	}
	return b.String()
}

func nginxConfig(dir string, port int, bridgeSock, cgiSock, script, appAddr, bridgeSockB, floorSock string) string {
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
	compared, upstreamB := "", ""
	if bridgeSockB != "" {
		upstreamB = "\n    upstream bridge_b { server unix:" + bridgeSockB + "; keepalive 64; }"
		compared = fmt.Sprintf(`
        location /render-b/ {
            fastcgi_pass bridge_b;
            fastcgi_keep_conn on;%[1]s
        }
        location /pass-b/ {
            fastcgi_pass bridge_b;
            fastcgi_keep_conn on;%[1]s
        }`, params)
	}
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
    upstream hop { server unix:%[2]s/hop.sock; keepalive 64; }
    upstream floor { server unix:%[11]s; keepalive 64; }%[10]s
    server {
        listen 127.0.0.1:%[3]d;
        server_name localhost;%[9]s
        location /render/ {
            fastcgi_pass bridge;
            fastcgi_keep_conn on;%[8]s
        }
        location /pass/ {
            fastcgi_pass bridge;
            fastcgi_keep_conn on;%[8]s
        }
        location /floor/ {
            fastcgi_pass floor;
            fastcgi_keep_conn on;%[8]s
        }
        location /floor-render/ {
            fastcgi_pass floor;
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
        location /hop/ {
            proxy_pass http://hop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
    # The reference hop: the bridge's topology (unix socket in, loopback
    # TCP with keepalive out to the app) with nginx's own C proxy as the
    # intermediary, the cheapest one available.
    server {
        listen unix:%[2]s/hop.sock;
        server_name localhost;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
`, user, dir, port, bridgeSock, cgiSock, script, appAddr, params, compared, upstreamB, floorSock)
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
	key      string
	name     string
	ok       int64
	errors   int64
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration
	// CPU time used during the measurement: machineCPU by all CPUs
	// (whatever ran), nginxCPU by nginx's master and workers, bridgeCPU by
	// the intermediary itself (fcgi-bridge, or the floor relay in the
	// floor scenarios), transformCPU by the intermediary's child processes
	// (the pooled renderers), appCPU by the HTTP app's process, harnessCPU
	// by this process (the load generator).
	machineCPU, nginxCPU, bridgeCPU, transformCPU, appCPU, harnessCPU time.Duration
	// idleTicks, stealTicks and totalTicks are the machine's idle, stolen
	// and total CPU time during the measurement, in clock ticks.
	idleTicks, stealTicks, totalTicks int64
	// hasBridge and hasTransforms say whether bridgeCPU and transformCPU
	// were measured for this scenario.
	hasBridge, hasTransforms bool
}

// add accumulates another measurement of the same scenario.
func (r *result) add(o result) {
	r.ok += o.ok
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.machineCPU += o.machineCPU
	r.nginxCPU += o.nginxCPU
	r.bridgeCPU += o.bridgeCPU
	r.transformCPU += o.transformCPU
	r.appCPU += o.appCPU
	r.harnessCPU += o.harnessCPU
	r.idleTicks += o.idleTicks
	r.stealTicks += o.stealTicks
	r.totalTicks += o.totalTicks
	r.hasBridge = r.hasBridge || o.hasBridge
	r.hasTransforms = r.hasTransforms || o.hasTransforms
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

// comparison is a row of the ratio table: a figure computed from the
// results of one or two scenarios, against its goal.
type comparison struct {
	label, format, goal string
	value               func(map[string]result) (float64, bool)
	// atMost: the goal is an upper bound; limit 0: a reference figure
	// with no goal.
	limit  float64
	atMost bool
}

func (c comparison) met(v float64) string {
	switch {
	case c.limit == 0:
		return "–"
	case c.atMost && v <= c.limit, !c.atMost && v >= c.limit:
		return "yes"
	}
	return "no"
}

func fmtValue(format string, v float64) string { return fmt.Sprintf(format, v) }

// throughputRatio is scenario a's req/s divided by scenario b's.
func throughputRatio(a, b string) func(map[string]result) (float64, bool) {
	return func(m map[string]result) (float64, bool) {
		ra, okA := m[a]
		rb, okB := m[b]
		if !okA || !okB || rb.rps() <= 0 {
			return 0, false
		}
		return ra.rps() / rb.rps(), true
	}
}

// comparisons lists the ratio table: the goals of the one-message-path work
// (the bridge's CPU per request, its throughput against nginx's own proxy
// and against the cheapest extra hop, the app's CPU per request behind the
// bridge against behind that hop) and the figures kept for reference,
// among them the bridge against the minimal Go relay of bench/e2e/floor.
func comparisons() []comparison {
	return []comparison{
		{label: "pooled renderer via fcgi-bridge / renderer per request via fcgiwrap", format: "%.1fx", goal: "≥ 100x",
			value: throughputRatio("render", "cgi"), limit: 100},
		{label: "render: fcgi-bridge CPU/req ÷ transforms CPU/req", format: "%.2f", goal: "≤ 0.5",
			value: transformShare("render"), limit: 0.5, atMost: true},
		{label: "pass-through: fcgi-bridge CPU/req (µs)", format: "%.0f", goal: "≤ 30",
			value: func(m map[string]result) (float64, bool) {
				r, ok := m["pass"]
				if !ok || !r.hasBridge || r.ok == 0 {
					return 0, false
				}
				return float64(r.bridgeCPU/time.Duration(r.ok)) / float64(time.Microsecond), true
			}, limit: 30, atMost: true},
		{label: "fcgi-bridge pass-through / nginx proxy_pass", format: "%.2fx", goal: "≥ 0.5x",
			value: throughputRatio("pass", "direct"), limit: 0.5},
		{label: "fcgi-bridge pass-through / nginx proxy hop", format: "%.2fx", goal: "≥ 0.75x",
			value: throughputRatio("pass", "hop"), limit: 0.75},
		{label: "nginx proxy hop / nginx proxy_pass", format: "%.2fx", goal: "reference",
			value: throughputRatio("hop", "direct")},
		{label: "HTTP app CPU/req behind fcgi-bridge ÷ behind the nginx hop", format: "%.2f", goal: "≤ 1.1",
			value: appCPURatio("pass", "hop"), limit: 1.1, atMost: true},
		{label: "HTTP app CPU/req behind the minimal Go relay ÷ behind the nginx hop", format: "%.2f", goal: "reference",
			value: appCPURatio("floor", "hop")},
		{label: "fcgi-bridge pass-through ÷ minimal Go relay, intermediary CPU/req", format: "%.2f", goal: "reference",
			value: bridgeCPURatio("pass", "floor")},
		{label: "minimal Go relay / nginx proxy hop (req/s)", format: "%.2fx", goal: "reference",
			value: throughputRatio("floor", "hop")},
		{label: "minimal Go relay render: intermediary CPU/req ÷ transforms CPU/req", format: "%.2f", goal: "reference",
			value: transformShare("floor-render")},
		{label: "fcgi-bridge render ÷ minimal Go relay render, intermediary CPU/req", format: "%.2f", goal: "reference",
			value: bridgeCPURatio("render", "floor-render")},
		{label: "render: this build / -compare build (req/s)", format: "%.2fx", goal: "reference",
			value: throughputRatio("render", "render-b")},
		{label: "render: this build ÷ -compare build, fcgi-bridge CPU/req", format: "%.2f", goal: "reference",
			value: bridgeCPURatio("render", "render-b")},
		{label: "pass-through: this build / -compare build (req/s)", format: "%.2fx", goal: "reference",
			value: throughputRatio("pass", "pass-b")},
		{label: "pass-through: this build ÷ -compare build, fcgi-bridge CPU/req", format: "%.2f", goal: "reference",
			value: bridgeCPURatio("pass", "pass-b")},
	}
}

// transformShare is the intermediary's CPU divided by its transforms' CPU
// in one scenario (per request, both over the same requests).
func transformShare(key string) func(map[string]result) (float64, bool) {
	return func(m map[string]result) (float64, bool) {
		r, ok := m[key]
		if !ok || !r.hasBridge || !r.hasTransforms || r.transformCPU <= 0 {
			return 0, false
		}
		return float64(r.bridgeCPU) / float64(r.transformCPU), true
	}
}

// bridgeCPURatio compares the intermediary's CPU per request in two
// scenarios.
func bridgeCPURatio(a, b string) func(map[string]result) (float64, bool) {
	return cpuRatio(a, b, func(r result) (time.Duration, bool) { return r.bridgeCPU, r.hasBridge })
}

// appCPURatio compares the HTTP app's CPU per request in two scenarios:
// how much harder one intermediary's upstream requests make it work than
// another's.
func appCPURatio(a, b string) func(map[string]result) (float64, bool) {
	return cpuRatio(a, b, func(r result) (time.Duration, bool) { return r.appCPU, true })
}

// cpuRatio divides scenario a's CPU per request by scenario b's, for the
// CPU column cpu picks (and says was measured).
func cpuRatio(a, b string, cpu func(result) (time.Duration, bool)) func(map[string]result) (float64, bool) {
	return func(m map[string]result) (float64, bool) {
		ra, okA := m[a]
		rb, okB := m[b]
		if !okA || !okB || ra.ok == 0 || rb.ok == 0 {
			return 0, false
		}
		ca, measuredA := cpu(ra)
		cb, measuredB := cpu(rb)
		if !measuredA || !measuredB || cb <= 0 {
			return 0, false
		}
		return (float64(ca) / float64(ra.ok)) / (float64(cb) / float64(rb.ok)), true
	}
}

// perRequest formats CPU time d divided by the successful requests, or a
// dash when it was not measured.
func (r result) perRequest(d time.Duration, measured bool) string {
	if !measured || r.ok == 0 {
		return "–"
	}
	return fmt.Sprintf("%d µs", (d / time.Duration(r.ok)).Microseconds())
}

// idleSteal formats the shares of the machine's CPU time that were idle
// and stolen during the measurement.
func (r result) idleSteal() string {
	if r.totalTicks <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%% / %.0f%%", 100*float64(r.idleTicks)/float64(r.totalTicks), 100*float64(r.stealTicks)/float64(r.totalTicks))
}

func (r result) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := (len(r.lat) - 1) * p / 100
	return r.lat[i].Round(10 * time.Microsecond)
}

// generate is the load generator the scenarios run with (-client).
var generate = rawLoad

// load runs conc keep-alive clients on Go's http.Client against url for d
// (or until maxReqs requests), each sending its next request when the
// previous answer is read in full.
func load(url string, conc int, d time.Duration, maxReqs int64) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return drive(conc, d, maxReqs, func() (func() error, func()) {
		buf := make([]byte, 32<<10)
		return func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					if err != io.EOF {
						return err
					}
					break
				}
			}
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}, func() {}
	})
}

// drive runs conc workers for d (or until maxReqs requests in all), each
// calling its own do for one request after another, and tallies the
// answers: do returns nil for a complete 200. newWorker gives a worker its
// do and what to run when it stops.
func drive(conc int, d time.Duration, maxReqs int64, newWorker func() (do func() error, stop func())) result {
	var sent, ok, errs atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, conc)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			do, stop := newWorker()
			defer stop()
			for time.Now().Before(deadline) && sent.Add(1) <= maxReqs {
				t0 := time.Now()
				if err := do(); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
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

// cpuSnapshot is the machine's and every process's CPU counters at one
// moment, in clock ticks.
type cpuSnapshot struct {
	// busy is the time all CPUs spent on work: user+nice+system+irq+softirq
	// from /proc/stat. Left out: idle and iowait (nothing ran), steal (the
	// hypervisor gave the CPU to another guest: not work done here, and on
	// this VM it moves with the neighbours) and guest/guest_nice (already
	// counted in user and nice).
	busy int64
	// idle is idle+iowait and steal the time taken by the hypervisor: with
	// total (busy+idle+steal) they show whether a scenario had the CPUs to
	// itself and used them all.
	idle, steal, total int64
	procs              map[int]procCPU
}

// procCPU is one process's CPU counters from /proc/PID/stat.
type procCPU struct {
	ppid int
	own  int64 // utime+stime: all its threads
	// reaped is cutime+cstime: what its children used, added when it
	// waited for them.
	reaped int64
}

func takeCPUSnapshot() cpuSnapshot {
	snap := cpuSnapshot{procs: map[int]procCPU{}}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...
		if len(f) >= 9 && f[0] == "cpu" {
			var n [9]int64
			for i := 1; i <= 8; i++ {
				n[i], _ = strconv.ParseInt(f[i], 10, 64)
			}
			snap.busy = n[1] + n[2] + n[3] + n[6] + n[7]
			snap.idle = n[4] + n[5]
			snap.steal = n[8]
			snap.total = snap.busy + snap.idle + snap.steal
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProcCPU(pid); ok {
			snap.procs[pid] = p
		}
	}
	return snap
}

// readProcCPU parses /proc/PID/stat. The command name in parentheses may
// itself hold spaces and parentheses, so the fields are counted from after
// the last ')'.
func readProcCPU(pid int) (procCPU, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procCPU{}, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procCPU{}, false
	}
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return procCPU{}, false
	}
	var n [5]int64
	for k, idx := range []int{1, 11, 12, 13, 14} {
		if n[k], err = strconv.ParseInt(f[idx], 10, 64); err != nil {
			return procCPU{}, false
		}
	}
	return procCPU{ppid: int(n[0]), own: n[1] + n[2], reaped: n[3] + n[4]}, true
}

// ownCPU is the ticks pid itself used between a and b.
func ownCPU(a, b cpuSnapshot, pid int) int64 {
	pb, ok := b.procs[pid]
	if !ok {
		return 0
	}
	return pb.own - a.procs[pid].own
}

// childrenCPU is the ticks parent's child processes used between a and b:
// those alive at b count from their state at a (or from zero if they
// started since); those that exited in between reached the parent's
// reaped counter with their whole lifetime, of which the part before a is
// taken off again.
func childrenCPU(a, b cpuSnapshot, parent int) int64 {
	var t int64
	for pid, p := range b.procs {
		if p.ppid != parent {
			continue
		}
		t += p.own
		if old, ok := a.procs[pid]; ok && old.ppid == parent {
			t -= old.own
		}
	}
	t += b.procs[parent].reaped - a.procs[parent].reaped
	for pid, p := range a.procs {
		if p.ppid != parent {
			continue
		}
		if now, ok := b.procs[pid]; !ok || now.ppid != parent {
			t -= p.own
		}
	}
	return t
}

// clockTick is the unit of the /proc CPU counters: the kernel's USER_HZ,
// which it hands every process in its auxiliary vector as AT_CLKTCK (what
// sysconf(_SC_CLK_TCK) returns). It is 100 on every mainstream Linux
// build, the fallback when the vector cannot be read.
func clockTick() time.Duration {
	const atClkTck = 17
	data, err := os.ReadFile("/proc/self/auxv")
	word := strconv.IntSize / 8
	if err == nil {
		for i := 0; i+2*word <= len(data); i += 2 * word {
			var key, val uint64
			if word == 8 {
				key, val = binary.NativeEndian.Uint64(data[i:]), binary.NativeEndian.Uint64(data[i+8:])
			} else {
				key, val = uint64(binary.NativeEndian.Uint32(data[i:])), uint64(binary.NativeEndian.Uint32(data[i+4:]))
			}
			if key == atClkTck && val > 0 && val <= uint64(time.Second) {
				return time.Second / time.Duration(val)
			}
			if key == 0 {
				break
			}
		}
	}
	return 10 * time.Millisecond
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
