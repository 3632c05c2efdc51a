package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// walkthrough is the README's "Five minutes with nginx": its shell blocks in
// order, the answer it shows for the first page, and its stop command, with
// /tmp/fb and the two ports replaced so that the test can run beside others.
type walkthrough struct {
	blocks []string // ```sh blocks
	answer string   // the ``` block after the first curl
	stop   string   // the command that stops nginx
}

func readWalkthrough(t *testing.T, dir string, bridgePort, nginxPort int) walkthrough {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "## Five minutes with nginx")
	if start < 0 {
		t.Fatal(`README.md has no "## Five minutes with nginx" section`)
	}
	text = text[start:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	text = strings.NewReplacer(
		"/tmp/fb", dir,
		"127.0.0.1:9100", "127.0.0.1:"+strconv.Itoa(bridgePort),
		"127.0.0.1:8180", "127.0.0.1:"+strconv.Itoa(nginxPort),
	).Replace(text)
	var w walkthrough
	for _, m := range regexp.MustCompile("(?s)```(sh)?\n(.*?)```").FindAllStringSubmatch(text, -1) {
		switch {
		case m[1] == "sh":
			w.blocks = append(w.blocks, m[2])
		case len(w.blocks) == 4 && w.answer == "":
			w.answer = m[2]
		}
	}
	if m := regexp.MustCompile("`(kill -QUIT [^`]*)`").FindStringSubmatch(text); m != nil {
		w.stop = m[1]
	}
	if len(w.blocks) != 6 || w.answer == "" || w.stop == "" {
		t.Fatalf("the walk-through changed shape (%d shell blocks, answer %t, stop command %q): update this test with it",
			len(w.blocks), w.answer != "", w.stop)
	}
	return w
}

// splitLast cuts a block before its last line, which must start with
// prefix: the command that keeps running in its terminal.
func splitLast(t *testing.T, block, prefix string) (string, string) {
	t.Helper()
	block = strings.TrimRight(block, "\n")
	i := strings.LastIndex(block, "\n")
	if i < 0 || !strings.HasPrefix(block[i+1:], prefix) {
		t.Fatalf("the block's last command should start with %q:\n%s", prefix, block)
	}
	return block[:i+1], block[i+1:]
}

