package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a CPU profile of the whole run to the file named by
// FCGI_BRIDGE_CPUPROFILE, for measuring where the daemon's time goes under a
// real load (nginx in front, real upstreams) rather than in a micro-benchmark.
// It returns the function that ends the profile; a no-op when the variable is
// unset or the file cannot be written (reported on stderr, the daemon runs on).
func startCPUProfile(stderr io.Writer) func() {
	path := os.Getenv("FCGI_BRIDGE_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-bridge: cpu profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(stderr, "fcgi-bridge: cpu profile: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "fcgi-bridge: cpu profile: %v\n", err)
		}
	}
}
