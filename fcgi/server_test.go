package fcgi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// Tests named after the checklist in shared/fastcgi-notes.md, section by
// section, driven with raw records.

// Framing: records split at every byte offset.
func TestFramingSplitAtEveryOffset(t *testing.T) {
	srv := &Server{Handler: echoHandler, Logger: quietLogger()}
	req := request(1, false, "hello body", "Q=split")
	for off := 1; off < len(req); off++ {
		// A pipe's Write returns once the server has read all of it, so
		// the server meets the split exactly where it is.
		serverEnd, clientEnd := net.Pipe()
		go srv.ServeConn(serverEnd)
		t.Cleanup(func() { clientEnd.Close() })
		p := &peer{t: t, c: clientEnd, rr: newRecordReader(clientEnd), results: map[uint16]*peerResult{}}
		p.send(req[:off])
		p.send(req[off:])
		res := p.result(1)
		h, body := splitCGI(t, res.stdout)
		require.Equal(t, "split", h["X-Q"], "split at %d", off)
		require.Equal(t, "hello body", body)
		p.expectClosed(2 * time.Second)
	}
}

// Framing: any padding 0-255, reserved ignored.
func TestFramingPaddingAndReserved(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{})
	for _, pad := range []int{0, 1, 7, 8, 100, 255} {
		p := ts.dial(t)
		body := appendPair(nil, "Q", "padded")
		p.send(beginRec(1, RoleResponder, false),
			rawRecord(typeParams, 1, body, pad), rawRecord(typeParams, 1, nil, pad),
			rawRecord(typeStdin, 1, []byte("abc"), pad), rawRecord(typeStdin, 1, nil, pad))
		h, b := splitCGI(t, p.result(1).stdout)
		require.Equal(t, "padded", h["X-Q"])
		require.Equal(t, "abc", b)
	}
}

// Framing: version other than 1 closes the connection; BEGIN must be 8 bytes;
// ABORT's body is ignored.
func TestFramingMalformedCloses(t *testing.T) {
	v2 := beginRec(1, RoleResponder, true)
	v2[0] = 2
	tests := []struct {
		name   string
		stream []byte
	}{
		{"version 2", v2},
		{"version 0 mid-request", join(beginRec(1, RoleResponder, true), []byte{0, 4, 0, 1, 0, 0, 0, 0})},
		{"BEGIN body 7 bytes", rawRecord(typeBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0}, 0)},
		{"BEGIN body 9 bytes", rawRecord(typeBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0}, 0)},
	}
	ts := startServer(t, echoHandler, Limits{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ts.dial(t)
			p.send(tt.stream)
			p.expectClosed(2 * time.Second)
			other := ts.dial(t)
			other.send(request(1, false, "", "Q=ok"))
			h, _ := splitCGI(t, other.result(1).stdout)
			require.Equal(t, "ok", h["X-Q"])
		})
	}
}

func TestFramingAbortBodyIgnored(t *testing.T) {
	bh := newBlockingHandler()
	ts := startServer(t, bh, Limits{})
	p := ts.dial(t)
	p.send(request(1, true, ""), rawRecord(typeAbortRequest, 1, []byte("junk body"), 3))
	recvTimeout(t, bh.started, "handler")
	require.ErrorIs(t, recvTimeout(t, bh.done, "handler end"), ErrAborted)
	res := p.result(1)
	require.Equal(t, StatusRequestComplete, res.protoStatus)
}

// Framing: outgoing records at most 65535 bytes, 8-byte aligned, right id;
// never interleaved although several handlers write at once.
func TestFramingOutputSplitAndNeverInterleaved(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 20000) // 320000 bytes
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		for i := 0; i < len(big); i += 1000 {
			_, _ = w.Write([]byte(big[i : i+1000]))
			if i%7000 == 0 {
				_ = w.Flush()
			}
		}
	}), Limits{})
	p := ts.dial(t)
	ids := []uint16{1, 3, 5, 7, 0x7fff, 0xffff}
	for _, id := range ids {
		p.send(request(id, true, ""))
	}
	// The peer's record reader fails on any interleaving; check sizes as we go.
	for done := 0; done < len(ids); {
		_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, content, err := p.rr.next()
		require.NoError(t, err)
		require.LessOrEqual(t, len(content), maxContent)
		require.Zero(t, (int(h.ContentLength)+int(h.PaddingLength))%8)
		r := p.results[h.ID]
		if r == nil {
			r = &peerResult{}
			p.results[h.ID] = r
		}
		switch h.Type {
		case typeStdout:
			r.stdout = append(r.stdout, content...)
		case typeEndRequest:
			r.ended = true
			done++
		default:
			t.Fatalf("unexpected %v", h.Type)
		}
	}
	for _, id := range ids {
		_, body := splitCGI(t, p.results[id].stdout)
		require.Equal(t, big, body, "id %d", id)
	}
}

