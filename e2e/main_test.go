// Package e2e runs the real fcgi-bridge binary behind real web servers
// (nginx, Apache, lighttpd, HAProxy from their Debian packages), with real
// upstreams (an HTTP app, php-fpm, files) and real transforms (the nodejs
// renderer built on npm subprocess-middleware, ImageMagick, the binary's own
// sample transforms). Every test needs outside programs: it skips when one
// is missing, and fails instead under CI=true (internal/testenv).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

var (
	// bridgeBin is cmd/fcgi-bridge, built once for all tests.
	bridgeBin string
	// requestBin is cmd/fcgi-request, built once when the package exists.
	requestBin string
	// requestBuildErr is why requestBin is empty when the package exists.
	requestBuildErr error
	// repoRoot is the module's root directory.
	repoRoot string
)

func TestMain(m *testing.M) {
	// The misbehaving-on-demand transforms of internal/testtransform.
	testtransform.Run()
	// The test binary doubles as a transform (see transforms_test.go): the
	// bridge starts it with E2E_TRANSFORM set.
	if mode := os.Getenv(envTransform); mode != "" {
		os.Exit(runTransform(mode))
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "fcgi-bridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Workers of Apache and lighttpd run as www-data when the tests run as
	// root; they never execute these binaries, but the bridge's transforms
	// ("@self") are the binary itself, so it must stay readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Without -race: the daemon is driven as users run it, and the timings
	// the tests log should mean something. The race detector covers the
	// packages' own tests.
	bridgeBin = filepath.Join(dir, "fcgi-bridge")
	if err := goBuild(bridgeBin, "./cmd/fcgi-bridge"); err != nil {
		fmt.Fprintln(os.Stderr, "build fcgi-bridge:", err)
		return 1
	}
	// fcgi-request is needed by one test only: a failed build fails that
	// test (under CI), not every other.
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "fcgi-request")); err == nil {
		bin := filepath.Join(dir, "fcgi-request")
		if err := goBuild(bin, "./cmd/fcgi-request"); err != nil {
			requestBuildErr = err
		} else {
			requestBin = bin
		}
	}
	return m.Run()
}

func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repoRoot
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return nil
}
