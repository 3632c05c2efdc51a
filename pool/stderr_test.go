package pool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStderrSummary(t *testing.T) {
	node := []string{
		"node:internal/modules/cjs/loader:1210",
		"  throw err;",
		"  ^",
		"",
		"Error: Cannot find module '/srv/render.js'",
		"    at Module._resolveFilename (node:internal/modules/cjs/loader:1207:15)",
		"    at Module._load (node:internal/modules/cjs/loader:1038:27)",
		"  code: 'MODULE_NOT_FOUND',",
		"  requireStack: []",
		"}",
		"",
		"Node.js v20.20.2",
	}
	for _, tt := range []struct {
		name string
		in   []string
		want []string
	}{
		{"short", []string{"a", "", "b"}, []string{"a", "b"}},
		{"no error line", []string{"1", "2", "3", "4", "5"}, []string{"3", "4", "5"}},
		{"node", node, []string{"Error: Cannot find module '/srv/render.js'", "…", "requireStack: []", "}", "Node.js v20.20.2"}},
		{"error just before the last three", []string{"x", "panic: boom", "a", "b", "c"}, []string{"panic: boom", "a", "b", "c"}},
		{"error among the last three", []string{"x", "y", "KeyError: 'k'", "b", "c"}, []string{"KeyError: 'k'", "b", "c"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, StderrSummary(tt.in))
		})
	}
	e := &StartError{Pool: "render", Path: "/usr/bin/node", Err: errEarlyExit, Exit: "exit status 1", Stderr: node}
	require.Contains(t, e.Error(), `stderr: "Error: Cannot find module '/srv/render.js'" | "…" |`)
}