// Management: GET_VALUES at any time, exact names, decimal values, connection
// kept; unknown types get UNKNOWN_TYPE; no unsolicited records.
func TestManagementGetValues(t *testing.T) {
	bh := newBlockingHandler()
	ts := startServer(t, bh, Limits{MaxConns: 7, MaxReqsPerConn: 9})
	tests := []struct {
		name  string
		asked []string
		want  string
	}{
		{"all", []string{ValueMaxConns, ValueMaxReqs, ValueMpxsConns}, string(encodePairs([2]string{ValueMaxConns, "7"}, [2]string{ValueMaxReqs, "9"}, [2]string{ValueMpxsConns, "1"}))},
		{"one", []string{ValueMpxsConns}, string(encodePairs([2]string{ValueMpxsConns, "1"}))},
		{"unknown dropped, duplicates once", []string{"FCGI_NOPE", ValueMaxReqs, ValueMaxReqs}, string(encodePairs([2]string{ValueMaxReqs, "9"}))},
		{"nothing known", []string{"X"}, ""},
		{"empty query", nil, ""},
	}
	p := ts.dial(t)
	p.send(beginRec(1, RoleResponder, true), paramsRecs(1)) // a request in flight
	recvTimeout(t, bh.started, "handler")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			for _, n := range tt.asked {
				body = appendPair(body, n, "")
			}
			p.send(rawRecord(typeGetValues, 0, body, 0))
			rec := p.mgmtRecord()
			require.Equal(t, typeGetValuesResult, rec.h.Type)
			require.Equal(t, tt.want, rec.content)
		})
	}
	p.send(rawRecord(recType(99), 0, []byte("xyz"), 0))
	rec := p.mgmtRecord()
	require.Equal(t, typeUnknownType, rec.h.Type)
	require.Equal(t, string([]byte{99, 0, 0, 0, 0, 0, 0, 0}), rec.content)
	close(bh.release)
	res := p.result(1)
	_, body := splitCGI(t, res.stdout)
	require.Equal(t, "released", body)
	p.expectOpen(100 * time.Millisecond)
	require.Empty(t, p.mgmt, "no unsolicited management records")
}

func TestManagementMpxsOffWithOneRequestPerConn(t *testing.T) {
	bh := newBlockingHandler()
	ts := startServer(t, bh, Limits{MaxReqsPerConn: 1})
	p := ts.dial(t)
	p.send(rawRecord(typeGetValues, 0, appendPair(nil, ValueMpxsConns, ""), 0))
	require.Equal(t, string(encodePairs([2]string{ValueMpxsConns, "0"})), p.mgmtRecord().content)
	p.send(request(1, true, ""))
	recvTimeout(t, bh.started, "handler")
	p.send(request(2, true, ""))
	require.Equal(t, StatusCantMpxConn, p.result(2).protoStatus)
	close(bh.release)
	require.Equal(t, StatusRequestComplete, p.result(1).protoStatus)
}

// Management and lifecycle: application-to-server types, BEGIN on id 0 and
// duplicate BEGIN are protocol errors that close only that connection.
func TestProtocolErrorsClose(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
	}{
		{"STDOUT from the peer", rawRecord(typeStdout, 1, []byte("x"), 0)},
		{"STDERR from the peer", join(beginRec(1, RoleResponder, true), rawRecord(typeStderr, 1, nil, 0))},
		{"END_REQUEST from the peer", rawRecord(typeEndRequest, 1, make([]byte, 8), 0)},
		{"GET_VALUES_RESULT on id 0", rawRecord(typeGetValuesResult, 0, nil, 0)},
		{"UNKNOWN_TYPE on id 0", rawRecord(typeUnknownType, 0, make([]byte, 8), 0)},
		{"STDIN on id 0", rawRecord(typeStdin, 0, nil, 0)},
		{"BEGIN on id 0", beginRec(0, RoleResponder, true)},
		{"duplicate BEGIN", join(beginRec(1, RoleResponder, true), beginRec(1, RoleResponder, true))},
		{"duplicate BEGIN after params", join(beginRec(3, RoleResponder, true), paramsRecs(3, "HOLD=1"), beginRec(3, RoleResponder, true))},
		{"GET_VALUES on a request id", rawRecord(typeGetValues, 1, nil, 0)},
		{"unknown type on a request id", rawRecord(recType(42), 1, nil, 0)},
		{"STDIN before params end", join(beginRec(1, RoleResponder, true), rawRecord(typeStdin, 1, []byte("x"), 0))},
		{"DATA before params end", join(beginRec(1, RoleFilter, true), rawRecord(typeData, 1, nil, 0))},
		{"DATA before STDIN end", join(beginRec(1, RoleFilter, true), paramsRecs(1), rawRecord(typeData, 1, []byte("d"), 0))},
		{"PARAMS after params end", join(beginRec(1, RoleResponder, true), paramsRecs(1, "HOLD=1"), rawRecord(typeParams, 1, appendPair(nil, "A", "b"), 0))},
		{"truncated pair at params end", join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, []byte{5, 5, 'a'}, 0), rawRecord(typeParams, 1, nil, 0))},
	}
	// Requests with HOLD stay active until their connection is closed, so a
	// record that is only wrong for an active request meets one.
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Params["HOLD"] != "" {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "released")
	}), Limits{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			p := ts.dial(t)
			p.send(tt.stream)
			p.expectClosed(2 * time.Second)
			_ = p.c.Close()
			other := ts.dial(t)
			other.send(request(1, false, ""))
			_, body := splitCGI(t, other.result(1).stdout)
			require.Equal(t, "released", body)
			other.expectClosed(2 * time.Second)
			_ = other.c.Close()
		})
	}
}

// Lifecycle: ids up to 65535 in a map, requests in flight at once.
func TestLifecycleMultiplexedIDs(t *testing.T) {
	bh := newBlockingHandler()
	ts := startServer(t, bh, Limits{})
	p := ts.dial(t)
	ids := []uint16{1, 2, 3, 0x7fff, 0x8000, 0xffff}
	for _, id := range ids {
		p.send(request(id, true, ""))
	}
	seen := map[uint16]bool{}
	for range ids {
		seen[recvTimeout(t, bh.started, "handler").ID] = true
	}
	require.Len(t, seen, len(ids))
	close(bh.release)
	for _, id := range ids {
		res := p.result(id)
		require.Equal(t, StatusRequestComplete, res.protoStatus)
		require.True(t, res.stdoutEnded)
	}
	p.expectOpen(50 * time.Millisecond)
}

