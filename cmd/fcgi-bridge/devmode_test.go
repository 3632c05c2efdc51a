package main

import (
	"strings"
	"testing"
)

// -t warns when developer mode is on for a listener other hosts can reach,
// and not on a loopback one; the configuration stays valid either way.
func TestCheckWarnsDebugOnReachableListener(t *testing.T) {
	for _, tc := range []struct {
		args []string
		warn bool
	}{
		{[]string{"--listen", "tcp:0.0.0.0:9000", "--", "cat"}, false},
		{[]string{"--debug", "--listen", "tcp:0.0.0.0:9000", "--", "cat"}, true},
		{[]string{"--debug", "--listen", "tcp:127.0.0.1:9000", "--", "cat"}, false},
		{[]string{"--debug", "--listen", "unix:/tmp/x.sock", "--", "cat"}, false},
	} {
		code, out, errOut := runCmd(t, "", append([]string{"-t"}, tc.args...)...)
		if code != 0 || !strings.Contains(out, "is valid") {
			t.Fatalf("%v: exit %d\nstdout %q\nstderr %q", tc.args, code, out, errOut)
		}
		warned := strings.Contains(errOut, `warning: (command line): listen.0.addr "tcp:0.0.0.0:9000" is not a loopback address or a unix socket, and debug is on`)
		if warned != tc.warn {
			t.Fatalf("%v: warned %v, want %v; stderr %q", tc.args, warned, tc.warn, errOut)
		}
	}
}
