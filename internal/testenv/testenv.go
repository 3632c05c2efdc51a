// Package testenv decides whether a test that needs an outside program (a web
// server, a FastCGI peer, node, ImageMagick) can run. Where the program is
// missing the test is skipped with a message that names what to install;
// under CI (CI=true) a missing program is a failure instead, because CI
// installs every one of them and a skip there would hide a broken step.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the tests run under CI, where nothing may be skipped
// for want of a program.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Require returns the path of binary (looked up in PATH, then in the sbin
// directories Debian installs daemons to). When it is not found the test is
// skipped, or fails under CI.
func Require(t testing.TB, binary string) string {
	t.Helper()
	if p, err := exec.LookPath(binary); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + binary
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, binary+" is not installed (on Debian: see the apt-get line in .ci/run)")
	return ""
}

// Missing skips the test with reason, or fails it under CI.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true but %s", reason)
	}
	t.Skip("skipped: " + reason)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
