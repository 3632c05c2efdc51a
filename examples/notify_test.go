package examples_test

import (
	"strings"
	"testing"
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
