package fcgi

import (
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
	// The oldest were closed to make room, one per new connection (the
	// requests' connections may still be closing, and count); the newest
	// is still open.
	for _, p := range stalled[:8] {
		p.expectClosed(2 * time.Second)
	}
	stalled[len(stalled)-1].expectOpen(20 * time.Millisecond)
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