// Lifecycle: unknown role.
func TestLifecycleUnknownRole(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{})
	for _, keep := range []bool{true, false} {
		p := ts.dial(t)
		p.send(beginRec(1, Role(9), keep), paramsRecs(1, "A=b"), streamRecs(typeStdin, 1, "x"))
		res := p.result(1)
		require.Equal(t, StatusUnknownRole, res.protoStatus)
		require.Empty(t, res.stdout)
		if keep {
			p.send(request(1, true, "after"))
			_, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, "after", body, "late records of the refused request were ignored")
		} else {
			p.expectClosed(2 * time.Second)
		}
	}
}

// Lifecycle: over capacity.
func TestLifecycleOverCapacity(t *testing.T) {
	t.Run("multiplexing peer gets OVERLOADED per connection", func(t *testing.T) {
		bh := newBlockingHandler()
		ts := startServer(t, bh, Limits{MaxReqsPerConn: 2})
		p := ts.dial(t)
		p.send(request(1, true, ""), request(3, true, ""))
		recvTimeout(t, bh.started, "handler")
		recvTimeout(t, bh.started, "handler")
		p.send(request(5, true, ""))
		res := p.result(5)
		require.Equal(t, StatusOverloaded, res.protoStatus)
		require.Empty(t, res.stdout)
		close(bh.release)
		p.result(1)
		p.result(3)
	})
	t.Run("id-1 peer gets a 503 response when the server is full", func(t *testing.T) {
		bh := newBlockingHandler()
		ts := startServer(t, bh, Limits{MaxReqs: 1})
		a := ts.dial(t)
		a.send(request(1, true, ""))
		recvTimeout(t, bh.started, "handler")
		b := ts.dial(t)
		b.send(request(1, false, "body"))
		res := b.result(1)
		require.Equal(t, StatusRequestComplete, res.protoStatus)
		h, _ := splitCGI(t, res.stdout)
		require.Equal(t, "503 Service Unavailable", h["Status"])
		require.Equal(t, "1", h["Retry-After"])
		b.expectClosed(2 * time.Second)
		close(bh.release)
		a.result(1)
	})
	t.Run("connections over MaxConns are closed at accept when all are busy", func(t *testing.T) {
		bh := newBlockingHandler()
		ts := startServer(t, bh, Limits{MaxConns: 1})
		a := ts.dial(t)
		a.send(request(1, true, ""))
		recvTimeout(t, bh.started, "handler")
		b := ts.dial(t)
		b.expectClosed(2 * time.Second)
		bh.release <- struct{}{}
		_, body := splitCGI(t, a.result(1).stdout)
		require.Equal(t, "released", body)
	})
}

// Lifecycle: records for inactive ids are ignored; exactly one END_REQUEST.
func TestLifecycleInactiveIDsIgnored(t *testing.T) {
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.WriteString(w, "early") // returns without reading STDIN
	}), Limits{})
	p := ts.dial(t)
	p.send(beginRec(1, RoleResponder, true), paramsRecs(1))
	res := p.result(1)
	_, body := splitCGI(t, res.stdout)
	require.Equal(t, "early", body)
	// Late STDIN for the ended request, ABORT for it, input for a never-begun id.
	p.send(streamRecs(typeStdin, 1, strings.Repeat("late", 1000)), rawRecord(typeAbortRequest, 1, nil, 0),
		streamRecs(typeStdin, 77, "never begun"), rawRecord(typeAbortRequest, 78, nil, 0), streamRecs(typeData, 79, "d"))
	p.expectOpen(100 * time.Millisecond)
	p.send(request(1, true, "next"))
	_, body = splitCGI(t, p.result(1).stdout)
	require.Equal(t, "early", body)
	p.expectOpen(50 * time.Millisecond)
}

