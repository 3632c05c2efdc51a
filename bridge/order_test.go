package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// The request an HTTP upstream gets carries the client's headers in the
// order the web server sent their params, not in the order of a map.
func TestUpstreamGetsHeadersInClientOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	heads := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var names []string
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
			if name, _, ok := strings.Cut(line, ":"); ok {
				names = append(names, name)
			}
		}
		heads <- names
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	}()
	cfg, err := conf.Parse("order.toml", []byte(fmt.Sprintf(`
[upstream.app]
kind = "http"
url = "http://%s"

[[route]]
name = "app"
source = "app"
`, ln.Addr())))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(ctx)
	})

	order := []string{"REQUEST_METHOD", "REQUEST_URI", "HTTP_HOST", "HTTP_ZETA", "HTTP_ACCEPT", "HTTP_MIDDLE", "HTTP_ALPHA"}
	params := map[string]string{}
	for _, k := range order {
		params[k] = strings.ToLower(k)
	}
	params["REQUEST_METHOD"], params["REQUEST_URI"] = "GET", "/x"
	w := newRecorder()
	b.ServeFCGI(w, &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, Params: params, ParamOrder: order,
		ContentLength: -1, DataLength: -1, Stdin: strings.NewReader(""), Data: strings.NewReader("")})
	require.Equal(t, 200, w.status, w.body.String())
	var got []string
	for _, n := range <-heads {
		if n == "Host" || n == "Zeta" || n == "Accept" || n == "Middle" || n == "Alpha" {
			got = append(got, n)
		}
	}
	require.Equal(t, []string{"Host", "Zeta", "Accept", "Middle", "Alpha"}, got)
}
