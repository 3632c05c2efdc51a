package main

import (
	"context"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/bridge"
	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

func newTestBridge(t *testing.T) *bridge.Bridge {
	t.Helper()
	cfg, err := conf.Quick(nil, "", nil) // no transforms: nothing to start
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSwapHandlerRetire checks the reload rule in-process: a retired
// generation is closed only after its last request, requests that start
// after the swap go to the new generation, and with the last generation
// retired no request is counted any more.
func TestSwapHandlerRetire(t *testing.T) {
	h := newSwapHandler(newTestBridge(t))
	g1 := h.acquire()
	second := newTestBridge(t)
	old := h.swap(second)
	if old != g1 {
		t.Fatal("swap did not return the generation in use")
	}
	if g := h.acquire(); g == nil || g.b != second {
		t.Fatal("a request after the swap did not go to the new bridge")
	} else {
		g.release()
	}
	retired := make(chan error, 1)
	go func() { retired <- old.retire(context.Background()) }()
	// Once retire has marked the generation, only the last release can
	// let it close the bridge.
	if !testenv.Poll(5*time.Second, func() bool { old.mu.Lock(); defer old.mu.Unlock(); return old.retired }) {
		t.Fatal("retire never marked the old generation")
	}
	select {
	case <-retired:
		t.Fatal("the old bridge was closed while a request was still on it")
	case <-old.idle:
		t.Fatal("the old generation counted as idle with a request on it")
	default:
	}
	g1.release()
	select {
	case err := <-retired:
		if err != nil {
			t.Fatalf("retire: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("retire did not finish after the last request")
	}

	if !h.ServesRole(fcgi.RoleResponder) {
		t.Error("ServesRole should answer for the current bridge")
	}
	if err := h.cur.Load().retire(context.Background()); err != nil {
		t.Fatalf("retire the last generation: %v", err)
	}
	if g := h.acquire(); g != nil {
		t.Fatal("a request was counted against a retired generation with no successor")
	}
}
