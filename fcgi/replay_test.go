package fcgi_test

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
	"github.com/stretchr/testify/require"
)

// TestReplayPeers feeds what real web servers sent (recorded by the interop
// tests with -update) to the server over net.Pipe, so every peer is covered
// where its binary is not installed. For each request the transcript carries
// in full, the handler must have seen exactly the params and body the peer
// sent, and the reply must be well-formed: whole records, STDOUT starting with
// a complete CGI header block with an explicit Status, exactly one
// END_REQUEST{REQUEST_COMPLETE}, nothing for the id after it.
func TestReplayPeers(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "peers", "*.bin"))
	require.NoError(t, err)
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/peers (record them with go test -run TestInterop -update)")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".bin")
		t.Run(name, func(t *testing.T) {
			conns, err := readTranscript(file)
			require.NoError(t, err)
			require.NotEmpty(t, conns)
			for i, conn := range conns {
				replayConn(t, name, i, conn)
			}
		})
	}
}

func replayConn(t *testing.T, name string, index int, transcript []byte) {
	t.Helper()
	reqs, mgmt, _ := analyzeTranscript(transcript)
	complete := map[uint16]int{} // id -> requests with that id expected to end
	for _, r := range reqs {
		if expectEnd(r) {
			complete[r.ID]++
		}
	}
	wantEnds := 0
	for _, n := range complete {
		wantEnds += n
	}
	wantValues := 0
	for _, m := range mgmt {
		if strings.HasPrefix(m, "GET_VALUES") {
			wantValues++
		}
	}

	app := &echoApp{}
	srv := &fcgi.Server{Handler: app}
	client, server := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeConn(server)
	}()
	var mu sync.Mutex
	var reply bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			mu.Lock()
			reply.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	countEnds := func() (ends, values int, byID map[uint16]int) {
		mu.Lock()
		defer mu.Unlock()
		byID = map[uint16]int{}
		recs, _, _ := parseWire(reply.Bytes())
		for _, r := range recs {
			switch r.Type {
			case 3:
				ends++
				byID[r.ID]++
			case 10:
				values++
			}
		}
		return ends, values, byID
	}
	go func() {
		// A peer never sends BEGIN_REQUEST for an id before the previous
		// request with that id has ended, so the transcript is fed in
		// segments, each starting at a BEGIN_REQUEST, waiting for the ids'
		// END_REQUEST as the peer did. Pipe writes block until read; an
		// error means the server closed.
		begun := map[uint16]int{}
		for _, seg := range splitAtBegins(transcript) {
			if id, ok := beginID(seg); ok {
				testenv.Poll(10*time.Second, func() bool {
					_, _, byID := countEnds()
					return byID[id] >= begun[id]
				})
				begun[id]++
			}
			if _, err := client.Write(seg); err != nil {
				return
			}
		}
	}()

	if !testenv.Poll(10*time.Second, func() bool {
		ends, values, _ := countEnds()
		return ends >= wantEnds && values >= wantValues
	}) {
		ends, values, _ := countEnds()
		t.Fatalf("connection %d: %d of %d END_REQUEST and %d of %d GET_VALUES_RESULT after 10s", index, ends, wantEnds, values, wantValues)
	}
	// Every request whose params arrived has reached the handler.
	started := 0
	for _, r := range reqs {
		if r.Params != nil {
			started++
		}
	}
	require.Eventually(t, func() bool { return len(app.requests()) >= started }, 10*time.Second, time.Millisecond,
		"connection %d: handlers started", index)
	// The peer's side is done: closing it is what the peer does at the end
	// (or, for the client-disconnect case, in the middle).
	client.Close()
	<-readDone
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatalf("connection %d: ServeConn still running 5s after the peer closed", index)
	}
	srv.Close()

	mu.Lock()
	out := bytes.Clone(reply.Bytes())
	mu.Unlock()
	recs, rest, err := parseWire(out)
	if err != nil && !(errors.Is(err, errShortRecord) && wantEnds < len(reqs)) {
		// A reply cut short is only expected when a request was still
		// running as the peer went away.
		require.NoError(t, err, "connection %d: malformed reply (%d bytes left)", index, len(rest))
	}
	checkReplyRecords(t, index, recs, complete)
	checkHandlerSaw(t, index, reqs, app)

	// The endless /drip requests end only by the peer leaving: each must
	// have had its context cancelled.
	drips := 0
	for _, r := range reqs {
		if isDrip(r) {
			drips++
		}
	}
	if drips > 0 {
		require.Eventually(t, func() bool { return int(app.cancelled.Load()) == drips }, 5*time.Second, time.Millisecond,
			"connection %d: the handler's context was not cancelled when the peer left", index)
	}
}

