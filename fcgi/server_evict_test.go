package fcgi

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// At MaxConns, connections that sent part of a record and stalled do not
// lock out a web server: each new connection closes the one stalled
// longest, and a normal request is answered.
func TestMaxConnsEvictsStalledConnections(t *testing.T) {
	leakCheck(t)
	ts := startServer(t, echoHandler, Limits{MaxConns: 4})
	var stalled []*peer
	for i := range 12 {
		p := ts.dial(t)
		if i%2 == 0 {
			p.send(beginRec(1, RoleResponder, true)[:4]) // half a header
		} else {
			// A whole BEGIN_REQUEST, then half of a PARAMS record.
			p.send(beginRec(1, RoleResponder, true), rawRecord(typeParams, 1, appendPair(nil, "A", "b"), 0)[:10])
		}
		stalled = append(stalled, p)
	}
	for round := range 3 {
		p := ts.dial(t)
		p.send(request(1, false, "served"))
		res := p.result(1)
		require.Equal(t, StatusRequestComplete, res.protoStatus, "round %d", round)
		_, body := splitCGI(t, res.stdout)
		require.Equal(t, "served", body)
		p.expectClosed(2 * time.Second)
	}
	// Each new connection closed one stalled connection to make room (the
	// requests' connections, closing, still count): 8 while they were
	// dialled, 3 for the requests. Which ones depends on when their read
	// loops saw their BEGIN_REQUEST, so only the count is checked.
	open := 0
	for _, p := range stalled {
		_ = p.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := p.c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	require.Equal(t, 1, open, "stalled connections left open")
	for _, p := range stalled {
		_ = p.c.Close()
	}
}

// With no stalled connection, the one idle longest between requests makes
// room; it is closed cleanly (EOF, no reset), and nothing it had carried is
// lost.
func TestMaxConnsEvictsLongestIdle(t *testing.T) {
	ts := startServer(t, echoHandler, Limits{MaxConns: 2})
	a := ts.dial(t)
	a.send(request(1, true, "a"))
	a.result(1)
	b := ts.dial(t)
	b.send(request(1, true, "b"))
	b.result(1)
	c := ts.dial(t)
	c.send(request(1, true, "c"))
	_, body := splitCGI(t, c.result(1).stdout)
	require.Equal(t, "c", body)
	a.expectClosed(2 * time.Second)
	b.send(request(1, true, "b again"))
	_, body = splitCGI(t, b.result(1).stdout)
	require.Equal(t, "b again", body)
}
