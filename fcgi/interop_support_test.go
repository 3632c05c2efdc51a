package fcgi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
)

// The peer tests (interop_test.go with real web servers, replay_test.go with
// their recorded bytes) share the echo application below and the transcript
// format.

// updatePeers rewrites testdata/peers from the real servers. The flag may
// already be defined by the package's internal tests (same binary).
func updatePeers() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var _ = func() bool {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files and peer transcripts")
	}
	return true
}()

// echoApp is the application the peers talk to. What it does depends on the
// path (SCRIPT_NAME or REQUEST_URI):
//
//	/echo    a report: role, id, keep-conn, every param sorted, body size and sha256
//	/stream  the body streamed back as it arrives (full duplex)
//	/duplex  ?n=BYTES generated while the body is read concurrently
//	         (&wait=1: once the whole body is read)
//	/gen     ?n=BYTES of generated body
//	/slow    ?ms=DELAY, then a short report (to overlap requests)
//	/drip    writes and flushes 1 KiB every 10 ms until the request is cancelled
type echoApp struct {
	mu        sync.Mutex
	seen      []*seenRequest
	cancelled atomic.Int32 // /drip requests whose context was cancelled
	inFlight  atomic.Int32
	maxFlight atomic.Int32
}

type seenRequest struct {
	ID        uint16
	Role      fcgi.Role
	KeepConn  bool
	Params    map[string]string
	BodyBytes int64
	BodySum   string
	BodyErr   error
}

func (a *echoApp) requests() []*seenRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*seenRequest(nil), a.seen...)
}

func requestPath(r *fcgi.Request) string {
	p := r.Params["REQUEST_URI"]
	if p == "" {
		p = r.Params["SCRIPT_NAME"] + "?" + r.Params["QUERY_STRING"]
	}
	return p
}

func queryInt(path, name string, def int) int {
	_, q, _ := strings.Cut(path, "?")
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return def
}

func (a *echoApp) ServeFCGI(w fcgi.ResponseWriter, r *fcgi.Request) {
	cur := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for {
		m := a.maxFlight.Load()
		if cur <= m || a.maxFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	seen := &seenRequest{ID: r.ID, Role: r.Role, KeepConn: r.KeepConn, Params: r.Params}
	a.mu.Lock()
	a.seen = append(a.seen, seen)
	a.mu.Unlock()

	path := requestPath(r)
	w.Header().Set("Content-Type", "text/plain")
	switch {
	case strings.HasPrefix(path, "/stream"):
		w.WriteHeader(200)
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), r.Stdin)
		a.mu.Lock()
		seen.BodyBytes, seen.BodySum, seen.BodyErr = n, fmt.Sprintf("%x", h.Sum(nil)), err
		a.mu.Unlock()
		return
	case strings.HasPrefix(path, "/duplex"):
		// Writes ?n= bytes while the body is read by another goroutine, so
		// a peer that is half duplex (reads the response only once it has
		// sent the body) and one that is full duplex both complete.
		size := queryInt(path, "n", 1<<20)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(200)
		read := make(chan struct{})
		go func() {
			defer close(read)
			h := sha256.New()
			n, err := io.Copy(h, r.Stdin)
			a.mu.Lock()
			seen.BodyBytes, seen.BodySum, seen.BodyErr = n, fmt.Sprintf("%x", h.Sum(nil)), err
			a.mu.Unlock()
		}()
		if queryInt(path, "wait", 0) == 1 {
			<-read
		}
		writeGenerated(w, size)
		<-read
		return
	case strings.HasPrefix(path, "/gen"):
		io.Copy(io.Discard, r.Stdin)
		size := queryInt(path, "n", 1<<20)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(200)
		writeGenerated(w, size)
		return
	case strings.HasPrefix(path, "/drip"):
		w.WriteHeader(200)
		chunk := bytes.Repeat([]byte("d"), 1024)
		for {
			select {
			case <-r.Context().Done():
				a.cancelled.Add(1)
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := w.Write(chunk); err != nil {
				// A failed write also cancels; wait for it to show.
				<-r.Context().Done()
				a.cancelled.Add(1)
				return
			}
			w.Flush()
		}
	case strings.HasPrefix(path, "/slow"):
		select {
		case <-time.After(time.Duration(queryInt(path, "ms", 200)) * time.Millisecond):
		case <-r.Context().Done():
		}
	}
	if r.Role == fcgi.RoleAuthorizer {
		if r.Params["HTTP_AUTHORIZATION"] == "" && r.Params["REMOTE_USER"] == "" && !strings.Contains(path, "allow") {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Variable-AUTHZ_BY", "echoApp")
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Stdin)
	a.mu.Lock()
	seen.BodyBytes, seen.BodySum, seen.BodyErr = n, fmt.Sprintf("%x", h.Sum(nil)), err
	a.mu.Unlock()
	w.WriteHeader(200)
	fmt.Fprintf(w, "role=%v id=%d keep=%v\n", r.Role, r.ID, r.KeepConn)
	names := make([]string, 0, len(r.Params))
	for k := range r.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "param %s=%s\n", k, r.Params[k])
	}
	fmt.Fprintf(w, "body-bytes=%d\nbody-sha256=%x\n", n, h.Sum(nil))
	if err != nil {
		fmt.Fprintf(w, "body-error=%v\n", err)
	}
}

