package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// TestServiceUnitNotifies checks that the service unit uses what the bridge
// sends (internal/sdnotify): READY, RELOADING and STOPPING for Type=notify,
// and the watchdog. TestSystemdUnits runs systemd-analyze verify on it.
func TestServiceUnitNotifies(t *testing.T) {
	keys := map[string]string{}
	for _, line := range strings.Split(read(t, "fcgi-bridge.service"), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"Type":         "notify",
		"NotifyAccess": "main",
		"ExecReload":   "/bin/kill -HUP $MAINPID",
	} {
		if keys[k] != want {
			t.Errorf("fcgi-bridge.service: %s=%q, want %q", k, keys[k], want)
		}
	}
	if keys["WatchdogSec"] == "" || keys["WatchdogSec"] == "0" {
		t.Error("fcgi-bridge.service: no WatchdogSec=, so a hung bridge is never restarted")
	}
	if keys["Requires"] != "fcgi-bridge.socket" {
		t.Error("fcgi-bridge.service: the socket unit is no longer required")
	}
}

// TestUnitsUnderSystemd installs copies of the two units (under a name of
// their own, with the test's binary, configuration and socket, without the
// dedicated user and the private /tmp that would hide them) and drives them
// with systemctl: start returns once the bridge sent READY=1, a reload ends
// with the unit active again, and stop ends cleanly. It needs systemd as
// the init system and root, and is skipped otherwise; TestSystemdUnits
// checks the files with systemd-analyze verify everywhere.
func TestUnitsUnderSystemd(t *testing.T) {
	dir, sockPath := instanceDir(t, "units"), runDir(t)
	name := fmt.Sprintf("fcgi-bridge-test-%d", os.Getpid())
	cfg := filepath.Join(dir, "bridge.toml")
	writeFile(t, cfg, strings.TrimPrefix(statusRoutes, "\n"))

	unit := func(text string) string {
		var out []string
		for _, line := range strings.Split(text, "\n") {
			switch {
			case strings.HasPrefix(line, "User="), strings.HasPrefix(line, "Group="),
				strings.HasPrefix(line, "SocketUser="), strings.HasPrefix(line, "SocketGroup="):
				continue
			case line == "PrivateTmp=yes":
				line = "PrivateTmp=no"
			}
			out = append(out, line)
		}
		return strings.NewReplacer(
			"/usr/local/bin/fcgi-bridge", bridgeBinary(t),
			"/etc/fcgi-bridge/fcgi-bridge.toml", cfg,
			socketPath, sockPath,
			"fcgi-bridge.socket", name+".socket",
		).Replace(strings.Join(out, "\n"))
	}
	svc, sock := unit(read(t, "fcgi-bridge.service")), unit(read(t, "fcgi-bridge.socket"))

	// The copies must still be valid units, which systemd-analyze checks
	// without systemd running.
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, name+".service"), svc)
		writeFile(t, filepath.Join(dir, name+".socket"), sock)
		cmd := exec.Command(analyze, "verify", name+".socket", name+".service")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), name) {
			t.Fatalf("systemd-analyze verify on the test's copies: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Skip("skipped: systemd is not the init system here (no /run/systemd/system)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: installing a unit in /run/systemd/system needs root")
	}
	systemctl := testenv.Require(t, "systemctl")
	svcPath := filepath.Join("/run/systemd/system", name+".service")
	sockUnitPath := filepath.Join("/run/systemd/system", name+".socket")
	writeFile(t, svcPath, svc)
	writeFile(t, sockUnitPath, sock)
	sysctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(systemctl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("journalctl", "-u", name+".service", "--no-pager", "-n", "50").CombinedOutput()
			t.Logf("journal:\n%s", out)
		}
		exec.Command(systemctl, "stop", name+".service", name+".socket").Run()
		os.Remove(svcPath)
		os.Remove(sockUnitPath)
		exec.Command(systemctl, "daemon-reload").Run()
	})
	sysctl("daemon-reload")
	sysctl("start", name+".socket")
	// Type=notify: start returns once READY=1 arrived.
	sysctl("start", name+".service")
	show := func(prop string) string {
		return strings.TrimPrefix(sysctl("show", "-p", prop, name+".service"), prop+"=")
	}
	if st := show("ActiveState"); st != "active" {
		t.Fatalf("after start: ActiveState=%s", st)
	}
	if st := show("StatusText"); !strings.HasPrefix(st, "serving") {
		t.Errorf("StatusText=%q, want the bridge's serving line", st)
	}
	pid := show("MainPID")

	sysctl("reload", name+".service")
	if !testenv.Poll(20*time.Second, func() bool { return show("ActiveState") == "active" }) {
		t.Fatalf("after reload: ActiveState=%s", show("ActiveState"))
	}
	if got := show("MainPID"); got != pid {
		t.Errorf("reload replaced the process: MainPID %s, was %s", got, pid)
	}

	sysctl("stop", name+".service")
	if r := show("Result"); r != "success" {
		t.Errorf("after stop: Result=%s", r)
	}
}
