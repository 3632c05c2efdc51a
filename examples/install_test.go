package examples_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

var (
	installOnce sync.Once
	installRoot string
	installErr  error
	installOut  []byte
	// installDescribe is what git describe said when the install was
	// built: what the installed --version must name.
	installDescribe string
)

// installed runs `make install DESTDIR=...` once, with the default PREFIX,
// and returns DESTDIR.
func installed(t *testing.T) string {
	t.Helper()
	mk := testenv.Require(t, "make")
	installOnce.Do(func() {
		installRoot, installErr = os.MkdirTemp("", "examples-install-")
		if installErr != nil {
			return
		}
		if out, err := exec.Command("git", "-C", "..", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
			installDescribe = strings.TrimSpace(string(out))
		}
		cmd := exec.Command(mk, "-s", "install", "DESTDIR="+filepath.Join(installRoot, "root"), "BUILDDIR="+filepath.Join(installRoot, "build"))
		cmd.Dir = ".."
		installOut, installErr = cmd.CombinedOutput()
	})
	if installErr != nil {
		t.Fatalf("make install: %v\n%s", installErr, installOut)
	}
	return filepath.Join(installRoot, "root")
}

func init() {
	cleanups = append(cleanups, func() {
		if installRoot != "" {
			os.RemoveAll(installRoot)
		}
	})
}

// unitValues returns the values of key in a unit file, in order.
func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	var vals []string
	sc := bufio.NewScanner(strings.NewReader(read(t, path)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && k == key {
			vals = append(vals, v)
		}
	}
	return vals
}

// TestMakeInstall checks that make install puts everything where the units
// and the docs say: the programs their Exec lines run, the configuration
// they read, the documentation they link to, and the examples.
func TestMakeInstall(t *testing.T) {
	root := installed(t)
	units := filepath.Join(root, "usr/local/lib/systemd/system")
	for _, f := range []string{
		"usr/local/bin/fcgi-bridge", "usr/local/bin/fcgi-request",
		"usr/local/lib/systemd/system/fcgi-bridge.service", "usr/local/lib/systemd/system/fcgi-bridge.socket",
		"etc/fcgi-bridge/fcgi-bridge.toml",
		"usr/local/share/doc/fcgi-bridge/deploy.md",
		"usr/local/share/doc/fcgi-bridge/examples/nginx.conf",
		"usr/local/share/doc/fcgi-bridge/examples/apache-example.conf",
		"usr/local/share/man/man8/fcgi-bridge.8",
	} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("make install did not install /%s", f)
		}
	}
	// The Makefile stamps the build with git describe, so --version names
	// the commit (or tag) the installed binary came from, never "devel".
	if want := installDescribe; want != "" {
		got, err := exec.Command(filepath.Join(root, "usr/local/bin/fcgi-bridge"), "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(got), want) {
			t.Errorf("installed fcgi-bridge --version = %q (%v), want it to name %s", got, err, want)
		}
	}
	for _, u := range []string{"fcgi-bridge.service", "fcgi-bridge.socket"} {
		path := filepath.Join(units, u)
		docs := unitValues(t, path, "Documentation")
		if len(docs) == 0 {
			t.Errorf("%s: no Documentation=", u)
		}
		for _, d := range docs {
			for _, f := range strings.Fields(d) {
				if p, ok := strings.CutPrefix(f, "file://"); ok {
					if _, err := os.Stat(filepath.Join(root, p)); err != nil {
						t.Errorf("%s: Documentation=%s is not installed", u, f)
					}
				}
			}
		}
		for _, key := range []string{"ExecStartPre", "ExecStart"} {
			for _, line := range unitValues(t, path, key) {
				words := strings.Fields(line)
				if !strings.HasPrefix(words[0], "/usr/local/") {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, words[0])); err != nil {
					t.Errorf("%s: %s=%s: the program is not installed", u, key, words[0])
				}
				for i, w := range words {
					if w == "-c" && i+1 < len(words) {
						if _, err := os.Stat(filepath.Join(root, words[i+1])); err != nil {
							t.Errorf("%s: %s reads %s, which is not installed", u, key, words[i+1])
						}
					}
				}
			}
		}
	}
	// The installed configuration is valid for the installed binary.
	bin := filepath.Join(root, "usr/local/bin/fcgi-bridge")
	if out, err := exec.Command(bin, "-t", "-c", filepath.Join(root, "etc/fcgi-bridge/fcgi-bridge.toml")).CombinedOutput(); err != nil {
		t.Errorf("fcgi-bridge -t on the installed configuration: %v\n%s", err, out)
	}

	// A second install keeps the configuration an administrator edited.
	conf := filepath.Join(root, "etc/fcgi-bridge/fcgi-bridge.toml")
	edited := read(t, conf) + "\n# edited\n"
	writeFile(t, conf, edited)
	cmd := exec.Command("make", "-s", "install", "DESTDIR="+root, "BUILDDIR="+filepath.Join(filepath.Dir(root), "build"))
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install again: %v\n%s", err, out)
	}
	if read(t, conf) != edited {
		t.Error("make install overwrote an existing /etc/fcgi-bridge/fcgi-bridge.toml")
	}
}