// writeGenerated writes size bytes of a fixed pattern.
func writeGenerated(w io.Writer, size int) {
	block := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for size > 0 {
		n := min(size, len(block))
		if _, err := w.Write(block[:n]); err != nil {
			return
		}
		size -= n
	}
}

// recorder keeps every byte each accepted connection receives from the
// peer, in accept order (internal/peers, which the examples' recordings
// share).
type recorder struct{ *peers.Recorder }

func (l *recorder) transcript() [][]byte { return l.Transcript() }

// maxTranscriptBytes keeps big-body cases out of the repository: their
// recorded stream is cut at a record boundary (they still replay as a
// request whose body ends early).
const maxTranscriptBytes = 256 << 10

func writeTranscript(t *testing.T, name string, conns [][]byte) {
	t.Helper()
	cut := make([][]byte, len(conns))
	for i, c := range conns {
		cut[i] = cutAtRecord(c, maxTranscriptBytes)
	}
	path := filepath.Join("testdata", "peers", name+".bin")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := peers.WriteTranscript(path, cut); err != nil {
		t.Fatal(err)
	}
	summary := summarizeTranscript(conns)
	if err := os.WriteFile(strings.TrimSuffix(path, ".bin")+".txt", []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s:\n%s", path, summary)
}

func readTranscript(path string) ([][]byte, error) { return peers.ReadTranscript(path) }

// wireRecord is a record as the tests decode it, independent of the
// package's own reader.
type wireRecord struct {
	Type    uint8
	ID      uint16
	Content []byte
	Padding int
}

var errShortRecord = errors.New("record truncated")

func parseWire(b []byte) ([]wireRecord, []byte, error) {
	var recs []wireRecord
	for len(b) >= 8 {
		if b[0] != 1 {
			return recs, b, fmt.Errorf("record version %d", b[0])
		}
		cl := int(b[4])<<8 | int(b[5])
		pl := int(b[6])
		if len(b) < 8+cl+pl {
			return recs, b, errShortRecord
		}
		recs = append(recs, wireRecord{Type: b[1], ID: uint16(b[2])<<8 | uint16(b[3]), Content: b[8 : 8+cl], Padding: pl})
		b = b[8+cl+pl:]
	}
	if len(b) > 0 {
		return recs, b, errShortRecord
	}
	return recs, nil, nil
}

func cutAtRecord(b []byte, max int) []byte {
	if len(b) <= max {
		return b
	}
	off := 0
	for off+8 <= len(b) {
		n := 8 + (int(b[off+4])<<8 | int(b[off+5])) + int(b[off+6])
		if off+n > max {
			break
		}
		off += n
	}
	return b[:off]
}

func decodeWirePairs(b []byte) []fcgi.Pair {
	var out []fcgi.Pair
	readLen := func() (int, bool) {
		if len(b) == 0 {
			return 0, false
		}
		if b[0]&0x80 == 0 {
			n := int(b[0])
			b = b[1:]
			return n, true
		}
		if len(b) < 4 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint32(b) & 0x7fffffff)
		b = b[4:]
		return n, true
	}
	for len(b) > 0 {
		nl, ok1 := readLen()
		vl, ok2 := readLen()
		if !ok1 || !ok2 || len(b) < nl+vl {
			break
		}
		out = append(out, fcgi.Pair{Name: string(b[:nl]), Value: string(b[nl : nl+vl])})
		b = b[nl+vl:]
	}
	return out
}

