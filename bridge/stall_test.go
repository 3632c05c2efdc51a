package bridge

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// A web server that stops sending FCGI_DATA mid-stream costs its own request
// (504 at the transform's timeout) and nothing else: the transform process
// it leased is free at once for the next request, not held until the input
// idle timeout or the connection's end.
func TestStalledFilterDataFreesTransform(t *testing.T) {
	cfg, err := conf.Parse("stall.toml", []byte(
		tt("only", testtransform.Upper, "max = 1\ntimeout = \"300ms\"\nkill_grace = \"100ms\"")+`
[server]
input_idle_timeout = "1m"
[[route]]
role = "filter"
transform = ["only"]
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	f := &fixture{b: b}
	t.Cleanup(func() { b.Close(context.Background()) })
	c := served(t, f)

	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("abc")) }() // then nothing more
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stalled := make(chan int, 1)
	go func() {
		resp, err := c.Do(ctx, &fcgi.ClientRequest{Role: fcgi.RoleFilter, Params: []fcgi.Pair{
			{Name: "REQUEST_METHOD", Value: "GET"}, {Name: "REQUEST_URI", Value: "/a.txt"},
			{Name: "SCRIPT_FILENAME", Value: "/srv/a.txt"}, {Name: "FCGI_DATA_LENGTH", Value: "100"},
		}, Stdin: strings.NewReader(""), Data: pr})
		if err != nil {
			stalled <- -1
			return
		}
		defer resp.Stdout.Close()
		cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
		if err != nil {
			stalled <- -2
			return
		}
		stalled <- cgi.Status
	}()
	select {
	case status := <-stalled:
		require.Equal(t, 504, status)
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled request got no answer at its transform's timeout")
	}

	start := time.Now()
	r := wire(t, c, fcgi.RoleFilter, "GET", "/b.txt", map[string]string{"SCRIPT_FILENAME": "/srv/b.txt"}, "", "next one")
	require.Equal(t, 200, r.status)
	require.Equal(t, "NEXT ONE", r.body)
	require.Less(t, time.Since(start), 5*time.Second, "the only transform process was held by the stalled request")
}
