//go:build race

package testenv

// Race is true when the race detector is on. Allocation counts are not
// gated then: sync.Pool drops a share of what it is given on purpose.
const Race = true