// Lifecycle: KEEP_CONN=0 closes promptly after the last request; KEEP_CONN=1
// stays open until the idle timeout.
func TestLifecycleKeepConn(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{KeepAliveIdleTimeout: 300 * time.Millisecond})
	t.Run("off", func(t *testing.T) {
		p := ts.dial(t)
		start := time.Now()
		p.send(request(1, false, "x"))
		p.result(1)
		p.expectClosed(time.Second)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("off waits for the other active requests", func(t *testing.T) {
		bh := newBlockingHandler()
		ts := startServer(t, bh, Limits{})
		p := ts.dial(t)
		p.send(request(3, true, ""), request(1, false, ""))
		recvTimeout(t, bh.started, "handler")
		recvTimeout(t, bh.started, "handler")
		bh.release <- struct{}{}
		first := recvTimeout(t, bh.done, "first end")
		require.NoError(t, first)
		// One of the two ended; the connection must stay open for the other.
		for p.results[1] == nil || !p.results[1].ended {
			if p.results[3] != nil && p.results[3].ended {
				break
			}
			_, err := p.next()
			require.NoError(t, err)
		}
		p.expectOpen(50 * time.Millisecond)
		close(bh.release)
		for _, id := range []uint16{1, 3} {
			if r := p.results[id]; r == nil || !r.ended {
				p.result(id)
			}
		}
		p.expectClosed(time.Second)
	})
	t.Run("on", func(t *testing.T) {
		p := ts.dial(t)
		for i := 0; i < 3; i++ {
			p.send(request(1, true, "x"))
			p.result(1)
		}
		p.expectOpen(100 * time.Millisecond)
		p.expectClosed(2 * time.Second) // idle timeout
	})
}

// Lifecycle: ABORT cancels the handler's context and gets one END_REQUEST.
func TestLifecycleAbort(t *testing.T) {
	bh := newBlockingHandler()
	ts := startServer(t, bh, Limits{})
	p := ts.dial(t)
	p.send(request(1, true, ""))
	recvTimeout(t, bh.started, "handler")
	p.send(rawRecord(typeAbortRequest, 1, nil, 0))
	require.ErrorIs(t, recvTimeout(t, bh.done, "handler end"), ErrAborted)
	res := p.result(1)
	require.Equal(t, StatusRequestComplete, res.protoStatus)
	p.send(rawRecord(typeAbortRequest, 1, nil, 0)) // again: ignored
	p.expectOpen(100 * time.Millisecond)
}

// PARAMS: pairs straddle records, 1- and 4-byte lengths, duplicates (last
// wins), empty values kept.
func TestParamsReassembly(t *testing.T) {
	got := make(chan map[string]string, 1)
	order := make(chan []string, 1)
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) { order <- r.ParamOrder; got <- r.Params }), Limits{})
	var body []byte
	body = appendPair(body, "SHORT", "v")
	body = appendPair(body, "LONG_VALUE", strings.Repeat("L", 300))
	body = append(body, 0x80, 0, 0, 3, 0x80, 0, 0, 1, 'N', 'M', 'L', 'x') // non-minimal both
	body = appendPair(body, "DUP", "first")
	body = appendPair(body, "CONTENT_LENGTH", "")
	body = appendPair(body, "DUP", "second")
	for _, size := range []int{1, 3, 7, 64, len(body)} {
		p := ts.dial(t)
		p.send(beginRec(1, RoleResponder, false))
		for i := 0; i < len(body); i += size {
			p.send(rawRecord(typeParams, 1, body[i:min(i+size, len(body))], 0))
		}
		p.send(rawRecord(typeParams, 1, nil, 0), rawRecord(typeStdin, 1, nil, 0))
		params := recvTimeout(t, got, "params")
		require.Equal(t, map[string]string{
			"SHORT": "v", "LONG_VALUE": strings.Repeat("L", 300), "NML": "x", "DUP": "second", "CONTENT_LENGTH": "",
		}, params, "records of %d bytes", size)
		// Each name once, where it first came: headers built from the
		// params keep the client's order.
		require.Equal(t, []string{"SHORT", "LONG_VALUE", "NML", "DUP", "CONTENT_LENGTH"}, <-order, "records of %d bytes", size)
		p.result(1)
	}
}

// PARAMS: limits, each closing only the offending connection.
func TestParamsLimits(t *testing.T) {
	lim := Limits{MaxParamsBytes: 1000, MaxParamsPairs: 5, MaxNameLen: 10, MaxValueLen: 100}
	many := make([]string, 6)
	for i := range many {
		many[i] = string(rune('A'+i)) + "=1"
	}
	tests := []struct {
		name   string
		stream []byte
	}{
		{"total bytes", join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, appendPair(nil, "A", strings.Repeat("v", 90)), 0),
			bytes.Repeat(rawRecord(typeParams, 1, appendPair(nil, "B", strings.Repeat("v", 90)), 0), 11))},
		{"pair count", join(beginRec(1, RoleResponder, true), paramsRecs(1, many...))},
		{"name length", join(beginRec(1, RoleResponder, true), paramsRecs(1, "ELEVEN_CHAR=x"))},
		{"value length declared huge", join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, []byte{1, 0xff, 0xff, 0xff, 0xff, 'A'}, 0))},
	}
	ts := startServer(t, echoHandler, lim)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ts.dial(t)
			p.send(tt.stream)
			p.expectClosed(2 * time.Second)
		})
	}
	p := ts.dial(t)
	p.send(request(1, false, "", "A=1", "B=2", "C=3", "D=4", "E=5"))
	p.result(1)
}

// PARAMS: a connection trickling params is closed at ParamsTimeout while
// another connection is served.
func TestParamsTimeoutSlowloris(t *testing.T) {
	leakCheck(t)
	ts := startServer(t, echoHandler, Limits{ParamsTimeout: 300 * time.Millisecond})
	slow := ts.dial(t)
	slow.send(beginRec(1, RoleResponder, true))
	stream := rawRecord(typeParams, 1, appendPair(nil, "HTTP_X", strings.Repeat("s", 40)), 0)
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for _, b := range stream {
			if _, err := slow.c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // the slow peer under test: one byte every 20 ms
		}
	}()
	fast := ts.dial(t)
	fast.send(request(1, true, "served"))
	_, body := splitCGI(t, fast.result(1).stdout)
	require.Equal(t, "served", body)
	slow.expectClosed(3 * time.Second)
	require.Less(t, time.Since(start), 2*time.Second)
	<-closed
	_ = slow.c.Close()
	_ = fast.c.Close()
}

// PARAMS: a new connection that sends nothing is closed at ParamsTimeout.
func TestParamsTimeoutSilentConnection(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{ParamsTimeout: 200 * time.Millisecond})
	p := ts.dial(t)
	p.expectClosed(2 * time.Second)
}