// checkReplyRecords checks the server's records per request id.
func checkReplyRecords(t *testing.T, index int, recs []wireRecord, complete map[uint16]int) {
	t.Helper()
	type idState struct {
		stdout   []byte
		ended    int
		afterEnd bool
	}
	states := map[uint16]*idState{}
	var results []fcgi.Pair
	for _, r := range recs {
		if r.ID == 0 {
			require.Equal(t, uint8(10), r.Type, "connection %d: management record type %d", index, r.Type)
			results = append(results, decodeWirePairs(r.Content)...)
			continue
		}
		st := states[r.ID]
		if st == nil {
			st = &idState{}
			states[r.ID] = st
		}
		switch r.Type {
		case 6:
			if st.ended == complete[r.ID] && complete[r.ID] > 0 {
				st.afterEnd = true
			}
			st.stdout = append(st.stdout, r.Content...)
		case 7:
		case 3:
			require.Len(t, r.Content, 8, "END_REQUEST body")
			require.Equal(t, byte(0), r.Content[4], "connection %d request %d: protocol status", index, r.ID)
			st.ended++
			// Each response is checked as it ends (ids are reused on
			// keep-alive connections).
			if len(st.stdout) > 0 {
				resp, err := fcgi.ReadCGIResponse(bytes.NewReader(st.stdout))
				require.NoError(t, err, "connection %d request %d: STDOUT %q", index, r.ID, truncate(st.stdout))
				require.True(t, bytes.HasPrefix(st.stdout, []byte("Status: ")), "explicit Status first: %q", truncate(st.stdout))
				require.NotZero(t, resp.Status)
			}
			st.stdout = nil
		default:
			t.Fatalf("connection %d: server sent record type %d for request %d", index, r.Type, r.ID)
		}
	}
	for id, n := range complete {
		st := states[id]
		require.NotNil(t, st, "connection %d: no reply for request %d", index, id)
		require.Equal(t, n, st.ended, "connection %d request %d: END_REQUEST count", index, id)
		require.False(t, st.afterEnd, "connection %d request %d: STDOUT after END_REQUEST", index, id)
	}
	for _, p := range results {
		require.Contains(t, []string{fcgi.ValueMaxConns, fcgi.ValueMaxReqs, fcgi.ValueMpxsConns}, p.Name)
	}
}

// checkHandlerSaw matches each complete request of the transcript with what
// the handler saw: the params (last duplicate wins) and the body size.
func checkHandlerSaw(t *testing.T, index int, reqs []*peerRequest, app *echoApp) {
	t.Helper()
	seen := app.requests()
	used := make([]bool, len(seen))
	for _, r := range reqs {
		if !expectEnd(r) {
			continue
		}
		want := map[string]string{}
		for _, p := range r.Params {
			want[p.Name] = p.Value
		}
		found := false
		for i, s := range seen {
			if used[i] || s.ID != r.ID || !mapsEqual(s.Params, want) {
				continue
			}
			used[i] = true
			found = true
			require.Equal(t, r.KeepConn, s.KeepConn, "connection %d request %d: keep-conn", index, r.ID)
			require.Equal(t, fcgi.Role(r.Role), s.Role)
			if s.BodySum != "" && r.Role != uint16(fcgi.RoleAuthorizer) {
				require.Equal(t, int64(r.StdinLen), s.BodyBytes, "connection %d request %d: body bytes", index, r.ID)
			}
			break
		}
		require.True(t, found, "connection %d: no handler saw request %d with params %v", index, r.ID, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// expectEnd says whether the server must end r within the replay: the peer
// sent all of it, and it is not the endless /drip the peer disconnected from.
func expectEnd(r *peerRequest) bool {
	if isDrip(r) {
		return false
	}
	return r.StdinEnd || r.Role == uint16(fcgi.RoleAuthorizer)
}

func isDrip(r *peerRequest) bool {
	for _, p := range r.Params {
		if p.Name == "REQUEST_URI" && strings.HasPrefix(p.Value, "/drip") {
			return true
		}
	}
	return false
}

// splitAtBegins cuts a transcript before each BEGIN_REQUEST record.
func splitAtBegins(b []byte) [][]byte {
	var segs [][]byte
	start, off := 0, 0
	for off+8 <= len(b) {
		if b[off+1] == 1 && off > start {
			segs = append(segs, b[start:off])
			start = off
		}
		off += 8 + (int(b[off+4])<<8 | int(b[off+5])) + int(b[off+6])
	}
	return append(segs, b[start:])
}

func beginID(seg []byte) (uint16, bool) {
	if len(seg) < 8 || seg[1] != 1 {
		return 0, false
	}
	return uint16(seg[2])<<8 | uint16(seg[3]), true
}
