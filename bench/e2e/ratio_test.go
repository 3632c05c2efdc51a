package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestComparisons(t *testing.T) {
	sec := time.Second
	results := map[string]result{
		"render": {ok: 1000, elapsed: sec, bridgeCPU: 60 * time.Millisecond, transformCPU: 100 * time.Millisecond, hasBridge: true, hasTransforms: true},
		// The app: 60 µs per request behind the bridge, 40 µs behind the
		// nginx hop, 42 µs behind the floor relay.
		"pass":   {ok: 2000, elapsed: sec, bridgeCPU: 50 * time.Millisecond, appCPU: 120 * time.Millisecond, hasBridge: true},
		"direct": {ok: 5000, elapsed: sec, appCPU: 150 * time.Millisecond},
		"hop":    {ok: 2500, elapsed: sec, appCPU: 100 * time.Millisecond},
		// The floor relay: 3000 req/s, 10 µs of its own CPU per request.
		"floor": {ok: 3000, elapsed: sec, bridgeCPU: 30 * time.Millisecond, appCPU: 126 * time.Millisecond, hasBridge: true},
		// The floor relay with its renderers: 20 µs of its own CPU and 100
		// µs of its renderers' per request.
		"floor-render": {ok: 1500, elapsed: sec, bridgeCPU: 30 * time.Millisecond, transformCPU: 150 * time.Millisecond, hasBridge: true, hasTransforms: true},
		// A -compare build: a fifth less throughput, twice the CPU per request.
		"pass-b": {ok: 1600, elapsed: sec, bridgeCPU: 80 * time.Millisecond, hasBridge: true},
	}
	got := map[string][2]string{}
	for _, c := range comparisons() {
		v, ok := c.value(results)
		if !ok {
			continue
		}
		got[c.label] = [2]string{fmtValue(c.format, v), c.met(v)}
	}
	assert.Equal(t, map[string][2]string{
		"render: fcgi-bridge CPU/req ÷ transforms CPU/req":                    {"0.60", "no"},
		"pass-through: fcgi-bridge CPU/req (µs)":                              {"25", "yes"},
		"fcgi-bridge pass-through / nginx proxy_pass":                         {"0.40x", "no"},
		"fcgi-bridge pass-through / nginx proxy hop":                          {"0.80x", "yes"},
		"nginx proxy hop / nginx proxy_pass":                                  {"0.50x", "–"},
		"HTTP app CPU/req behind fcgi-bridge ÷ behind the nginx hop":          {"1.50", "no"},
		"HTTP app CPU/req behind the minimal Go relay ÷ behind the nginx hop": {"1.05", "–"},
		"fcgi-bridge pass-through ÷ minimal Go relay, intermediary CPU/req":   {"2.50", "–"},
		"minimal Go relay / nginx proxy hop (req/s)":                          {"1.20x", "–"},
		"minimal Go relay render: intermediary CPU/req ÷ transforms CPU/req":  {"0.20", "–"},
		"fcgi-bridge render ÷ minimal Go relay render, intermediary CPU/req":  {"3.00", "–"},
		"pass-through: this build / -compare build (req/s)":                   {"1.25x", "–"},
		"pass-through: this build ÷ -compare build, fcgi-bridge CPU/req":      {"0.50", "–"},
	}, got, "the cgi and render-b scenarios did not run: their ratios are left out")
}

func TestAppCPURatioGoal(t *testing.T) {
	sec := time.Second
	var goal comparison
	for _, c := range comparisons() {
		if c.label == "HTTP app CPU/req behind fcgi-bridge ÷ behind the nginx hop" {
			goal = c
		}
	}
	require.NotNil(t, goal.value)
	hop := result{ok: 1000, elapsed: sec, appCPU: 40 * time.Millisecond}
	for _, tc := range []struct {
		appCPU time.Duration
		want   string
	}{{44 * time.Millisecond, "yes"}, {45 * time.Millisecond, "no"}, {30 * time.Millisecond, "yes"}} {
		v, ok := goal.value(map[string]result{"hop": hop, "pass": {ok: 1000, elapsed: sec, appCPU: tc.appCPU}})
		require.True(t, ok)
		assert.Equal(t, tc.want, goal.met(v), "app CPU %v per 1000 requests behind the bridge, 40ms behind the hop", tc.appCPU)
	}
	_, ok := goal.value(map[string]result{"hop": {ok: 1000, elapsed: sec}, "pass": {ok: 1000, elapsed: sec, appCPU: sec}})
	assert.False(t, ok, "no app CPU measured behind the hop: no ratio")
}
