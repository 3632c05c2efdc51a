package fcgi

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// fuzzLimits keep every timeout short so that each input ends quickly.
var fuzzLimits = Limits{
	ParamsTimeout: 10 * time.Millisecond, InputIdleTimeout: 10 * time.Millisecond,
	KeepAliveIdleTimeout: 10 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
	LingerTimeout: 5 * time.Millisecond, InputBuffer: 4096, MaxParamsBytes: 8192,
	MaxReqsPerConn: 8,
}

// serveBytes feeds stream to one connection of srv over net.Pipe, reads all it
// answers, closes the peer side and waits for ServeConn to return. It
// reports the records the server sent and whether ServeConn returned in time.
func serveBytes(srv *Server, stream []byte) (out []readRecord, outErr error, returned bool) {
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		srv.ServeConn(server)
		close(done)
	}()
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write(stream)
	})
	rr := newRecordReader(client)
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		h, c, err := rr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				outErr = err
			}
			break
		}
		out = append(out, readRecord{h, string(c)})
	}
	_ = client.Close()
	wg.Wait()
	select {
	case <-done:
		return out, outErr, true
	case <-time.After(3 * time.Second):
		return out, outErr, false
	}
}

// checkServerOutput validates what the server sent: only server-to-peer types,
// management replies on id 0 only, and nothing for an id after its
// END_REQUEST unless the peer began it again.
func checkServerOutput(t *testing.T, in []byte, out []readRecord) {
	began := map[uint16]int{}
	rr := newRecordReader(bytesReader(in))
	for {
		h, _, err := rr.next()
		if err != nil {
			break
		}
		if h.Type == typeBeginRequest {
			began[h.ID]++
		}
	}
	ends := map[uint16]int{}
	for _, r := range out {
		switch r.h.Type {
		case typeGetValuesResult, typeUnknownType:
			if r.h.ID != 0 {
				t.Fatalf("%v on id %d", r.h.Type, r.h.ID)
			}
		case typeStdout, typeStderr, typeEndRequest:
			if r.h.ID == 0 {
				t.Fatalf("%v on id 0", r.h.Type)
			}
			if began[r.h.ID] == 0 {
				t.Fatalf("%v for id %d, never begun", r.h.Type, r.h.ID)
			}
			if r.h.Type == typeEndRequest {
				ends[r.h.ID]++
				if ends[r.h.ID] > began[r.h.ID] {
					t.Fatalf("more END_REQUESTs than BEGINs for id %d", r.h.ID)
				}
			}
		default:
			t.Fatalf("server sent %v", r.h.Type)
		}
	}
}

type byteSliceReader struct{ b []byte }

func (r *byteSliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesReader(b []byte) io.Reader { return &byteSliceReader{b} }

// FuzzServerConn feeds a whole connection arbitrary bytes: no panic, no
// goroutine left behind, only sane records back, and the server still serves
// a normal connection afterwards.
func FuzzServerConn(f *testing.F) {
	f.Add(request(1, true, "body", "A=b"))
	f.Add(request(1, false, "", "CONTENT_LENGTH=3"))
	f.Add(join(beginRec(3, RoleFilter, true), paramsRecs(3, "FCGI_DATA_LENGTH=2"), streamRecs(typeStdin, 3, "s"), streamRecs(typeData, 3, "dd")))
	f.Add(join(beginRec(1, RoleAuthorizer, false), paramsRecs(1)))
	f.Add(join(request(1, true, ""), request(3, true, "x"), rawRecord(typeAbortRequest, 3, nil, 0)))
	f.Add(join(beginRec(1, RoleResponder, true), rawRecord(typeAbortRequest, 1, nil, 0)))
	f.Add(rawRecord(typeGetValues, 0, appendPair(appendPair(nil, ValueMaxConns, ""), "X", ""), 0))
	f.Add(rawRecord(recType(77), 0, nil, 0))
	f.Add(beginRec(0, RoleResponder, true))
	f.Add(join(beginRec(1, RoleResponder, true), beginRec(1, RoleResponder, true)))
	f.Add(join(beginRec(1, Role(7), true), paramsRecs(1)))
	f.Add([]byte{2, 1, 0, 1, 0, 8, 0, 0})
	f.Add(join(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, []byte{0xff, 0xff, 0xff, 0xff, 1}, 0)))
	f.Add(join(beginRec(1, RoleResponder, true), rawRecord(typeStdin, 1, []byte("early"), 0)))
	f.Add(join(request(1, true, "abc"), streamRecs(typeStdin, 1, "late"), rawRecord(typeData, 1, nil, 0)))
	// Found by the fuzzer: a type-0 record whose declared body never arrives,
	// after which the control connection once went unserved (a timing artefact
	// of the 10 ms limits, now retried and checked through the counts).
	f.Add([]byte("\x01\x00\x00\x01\x04\x00\x01\x01\x05\x00\x01\x00\x04\x04ody\xa5\xa5\xa5\xa5\x01\x05\xffn5\x9dBmx\xee"))
	// A body larger than InputBuffer: flow control with a reading handler.
	f.Add(request(1, false, string(make([]byte, 3*fuzzLimits.InputBuffer))))

	srv := &Server{Handler: echoHandler, Limits: fuzzLimits, Logger: quietLogger()}
	control := request(1, false, "control", "Q=c")
	f.Fuzz(func(t *testing.T, stream []byte) {
		g0 := goroutines()
		out, _, returned := serveBytes(srv, stream)
		if !returned {
			t.Fatal("ServeConn did not return after the peer closed")
		}
		checkServerOutput(t, stream, out)
		// Nothing of that connection may stay behind in the server's state.
		srv.mu.Lock()
		conns := len(srv.conns)
		srv.mu.Unlock()
		if conns != 0 || srv.activeReqs.Load() != 0 {
			t.Fatalf("after the connection: %d connections, %d requests still counted", conns, srv.activeReqs.Load())
		}
		// And a normal connection is served. The fuzz limits are so short that
		// a starved scheduler can make the server time out a connection before
		// reading bytes already sent, so allow a retry for that.
		var ctl []readRecord
		for try := 0; try < 3; try++ {
			var err error
			var returned bool
			ctl, err, returned = serveBytes(srv, control)
			if err != nil || !returned {
				t.Fatalf("control connection: %v, returned %v", err, returned)
			}
			if len(ctl) > 0 {
				break
			}
		}
		if len(ctl) == 0 || ctl[len(ctl)-1].h.Type != typeEndRequest {
			t.Fatalf("a normal connection was not served afterwards: %d records", len(ctl))
		}
		if !testenv.Poll(2*time.Second, func() bool { return goroutines() <= g0 }) {
			t.Fatalf("goroutines %d -> %d", g0, goroutines())
		}
	})
}