// STDIN: read to the empty record; CONTENT_LENGTH advisory; short and long
// bodies reported; chunked bodies without a length.
func TestStdinLengths(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{})
	tests := []struct {
		name    string
		body    string
		params  []string
		wantErr string
	}{
		{"matching", "12345", []string{"CONTENT_LENGTH=5"}, ""},
		{"chunked, empty length (nginx unbuffered)", "12345", []string{"CONTENT_LENGTH=", "HTTP_TRANSFER_ENCODING=chunked"}, ""},
		{"no length (Apache chunked)", "12345", nil, ""},
		{"invalid length", "12345", []string{"CONTENT_LENGTH=abc"}, ""},
		{"short", "123", []string{"CONTENT_LENGTH=5"}, "fcgi: FCGI_STDIN ended after 3 of the 5 bytes CONTENT_LENGTH declared"},
		{"long", "1234567", []string{"CONTENT_LENGTH=5"}, "fcgi: FCGI_STDIN carried more than the 5 bytes CONTENT_LENGTH declared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ts.dial(t)
			p.send(request(1, false, tt.body, tt.params...))
			h, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, tt.wantErr, h["X-Stdin-Err"])
			if tt.wantErr == "" {
				require.Equal(t, tt.body, body)
			} else {
				require.Equal(t, tt.body[:min(len(tt.body), 5)], body)
			}
		})
	}
}

// STDIN: AUTHORIZER without any STDIN (mod_authnz_fcgi) is served.
func TestStdinAuthorizerWithoutStdin(t *testing.T) {
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		b, err := io.ReadAll(r.Stdin)
		if err != nil || len(b) > 0 {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Variable-USER", "alice")
		w.WriteHeader(200)
	}), Limits{})
	p := ts.dial(t)
	p.send(beginRec(1, RoleAuthorizer, false), paramsRecs(1, "REMOTE_USER=alice"))
	h, _ := splitCGI(t, p.result(1).stdout)
	require.Equal(t, "200 OK", h["Status"])
	require.Equal(t, "alice", h["Variable-User"])
}

// STDIN: full duplex: the handler streams a large body back while it is still
// arriving, with a small input buffer.
func TestStdinFullDuplexLargeBody(t *testing.T) {
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.Copy(w, r.Stdin)
	}), Limits{InputBuffer: 64 << 10})
	body := strings.Repeat("0123456789", 300_000) // 3 MB
	p := ts.dial(t)
	sent := make(chan error, 1)
	go func() {
		_, err := p.c.Write(request(1, false, body))
		sent <- err
	}()
	res := p.result(1)
	require.NoError(t, <-sent)
	_, got := splitCGI(t, res.stdout)
	require.Equal(t, len(body), len(got))
	require.True(t, got == body)
}

// STDIN: a handler that ends early (or never reads) on the only request is
// flow controlled, and the rest of its STDIN is discarded without a reset.
func TestStdinHandlerNotReadingSoleRequest(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		<-release
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}), Limits{InputBuffer: 4096})
	p := ts.dial(t)
	body := strings.Repeat("x", 1<<20)
	sent := make(chan error, 1)
	go func() {
		_, err := p.c.Write(request(1, true, body))
		sent <- err
	}()
	waitInputFull(t, ts.srv, 1)
	close(release)
	h, _ := splitCGI(t, p.result(1).stdout)
	require.Equal(t, "413 Request Entity Too Large", h["Status"])
	require.NoError(t, recvTimeout(t, sent, "body sent"))
	p.send(request(1, true, "again"))
	p.result(1)
}

// STDIN: with several requests on the connection, the one whose handler does
// not read fails with ErrInputOverflow and the others go on.
func TestStdinOverflowFailsOnlyThatRequest(t *testing.T) {
	slowErr := make(chan error, 1)
	slowStarted := make(chan struct{})
	proceed := make(chan struct{})
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.ID == 1 {
			close(slowStarted)
			<-proceed
			_, err := io.Copy(io.Discard, r.Stdin)
			slowErr <- err
			return
		}
		_, _ = io.Copy(w, r.Stdin)
	}), Limits{InputBuffer: 4096})
	p := ts.dial(t)
	p.send(beginRec(1, RoleResponder, true), paramsRecs(1), beginRec(3, RoleResponder, true), paramsRecs(3))
	<-slowStarted
	p.send(streamRecs(typeStdin, 1, strings.Repeat("s", 20000)))
	p.send(streamRecs(typeStdin, 3, "fast"))
	_, body := splitCGI(t, p.result(3).stdout)
	require.Equal(t, "fast", body)
	close(proceed)
	require.ErrorIs(t, recvTimeout(t, slowErr, "slow handler"), ErrInputOverflow)
	p.result(1)
}

// STDIN: no input within InputIdleTimeout fails that request's reader only.
func TestStdinIdleTimeout(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{InputIdleTimeout: 200 * time.Millisecond})
	p := ts.dial(t)
	p.send(beginRec(1, RoleResponder, true), paramsRecs(1), rawRecord(typeStdin, 1, []byte("part"), 0))
	h, body := splitCGI(t, p.result(1).stdout)
	require.Equal(t, ErrInputTimeout.Error(), h["X-Stdin-Err"])
	require.Equal(t, "part", body)
	p.send(rawRecord(typeStdin, 1, []byte("late"), 0), rawRecord(typeStdin, 1, nil, 0), request(1, true, "next"))
	_, body = splitCGI(t, p.result(1).stdout)
	require.Equal(t, "next", body)
}

