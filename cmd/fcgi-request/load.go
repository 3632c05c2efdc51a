package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// loadReport is what a load run measured; it is also the --json output.
type loadReport struct {
	Address     string         `json:"address"`
	Concurrency int            `json:"concurrency"`
	KeepConn    bool           `json:"keep_conn"`
	Multiplex   bool           `json:"multiplex"`
	Requests    int64          `json:"requests"`
	OK          int64          `json:"ok"`
	Errors      int64          `json:"errors"`
	Seconds     float64        `json:"seconds"`
	RPS         float64        `json:"requests_per_second,omitempty"`
	BytesIn     int64          `json:"response_bytes"`
	Latency     latencyReport  `json:"latency_ms"`
	Status      map[string]int `json:"status"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`
	FirstError  string         `json:"first_error,omitempty"`
}

type latencyReport struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// workerStats is one worker's tally, merged at the end so the hot path
// shares nothing but the request counter.
type workerStats struct {
	latencies []time.Duration
	status    map[int]int
	errs      map[string]int
	firstErr  error
	bytesIn   int64
}

func runLoad(ctx context.Context, client *fcgi.Client, o *options, req *requestTemplate, stdout, stderr io.Writer) int {
	limit := int64(o.requests)
	if o.duration > 0 && o.requests <= 1 {
		limit = 1 << 62
	}
	runCtx := ctx
	if o.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var issued atomic.Int64
	stats := make([]*workerStats, o.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range stats {
		ws := &workerStats{status: map[int]int{}, errs: map[string]int{}}
		stats[w] = ws
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for runCtx.Err() == nil && issued.Add(1) <= limit {
				t0 := time.Now()
				status, n, err := oneLoadRequest(runCtx, client, o, req, buf)
				if err != nil && runCtx.Err() != nil && o.duration > 0 && ctx.Err() == nil {
					// Cut off by the end of the run, not a failure.
					return
				}
				ws.bytesIn += n
				if err != nil {
					ws.errs[errKind(err)]++
					if ws.firstErr == nil {
						ws.firstErr = err
					}
					continue
				}
				ws.latencies = append(ws.latencies, time.Since(t0))
				ws.status[status]++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := mergeStats(stats, elapsed)
	rep.Address = o.address
	rep.Concurrency, rep.KeepConn, rep.Multiplex = o.concurrency, o.keepConn || o.multiplex, o.multiplex
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(stdout, rep)
	}
	if rep.Errors > 0 || ctx.Err() != nil {
		return exitError
	}
	return exitOK
}

// oneLoadRequest sends a request, reads the CGI status and drains the body.
func oneLoadRequest(ctx context.Context, client *fcgi.Client, o *options, req *requestTemplate, buf []byte) (status int, n int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	resp, err := client.Do(rctx, req.newRequest())
	if err != nil {
		return 0, 0, err
	}
	defer resp.Stdout.Close()
	if o.role == fcgi.RoleAuthorizer || o.raw {
		n, err = io.CopyBuffer(io.Discard, resp.Stdout, buf)
		return 200, n, err
	}
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		return 0, 0, err
	}
	n, err = io.CopyBuffer(io.Discard, cgi.Body, buf)
	return cgi.Status, n, err
}

func mergeStats(stats []*workerStats, elapsed time.Duration) *loadReport {
	rep := &loadReport{Status: map[string]int{}, ErrorKinds: map[string]int{}, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for _, ws := range stats {
		all = append(all, ws.latencies...)
		for s, n := range ws.status {
			rep.Status[strconv.Itoa(s)] += n
		}
		for k, n := range ws.errs {
			rep.ErrorKinds[k] += n
			rep.Errors += int64(n)
		}
		if ws.firstErr != nil && rep.FirstError == "" {
			rep.FirstError = ws.firstErr.Error()
		}
		rep.BytesIn += ws.bytesIn
	}
	rep.OK = int64(len(all))
	rep.Requests = rep.OK + rep.Errors
	// With no answer at all there is no throughput to speak of: failures
	// come back fast and would pass for a high rate.
	if elapsed > 0 && rep.OK > 0 {
		rep.RPS = float64(rep.Requests) / elapsed.Seconds()
	}
	if len(all) > 0 {
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		rep.Latency = latencyReport{
			Min: ms(all[0]), Mean: ms(sum / time.Duration(len(all))),
			P50: ms(percentile(all, 50)), P90: ms(percentile(all, 90)), P99: ms(percentile(all, 99)),
			Max: ms(all[len(all)-1]),
		}
	}
	if len(rep.ErrorKinds) == 0 {
		rep.ErrorKinds = nil
	}
	return rep
}

// percentile uses the nearest-rank method on sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func printReport(w io.Writer, r *loadReport) {
	mode := "new connection per request"
	switch {
	case r.Multiplex:
		mode = "keep-conn, multiplexed"
	case r.KeepConn:
		mode = "keep-conn"
	}
	fmt.Fprintf(w, "target:      %s (concurrency %d, %s)\n", r.Address, r.Concurrency, mode)
	fmt.Fprintf(w, "requests:    %d in %.3fs, %d ok, %d errors\n", r.Requests, r.Seconds, r.OK, r.Errors)
	if r.OK > 0 {
		fmt.Fprintf(w, "throughput:  %.1f req/s, %.2f MB/s of response body\n", r.RPS, float64(r.BytesIn)/1e6/max(r.Seconds, 1e-9))
	} else if r.Requests > 0 {
		fmt.Fprintf(w, "throughput:  none: every request failed\n")
	}
	if r.OK > 0 {
		l := r.Latency
		fmt.Fprintf(w, "latency:     min %s  mean %s  p50 %s  p90 %s  p99 %s  max %s\n",
			fmtMS(l.Min), fmtMS(l.Mean), fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.Max))
	}
	fmt.Fprintf(w, "status:      %s\n", joinCounts(r.Status))
	if r.Errors > 0 {
		fmt.Fprintf(w, "errors:      %s\n", joinCounts(r.ErrorKinds))
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

func fmtMS(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

func joinCounts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