// TestSocketActivation runs the service's ExecStart= the way
// fcgi-bridge.socket starts it: systemd-socket-activate holds the socket
// (ListenStream=, moved to a test directory, and FileDescriptorName=) and
// starts the bridge on the first connection, which is then served.
func TestSocketActivation(t *testing.T) {
	activate := testenv.Require(t, "systemd-socket-activate")
	root := installed(t)
	units := filepath.Join(root, "usr/local/lib/systemd/system")
	listen := unitValues(t, filepath.Join(units, "fcgi-bridge.socket"), "ListenStream")
	names := unitValues(t, filepath.Join(units, "fcgi-bridge.socket"), "FileDescriptorName")
	execStart := unitValues(t, filepath.Join(units, "fcgi-bridge.service"), "ExecStart")
	if len(listen) != 1 || len(names) != 1 || len(execStart) != 1 {
		t.Fatalf("want one ListenStream=, FileDescriptorName= and ExecStart=, got %q %q %q", listen, names, execStart)
	}
	sock := filepath.Join(peers.SocketDir(t), filepath.Base(listen[0]))
	argv := strings.Fields(strings.NewReplacer("/usr/local/", root+"/usr/local/", "/etc/", root+"/etc/").Replace(execStart[0]))

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, activate, append([]string{"-l", sock, "--fdname=" + names[0]}, argv...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.NewLines(stderr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("systemd-socket-activate and the bridge:\n%s", log)
		}
	})
	if _, ok := log.WaitFor("Listening on", 10*time.Second); !ok {
		t.Fatalf("systemd-socket-activate does not listen on %s:\n%s", sock, log)
	}
	if strings.Contains(log.String(), "fcgi-bridge started") {
		t.Fatal("the bridge started before the first connection")
	}
	// The first connection starts the bridge, which serves it.
	reqCtx, reqCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer reqCancel()
	out, err := peers.CGIFCGI(t, reqCtx, peers.Upstream("unix:"+sock), []string{
		"REQUEST_METHOD=POST", "REQUEST_URI=/app/page", "SCRIPT_NAME=/app", "PATH_INFO=/page",
		"SERVER_NAME=localhost", "SERVER_PORT=80", "HTTP_HOST=example.com", "SERVER_PROTOCOL=HTTP/1.1",
		"CONTENT_TYPE=application/json", fmt.Sprintf("CONTENT_LENGTH=%d", len(appJSON)), "HTTP_ACCEPT=text/html",
	}, []byte(appJSON))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "<dt>name</dt>") || !strings.Contains(string(out), "http://example.com/app/page") {
		t.Fatalf("the activated bridge answered:\n%s", out)
	}
	if line, ok := log.WaitFor("sockets passed by systemd", 10*time.Second); !ok || !strings.Contains(line, "names="+names[0]) {
		t.Errorf("the bridge did not say it took the socket named %s from systemd: %q", names[0], line)
	}
}
