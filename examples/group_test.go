package examples_test

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// docsBlock returns the fenced code between the "NAME: from here" and
// "NAME: to here" markers of docs/deploy.md, without its fence lines.
func docsBlock(t *testing.T, name string) string {
	t.Helper()
	doc := read(t, "../docs/deploy.md")
	_, rest, ok := strings.Cut(doc, "<!-- "+name+": from here -->")
	block, _, ok2 := strings.Cut(rest, "<!-- "+name+": to here -->")
	if !ok || !ok2 {
		t.Fatalf("docs/deploy.md has no %q markers", name)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if !strings.HasPrefix(l, "```") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// TestNginxUpstreamGroup runs the upstream block of docs/deploy.md's
// "Several bridges behind one web server" in examples/nginx.conf, in front
// of two bridges: requests go to both, and once one is stopped every
// request is still answered, by the other.
func TestNginxUpstreamGroup(t *testing.T) {
	nginx := testenv.Require(t, "nginx")
	requireRoot(t, serversAsRoot)
	packaged(t, "www-data", "www-data")

	run := filepath.Dir(runDir(t))
	a := startBridge(t, filepath.Join(run, "a.sock"), "www-data", "")
	b := startBridge(t, filepath.Join(run, "b.sock"), "www-data", "")
	group := strings.NewReplacer(
		"/run/fcgi-bridge/a.sock", a.sock,
		"/run/fcgi-bridge/b.sock", b.sock,
	).Replace(docsBlock(t, "upstream group"))

	// The example with its upstream block replaced by the docs' one.
	example := read(t, "nginx.conf")
	start := strings.Index(example, "    upstream fcgi_bridge {")
	end := strings.Index(example[start:], "\n    }\n")
	if start < 0 || end < 0 {
		t.Fatal("examples/nginx.conf has no upstream fcgi_bridge block")
	}
	port := testenv.FreePort(t)
	conf := filepath.Join(instanceDir(t, "nginx-group-conf"), "nginx.conf")
	writeFile(t, conf, strings.NewReplacer(
		"listen 127.0.0.1:8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
	).Replace(example[:start]+group+example[start+end+len("\n    }\n"):]))
	prefix := instanceDir(t, "nginx-group")
	runOK(t, nil, nginx, "-t", "-p", prefix, "-e", "error.log", "-c", conf)
	s := peers.StartProcess(t, peers.Process{Name: "nginx", Port: port, Dir: prefix,
		Argv:     []string{nginx, "-p", prefix, "-e", "error.log", "-c", conf, "-g", "daemon off;"},
		LogFiles: []string{filepath.Join(prefix, "error.log")}})

	served := func(n int) {
		t.Helper()
		for i := range n {
			url := s.URL(fmt.Sprintf("/app/page%d", i))
			if code, _, body := post(t, url, "text/html"); code != 200 || !strings.Contains(body, "<dt>name</dt>") {
				t.Fatalf("POST %s: %d, want the rendered page:\n%s\nnginx:\n%s", url, code, body, s.Logs())
			}
		}
	}
	// The access line follows the answer: wait for the ten lines.
	logged := func(n int) bool { return a.log.Count("uri=/app/")+b.log.Count("uri=/app/") >= n }
	served(10)
	testenv.Poll(10*time.Second, func() bool { return logged(10) })
	na, nb := a.log.Count("uri=/app/"), b.log.Count("uri=/app/")
	if na == 0 || nb == 0 || na+nb != 10 {
		t.Fatalf("10 requests: bridge a served %d, bridge b %d; want both to serve, 10 in all", na, nb)
	}

	a.stop()
	served(10)
	testenv.Poll(10*time.Second, func() bool { return logged(20) })
	if got := b.log.Count("uri=/app/"); got != nb+10 {
		t.Errorf("with bridge a stopped, bridge b served %d of 10 requests", got-nb)
	}
}

// TestContainerImage checks what examples/Dockerfile promises without a
// container runtime: its build line makes a static binary, the image runs
// as a user of its own, and its configuration passes -t and makes a socket
// of mode 0660 in the bridge's own group, which the image sets to the web
// server's.
func TestContainerImage(t *testing.T) {
	docker := read(t, "Dockerfile")
	var build, user string
	for _, line := range strings.Split(docker, "\n") {
		if strings.HasPrefix(line, "RUN CGO_ENABLED=0 go build ") {
			build = strings.TrimPrefix(line, "RUN ")
		}
		if u, ok := strings.CutPrefix(line, "USER "); ok {
			user = u
		}
	}
	if build == "" {
		t.Fatal("examples/Dockerfile has no RUN CGO_ENABLED=0 go build line")
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Fatalf("examples/Dockerfile runs as %q, want a user of its own", user)
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(strings.ReplaceAll(build, "/out/", out+"/"), "${VERSION}", "container-test"))
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build line: %v\n%s", err, b)
	}
	bin := filepath.Join(out, "fcgi-bridge")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the image's binary is dynamically linked; the base image may lack its libraries")
		}
	}
	if v, _ := exec.Command(bin, "--version").CombinedOutput(); !strings.Contains(string(v), "container-test") {
		t.Errorf("--version = %q, want the VERSION build argument", v)
	}

	conf := read(t, "container.toml")
	if !strings.Contains(conf, `addr = "unix:`+socketPath+`"`) || !strings.Contains(docker, "VOLUME "+filepath.Dir(socketPath)) {
		t.Fatalf("container.toml's socket is not on the image's volume %s", filepath.Dir(socketPath))
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "fcgi.sock")
	file := filepath.Join(dir, "fcgi-bridge.toml")
	writeFile(t, file, strings.ReplaceAll(conf, socketPath, sock))
	if b, err := exec.Command(bin, "-t", "-c", file).CombinedOutput(); err != nil || strings.Contains(string(b), "warning") {
		t.Fatalf("-t on the image's configuration: %v\n%s", err, b)
	}
	run := exec.Command(bin, "-c", file)
	stderr, err := run.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.NewLines(stderr)
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Process.Signal(syscall.SIGTERM); run.Wait() })
	if _, ok := log.WaitFor("fcgi-bridge started", 20*time.Second); !ok {
		t.Fatalf("the bridge did not start on the image's configuration:\n%s", log)
	}
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || int(st.Sys().(*syscall.Stat_t).Gid) != os.Getegid() {
		t.Errorf("socket: mode %v gid %d, want 0660 in the bridge's own group %d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, os.Getegid())
	}
}