// TestReadmeWalkthrough follows the README's five-minute walk-through as a
// newcomer would, command by command, from the build to a page rendered by
// node through nginx, and checks what each step says will happen.
func TestReadmeWalkthrough(t *testing.T) {
	bash := testenv.Require(t, "bash")
	testenv.Require(t, "go")
	testenv.Require(t, "nginx")
	testenv.Require(t, "curl")
	testenv.Require(t, "node")
	if _, err := os.Stat(filepath.Join(repoRoot, "testdata/node/node_modules/subprocess-middleware")); err != nil {
		testenv.Missing(t, "testdata/node/node_modules lacks subprocess-middleware (run npm ci there)")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers run as nobody under root
		t.Fatal(err)
	}

	run := func(step, script string) string {
		t.Helper()
		cmd := exec.Command(bash, "-e", "-c", script)
		cmd.Dir = repoRoot
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s\n--- output:\n%s%s", step, err, script, out, stderr.String())
		}
		return string(out)
	}
	waitPort := func(step string, port int, done <-chan struct{}) {
		t.Helper()
		if err := testenv.WaitListening("tcp", "127.0.0.1:"+strconv.Itoa(port), done, 3*time.Minute); err != nil {
			t.Fatalf("%s on port %d: %v", step, port, err)
		}
	}

	// 1. Build, make content. The ports are chosen after the build, which
	// takes a while under a loaded CI: a port found free long before it is
	// bound may have been taken meanwhile.
	run("step 1", readWalkthrough(t, dir, 0, 0).blocks[0])
	bridgePort, nginxPort := testenv.FreePort(t), testenv.FreePort(t)
	w := readWalkthrough(t, dir, bridgePort, nginxPort)

	// 2. Quick mode, in its own terminal.
	quick := runDaemon(t, bash, "-c", "exec "+strings.TrimSpace(w.blocks[1]))
	waitPort("the quick-mode bridge", bridgePort, quick.done)

	// 3. nginx, in a second terminal.
	setup, nginxCmd := splitLast(t, w.blocks[2], "nginx ")
	run("step 3 (config)", setup)
	ngx := exec.Command(bash, "-c", "exec "+nginxCmd)
	ngx.Dir = repoRoot
	ngx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ngxLog := &strings.Builder{}
	ngx.Stdout, ngx.Stderr = ngxLog, ngxLog
	if err := ngx.Start(); err != nil {
		t.Fatal(err)
	}
	ngxDone := make(chan struct{})
	go func() { _ = ngx.Wait(); close(ngxDone) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-ngx.Process.Pid, syscall.SIGKILL)
		<-ngxDone
	})
	waitPort("nginx", nginxPort, ngxDone)

	// 4. The page, as the README shows it.
	got := strings.ReplaceAll(run("step 4", w.blocks[3]), "\r\n", "\n")
	gotLines := strings.Split(got, "\n")
	next := 0
	for _, want := range strings.Split(strings.TrimRight(w.answer, "\n"), "\n") {
		if want == "…" {
			continue
		}
		prefix, elided := strings.CutSuffix(want, "…")
		for next < len(gotLines) && !(gotLines[next] == want || elided && strings.HasPrefix(gotLines[next], prefix)) {
			next++
		}
		if next == len(gotLines) {
			t.Fatalf("step 4: the README shows the line %q, which curl did not print (in this order):\n%s", want, got)
		}
		next++
	}
	// The access line is written once the answer is out, so it may trail curl.
	if _, ok := quick.log.WaitFor("msg=access", 10*time.Second); !ok {
		t.Errorf("step 4: no access line in the bridge's log:\n%s", quick.log)
	}

	// 5. Ctrl-C the bridge, then the config file and node.
	quick.signal(syscall.SIGINT)
	if code := quick.wait(40 * time.Second); code != 0 {
		t.Errorf("the quick-mode bridge exited %d after Ctrl-C", code)
	}
	block := w.blocks[4]
	const npm = "(cd testdata/node && npm ci)\n"
	if !strings.HasPrefix(block, npm) {
		t.Fatalf("step 5 should start with %q:\n%s", npm, block)
	}
	// npm ci empties node_modules before filling it again, under the feet of
	// the other packages' node tests running at the same time; CI has run it
	// (checked above), so the step is taken as done.
	setup, bridgeCmd := splitLast(t, strings.TrimPrefix(block, npm), dir+"/fcgi-bridge -c ")
	if out := run("step 5 (config and -t)", setup); !strings.Contains(out, "is valid") {
		t.Errorf("step 5: -t said %q", out)
	}
	full := runDaemon(t, bash, "-c", "exec "+bridgeCmd)
	waitPort("the configured bridge", bridgePort, full.done)

	curls := strings.Split(strings.TrimSpace(w.blocks[5]), "\n")
	if len(curls) != 2 {
		t.Fatalf("step 5 should end with two curl commands:\n%s", w.blocks[5])
	}
	if page := run("step 5 (HTML)", curls[0]); !strings.Contains(page, "<html") || !strings.Contains(page, "Hello") {
		t.Errorf("step 5: %q gave %q, want the page rendered by node", curls[0], page)
	}
	content, err := os.ReadFile(filepath.Join(dir, "site", "page.json"))
	if err != nil {
		t.Fatal(err)
	}
	if raw := run("step 5 (JSON)", curls[1]); raw != string(content) {
		t.Errorf("step 5: %q gave %q, want the JSON untouched: %q", curls[1], raw, content)
	}
	if _, ok := full.log.WaitFor("route=page", 10*time.Second); !ok {
		t.Errorf("step 5: no access line for the page route:\n%s", full.log)
	}

	// Done: Ctrl-C the bridge, and the README's command for nginx.
	procs := descendants(full.cmd.Process.Pid)
	full.signal(syscall.SIGINT)
	if code := full.wait(40 * time.Second); code != 0 {
		t.Errorf("the bridge exited %d after Ctrl-C", code)
	}
	if left := waitGone(procs, 5*time.Second); len(left) > 0 {
		t.Errorf("node processes left after the bridge stopped: %v", left)
	}
	run("stop nginx", w.stop)
	select {
	case <-ngxDone:
	case <-time.After(20 * time.Second):
		t.Errorf("nginx still runs 20 s after %q:\n%s", w.stop, ngxLog)
	}
}