var wireTypeNames = map[uint8]string{1: "BEGIN_REQUEST", 2: "ABORT_REQUEST", 3: "END_REQUEST", 4: "PARAMS", 5: "STDIN",
	6: "STDOUT", 7: "STDERR", 8: "DATA", 9: "GET_VALUES", 10: "GET_VALUES_RESULT", 11: "UNKNOWN_TYPE"}

// peerRequest is what a transcript says about one request.
type peerRequest struct {
	ID        uint16
	Role      uint16
	KeepConn  bool
	Params    []fcgi.Pair
	StdinLen  int
	StdinEnd  bool
	ParamRecs []int
	StdinRecs []int
	Aborted   bool
}

// analyzeTranscript decodes the requests in one connection's bytes.
func analyzeTranscript(conn []byte) (reqs []*peerRequest, mgmt []string, err error) {
	recs, _, err := parseWire(conn)
	byID := map[uint16]*peerRequest{}
	var params = map[uint16][]byte{}
	for _, r := range recs {
		p := byID[r.ID]
		switch r.Type {
		case 1:
			p = &peerRequest{ID: r.ID}
			if len(r.Content) >= 3 {
				p.Role = uint16(r.Content[0])<<8 | uint16(r.Content[1])
				p.KeepConn = r.Content[2]&1 != 0
			}
			byID[r.ID] = p
			reqs = append(reqs, p)
		case 4:
			if p == nil {
				continue
			}
			if len(r.Content) == 0 {
				p.Params = decodeWirePairs(params[r.ID])
				delete(params, r.ID)
				continue
			}
			p.ParamRecs = append(p.ParamRecs, len(r.Content))
			params[r.ID] = append(params[r.ID], r.Content...)
		case 5:
			if p == nil {
				continue
			}
			if len(r.Content) == 0 {
				p.StdinEnd = true
				continue
			}
			p.StdinRecs = append(p.StdinRecs, len(r.Content))
			p.StdinLen += len(r.Content)
		case 2:
			if p != nil {
				p.Aborted = true
			}
		case 9:
			mgmt = append(mgmt, fmt.Sprintf("GET_VALUES %v", decodeWirePairs(r.Content)))
		default:
			mgmt = append(mgmt, fmt.Sprintf("%s id=%d len=%d", wireTypeNames[r.Type], r.ID, len(r.Content)))
		}
	}
	return reqs, mgmt, err
}

func summarizeTranscript(conns [][]byte) string {
	var b strings.Builder
	for i, c := range conns {
		if len(c) == 0 {
			continue
		}
		reqs, mgmt, err := analyzeTranscript(c)
		fmt.Fprintf(&b, "connection %d: %d bytes\n", i+1, len(c))
		if err != nil {
			fmt.Fprintf(&b, "  (cut: %v)\n", err)
		}
		for _, m := range mgmt {
			fmt.Fprintf(&b, "  %s\n", m)
		}
		for _, r := range reqs {
			fmt.Fprintf(&b, "  request id=%d role=%d keep_conn=%v params_records=%v stdin_records=%s stdin_bytes=%d stdin_end=%v aborted=%v\n",
				r.ID, r.Role, r.KeepConn, r.ParamRecs, compactSizes(r.StdinRecs), r.StdinLen, r.StdinEnd, r.Aborted)
			for _, p := range r.Params {
				fmt.Fprintf(&b, "    %s=%q\n", p.Name, p.Value)
			}
		}
	}
	return b.String()
}

// compactSizes prints record sizes run-length encoded: "[32768x3 1000]".
func compactSizes(s []int) string {
	var parts []string
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		if j-i > 1 {
			parts = append(parts, fmt.Sprintf("%dx%d", s[i], j-i))
		} else {
			parts = append(parts, strconv.Itoa(s[i]))
		}
		i = j
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// serveEcho serves app on l (wrapped in a recorder) until the test ends.
func serveEcho(t *testing.T, l net.Listener, app *echoApp) *recorder {
	t.Helper()
	rec := &recorder{peers.NewRecorder(l)}
	srv := &fcgi.Server{Handler: app}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(rec)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
		<-done
	})
	return rec
}