// FILTER: STDIN then DATA, lengths and last-mod parsed and checked.
func TestFilterRole(t *testing.T) {
	type seen struct {
		length  int64
		lastMod time.Time
	}
	got := make(chan seen, 8)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		got <- seen{r.DataLength, r.DataLastMod}
		echoHandler(w, r)
	})
	ts := startServer(t, h, Limits{})
	tests := []struct {
		name     string
		params   []string
		data     string
		wantLen  int64
		wantMod  time.Time
		wantBody string
		dataErr  string
	}{
		{"declared", []string{"FCGI_DATA_LENGTH=11", "FCGI_DATA_LAST_MOD=1700000000"}, "hello world", 11, time.Unix(1700000000, 0), "stdin|hello world", ""},
		{"missing length: streamed unchecked", nil, "free", -1, time.Time{}, "stdin|free", ""},
		{"invalid length and mod", []string{"FCGI_DATA_LENGTH=-3", "FCGI_DATA_LAST_MOD=x"}, "abc", -1, time.Time{}, "stdin|abc", ""},
		{"short data", []string{"FCGI_DATA_LENGTH=10"}, "abc", 10, time.Time{}, "stdin|abc", "fcgi: FCGI_DATA ended after 3 of the 10 bytes FCGI_DATA_LENGTH declared"},
		{"long data", []string{"FCGI_DATA_LENGTH=2"}, "abcdef", 2, time.Time{}, "stdin|ab", "fcgi: FCGI_DATA carried more than the 2 bytes FCGI_DATA_LENGTH declared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ts.dial(t)
			p.send(beginRec(1, RoleFilter, false), paramsRecs(1, tt.params...),
				streamRecs(typeStdin, 1, "stdin|"), streamRecs(typeData, 1, tt.data))
			s := recvTimeout(t, got, "handler")
			require.Equal(t, tt.wantLen, s.length)
			require.True(t, tt.wantMod.Equal(s.lastMod))
			hdr, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, tt.wantBody, body)
			require.Equal(t, tt.dataErr, hdr["X-Data-Err"])
			require.Equal(t, "FILTER", hdr["X-Role"])
		})
	}
}

// FILTER: output waits for the end of STDIN; a handler may answer from cache
// without reading DATA (the rest is discarded).
func TestFilterOutputAfterStdinAndCache(t *testing.T) {
	wrote := make(chan struct{})
	var once sync.Once
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.WriteString(w, "cached")
		_ = w.Flush()                    // held until STDIN ends
		once.Do(func() { close(wrote) }) // the second request must not panic
	}), Limits{})
	p := ts.dial(t)
	p.send(beginRec(1, RoleFilter, true), paramsRecs(1, "FCGI_DATA_LENGTH=100000"), rawRecord(typeStdin, 1, []byte("in"), 0))
	p.expectOpen(100 * time.Millisecond)
	select {
	case <-wrote:
		t.Fatal("FILTER output sent before the end of STDIN")
	default:
	}
	p.send(rawRecord(typeStdin, 1, nil, 0), rawRecord(typeData, 1, bytes.Repeat([]byte{'d'}, 1000), 0))
	_, body := splitCGI(t, p.result(1).stdout)
	require.Equal(t, "cached", body)
	p.send(streamRecs(typeData, 1, strings.Repeat("d", 99000)), request(1, true, "next"))
	p.result(1)
}

// FILTER: an empty DATA stream on a RESPONDER request is tolerated (flup).
func TestFilterEmptyDataOnResponder(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{})
	p := ts.dial(t)
	p.send(request(1, false, "body"), rawRecord(typeData, 1, nil, 0))
	_, body := splitCGI(t, p.result(1).stdout)
	require.Equal(t, "body", body)
}

// Output: a complete header block even when the handler writes nothing;
// explicit Status; CRLF; default Content-Type; the closing records in order.
func TestOutputHeaderBlock(t *testing.T) {
	tests := []struct {
		name string
		h    HandlerFunc
		want string
	}{
		{"nothing written", func(w ResponseWriter, r *Request) {},
			"Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n\r\n"},
		{"status only, no body allowed", func(w ResponseWriter, r *Request) { w.WriteHeader(204) },
			"Status: 204 No Content\r\n\r\n"},
		{"redirect with explicit status", func(w ResponseWriter, r *Request) {
			w.Header().Set("Location", "/x")
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(302)
		}, "Status: 302 Found\r\nContent-Type: text/html\r\nLocation: /x\r\n\r\n"},
		{"header injection neutralised", func(w ResponseWriter, r *Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-A", "a\r\nSet-Cookie: evil=1")
			w.Header().Set("Bad Name", "x")
			w.Header().Set("Status", "500 Nope")
			_, _ = io.WriteString(w, "b")
		}, "Status: 200 OK\r\nContent-Type: text/plain\r\nX-A: a  Set-Cookie: evil=1\r\n\r\nb"},
		{"unknown status code", func(w ResponseWriter, r *Request) { w.Header().Set("Content-Type", "a/b"); w.WriteHeader(299) },
			"Status: 299 Status 299\r\nContent-Type: a/b\r\n\r\n"},
		{"WriteHead: fields in their order, checked like the map's, the map's after", func(w ResponseWriter, r *Request) {
			w.Header().Set("X-Map", "m")
			w.(HeadWriter).WriteHead(201, httpmsg.Header{
				{Name: "Location", Value: "/new"}, {Name: "Content-Type", Value: "text/html"},
				{Name: "Bad Name", Value: "x"}, {Name: "status", Value: "500"},
				{Name: "X-A", Value: "a\r\nSet-Cookie: evil=1"}, {Name: "Location", Value: "/second"},
			})
			_, _ = io.WriteString(w, "b")
		}, "Status: 201 Created\r\nLocation: /new\r\nContent-Type: text/html\r\nX-A: a  Set-Cookie: evil=1\r\nLocation: /second\r\nX-Map: m\r\n\r\nb"},
		{"WriteHead: the default Content-Type when neither sets one", func(w ResponseWriter, r *Request) {
			w.(HeadWriter).WriteHead(200, httpmsg.Header{{Name: "X-B", Value: "b"}})
		}, "Status: 200 OK\r\nX-B: b\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n\r\n"},
		{"WriteHead: a Content-Type in the map counts", func(w ResponseWriter, r *Request) {
			w.Header().Set("Content-Type", "a/b")
			w.(HeadWriter).WriteHead(200, httpmsg.Header{{Name: "X-B", Value: "b"}})
		}, "Status: 200 OK\r\nX-B: b\r\nContent-Type: a/b\r\n\r\n"},
		{"panic before output", func(w ResponseWriter, r *Request) { panic("boom") },
			"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, tt.h, Limits{})
			p := ts.dial(t)
			p.send(request(1, false, ""))
			res := p.result(1)
			require.Equal(t, tt.want, string(res.stdout))
			require.True(t, res.stdoutEnded)
			require.False(t, res.stderrEnded, "no STDERR records when nothing was written to stderr")
			if tt.name == "panic before output" {
				require.Equal(t, uint32(1), res.appStatus)
			}
		})
	}
}

// Output: one write carries the last STDOUT, its end and END_REQUEST; the
// records come in the required order.
func TestOutputClosingOrder(t *testing.T) {
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, _ = io.WriteString(w.Stderr(), "warn\x1b[31m\r\n")
		_, _ = io.WriteString(w, "body")
	}), Limits{})
	p := ts.dial(t)
	p.send(request(1, false, ""))
	var order []string
	for {
		_ = p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, content, err := p.rr.next()
		if err != nil {
			break
		}
		order = append(order, h.Type.String()+map[bool]string{true: "(empty)", false: ""}[len(content) == 0])
		if h.Type == typeStderr && len(content) > 0 {
			require.Equal(t, "warn?[31m?\n", string(content), "control characters sanitized")
		}
	}
	require.Equal(t, []string{"STDERR", "STDOUT", "STDOUT(empty)", "STDERR(empty)", "END_REQUEST"}, order)
}

// Output: STDERR is bounded per request.
func TestOutputStderrBounded(t *testing.T) {
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		for i := 0; i < 100; i++ {
			_, _ = io.WriteString(w.Stderr(), strings.Repeat("e", 100))
		}
	}), Limits{MaxStderr: 1000})
	p := ts.dial(t)
	p.send(request(1, false, ""))
	res := p.result(1)
	require.Equal(t, strings.Repeat("e", 1000)+stderrCutNote, string(res.stderr))
}

// Output: ReadFrom (io.Copy) fills records directly and writes fail after the
// request ended.
func TestOutputReadFromAndWritesAfterEnd(t *testing.T) {
	kept := make(chan ResponseWriter, 1)
	big := strings.Repeat("r", 200_000)
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		_, ok := w.(io.ReaderFrom)
		if !ok {
			panic("no ReaderFrom")
		}
		_, _ = io.Copy(w, strings.NewReader(big))
		kept <- w
	}), Limits{})
	p := ts.dial(t)
	p.send(request(1, true, ""))
	_, body := splitCGI(t, p.result(1).stdout)
	require.Equal(t, big, body)
	w := <-kept
	_, err := w.Write([]byte("late"))
	require.ErrorIs(t, err, ErrRequestEnded)
	require.ErrorIs(t, w.Flush(), ErrRequestEnded)
	p.expectOpen(50 * time.Millisecond)
}

// Shutdown: in-flight requests finish, idle connections close at once,
// Serve returns ErrServerClosed; at the deadline requests get END_REQUEST.
func TestShutdown(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		leakCheck(t)
		bh := newBlockingHandler()
		ts := startServer(t, bh, Limits{})
		idle := ts.dial(t)
		idle.send(request(1, true, ""))
		recvTimeout(t, bh.started, "handler")
		bh.release <- struct{}{}
		idle.result(1)
		busy := ts.dial(t)
		busy.send(request(1, true, ""))
		recvTimeout(t, bh.started, "handler")
		done := make(chan error, 1)
		go func() { done <- ts.srv.Shutdown(context.Background()) }()
		idle.expectClosed(time.Second)
		require.ErrorIs(t, recvTimeout(t, ts.served, "Serve"), ErrServerClosed)
		ts.served <- ErrServerClosed // for the cleanup
		bh.release <- struct{}{}
		_, body := splitCGI(t, busy.result(1).stdout)
		require.Equal(t, "released", body)
		busy.expectClosed(time.Second)
		require.NoError(t, recvTimeout(t, done, "Shutdown"))
		_ = idle.c.Close()
		_ = busy.c.Close()
	})
	t.Run("deadline", func(t *testing.T) {
		stubborn := make(chan struct{})
		started := make(chan uint16, 2)
		var once sync.Once
		ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
			started <- r.ID
			if r.ID == 1 {
				<-stubborn // ignores its context
				return
			}
			<-r.Context().Done()
		}), Limits{})
		defer once.Do(func() { close(stubborn) })
		p := ts.dial(t)
		// The read loop takes records in order: once both handlers run,
		// request 5 has begun too and waits for its PARAMS.
		p.send(beginRec(5, RoleResponder, true), request(1, true, ""), request(3, true, ""))
		recvTimeout(t, started, "handler 1 or 3")
		recvTimeout(t, started, "handler 1 or 3")
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, ts.srv.Shutdown(ctx), context.DeadlineExceeded)
		for _, id := range []uint16{1, 3, 5} {
			res := p.result(id)
			require.Equal(t, StatusRequestComplete, res.protoStatus, "id %d", id)
			if id == 1 {
				h, _ := splitCGI(t, res.stdout)
				require.Equal(t, "503 Service Unavailable", h["Status"], "a response that never started becomes a 503")
			}
		}
		once.Do(func() { close(stubborn) })
		p.expectClosed(2 * time.Second)
	})
}

// Limits: a peer that stops reading is cut off by WriteTimeout.
func TestWriteTimeout(t *testing.T) {
	writeFailed := make(chan error, 1)
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.ID == 2 {
			return
		}
		chunk := bytes.Repeat([]byte{'w'}, 1<<16)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				writeFailed <- err
				return
			}
		}
		writeFailed <- context.Cause(r.Context())
	}), Limits{WriteTimeout: 200 * time.Millisecond})
	p := ts.dial(t)
	p.send(request(1, true, ""))
	require.Error(t, recvTimeout(t, writeFailed, "the write timeout"))
	// The server gave up: reading now drains what was buffered, then EOF.
	p.expectClosed(5 * time.Second)
	other := ts.dial(t)
	other.send(request(2, false, ""))
	require.Equal(t, StatusRequestComplete, other.result(2).protoStatus)
}

// Limits: HandlerTimeout cancels the handler's context; the handler can still
// answer.
func TestHandlerTimeout(t *testing.T) {
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		<-r.Context().Done()
		if errors.Is(context.Cause(r.Context()), ErrHandlerTimeout) {
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	}), Limits{HandlerTimeout: 100 * time.Millisecond})
	p := ts.dial(t)
	p.send(request(1, true, ""))
	h, _ := splitCGI(t, p.result(1).stdout)
	require.Equal(t, "504 Gateway Timeout", h["Status"])
	p.expectOpen(50 * time.Millisecond)
}

// Output: a header block larger than one record is split like any content.
func TestOutputHeaderBlockLargerThanARecord(t *testing.T) {
	long := strings.Repeat("h", 70_000)
	ts := startServer(t, HandlerFunc(func(w ResponseWriter, r *Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Long", long)
		_, _ = io.WriteString(w, "after")
	}), Limits{})
	p := ts.dial(t)
	p.send(request(1, false, ""))
	h, body := splitCGI(t, p.result(1).stdout)
	require.Equal(t, long, h["X-Long"])
	require.Equal(t, "after", body)
}

func TestRoleString(t *testing.T) {
	for r, want := range map[Role]string{RoleResponder: "RESPONDER", RoleAuthorizer: "AUTHORIZER", RoleFilter: "FILTER", 0: "ROLE(0)", 9: "ROLE(9)"} {
		require.Equal(t, want, r.String())
	}
	require.Equal(t, "GET_VALUES_RESULT", typeGetValuesResult.String())
	require.Equal(t, "TYPE(42)", recType(42).String())
}

// rolesHandler serves only the roles listed and counts its calls.
type rolesHandler struct {
	roles map[Role]bool
	calls chan Role
}

func (h *rolesHandler) ServesRole(role Role) bool { return h.roles[role] }

func (h *rolesHandler) ServeFCGI(w ResponseWriter, r *Request) {
	h.calls <- r.Role
	echoHandler.ServeFCGI(w, r)
}

// Lifecycle: a RoleServer handler that does not play the role gets
// END_REQUEST{UNKNOWN_ROLE} without being called; the roles it plays are
// served on the same connection.
func TestLifecycleRoleServerRefusesRole(t *testing.T) {
	h := &rolesHandler{roles: map[Role]bool{RoleResponder: true}, calls: make(chan Role, 8)}
	ts := startServer(t, h, Limits{})
	for _, keep := range []bool{true, false} {
		p := ts.dial(t)
		p.send(beginRec(1, RoleAuthorizer, keep), paramsRecs(1, "A=b"))
		res := p.result(1)
		require.Equal(t, StatusUnknownRole, res.protoStatus)
		require.Equal(t, uint32(0), res.appStatus)
		require.Empty(t, res.stdout)
		require.False(t, res.stdoutEnded, "a refused request sends no STDOUT at all")
		if keep {
			p.send(request(1, true, "after"))
			_, body := splitCGI(t, p.result(1).stdout)
			require.Equal(t, "after", body)
			require.Equal(t, RoleResponder, recvTimeout(t, h.calls, "responder call"))
		} else {
			p.expectClosed(2 * time.Second)
		}
	}
	select {
	case r := <-h.calls:
		t.Fatalf("handler called for role %v", r)
	default:
	}
	// FILTER is refused just as well, on a multiplexed connection too.
	p := ts.dial(t)
	p.send(beginRec(3, RoleFilter, true), request(5, true, "x"))
	require.Equal(t, StatusUnknownRole, p.result(3).protoStatus)
	require.Equal(t, StatusRequestComplete, p.result(5).protoStatus)
}

type panickyRoles struct{}

func (panickyRoles) ServesRole(Role) bool                   { panic("no idea") }
func (panickyRoles) ServeFCGI(w ResponseWriter, r *Request) { echoHandler(w, r) }

// A RoleServer that panics is asked on the read loop: the request is refused
// as UNKNOWN_ROLE and the server lives on.
func TestLifecycleRoleServerPanics(t *testing.T) {
	ts := startServer(t, panickyRoles{}, Limits{})
	for range 2 {
		p := ts.dial(t)
		p.send(request(1, false, ""))
		require.Equal(t, StatusUnknownRole, p.result(1).protoStatus)
		p.expectClosed(2 * time.Second)
	}
}
