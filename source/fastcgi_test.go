package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// fakePHP is a FastCGI responder standing in for php-fpm.
func fakePHP(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "php.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := &fcgi.Server{Handler: fcgi.HandlerFunc(func(w fcgi.ResponseWriter, r *fcgi.Request) {
		body, _ := io.ReadAll(r.Stdin)
		switch r.Params["SCRIPT_NAME"] {
		case "/redirect.php":
			// A "local redirect": Location without Status.
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
			return
		case "/length.php":
			// What PHP would read: CONTENT_LENGTH bytes of the body.
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"length":%q,"got":%d}`, r.Params["CONTENT_LENGTH"], len(body))
			return
		case "/slow.php":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Add("Set-Cookie", "s=1")
		w.Header().Add("Set-Cookie", "t=2")
		w.Header().Set("Content-Type", "application/json")
		out := fmt.Sprintf(`{"script":%q,"method":%q,"body":%q,"proxy":%q,"data":%q}`,
			r.Params["SCRIPT_FILENAME"], r.Params["REQUEST_METHOD"], body, r.Params["HTTP_PROXY"], r.Params["FCGI_DATA_LENGTH"])
		w.Header().Set("Content-Length", fmt.Sprint(len(out)))
		w.WriteHeader(201)
		io.WriteString(w, out)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix:" + sock
}

func fcgiUpstream(addr string) *conf.Upstream {
	return &conf.Upstream{Name: "php", Kind: conf.UpstreamFastCGI, Address: addr, KeepAlive: true, MaxIdleConns: 4,
		Params:         map[string]string{"SCRIPT_FILENAME": "/srv/index.php"},
		ConnectTimeout: conf.Duration(time.Second), ResponseTimeout: conf.Duration(300 * time.Millisecond),
		IdleConnTimeout: conf.Duration(time.Minute)}
}

func TestFastCGI(t *testing.T) {
	addr := fakePHP(t)
	src, err := NewFastCGI(fcgiUpstream(addr))
	require.NoError(t, err)
	defer src.Close()

	for i := 0; i < 3; i++ { // the connection is kept and reused
		params := map[string]string{"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/index.php", "SCRIPT_FILENAME": "/wrong",
			"CONTENT_LENGTH": "4", "HTTP_PROXY": "http://evil/", "FCGI_DATA_LENGTH": "9"}
		m, err := src.Fetch(context.Background(), &Request{Params: params, ContentLength: 4, Stdin: strings.NewReader("ping")})
		require.NoError(t, err)
		assert.Equal(t, 201, m.Status)
		assert.Equal(t, []string{"s=1", "t=2"}, m.Header.Values("Set-Cookie"))
		assert.Equal(t, "application/json", m.Header.Get("Content-Type"))
		assert.False(t, m.Header.Has("Content-Length"))
		body := readAll(t, m)
		assert.Equal(t, int64(len(body)), m.Length)
		assert.Equal(t, `{"script":"/srv/index.php","method":"POST","body":"ping","proxy":"","data":""}`, body)
	}

	m, err := src.Fetch(context.Background(), &Request{Params: map[string]string{"SCRIPT_NAME": "/redirect.php"}})
	require.NoError(t, err)
	assert.Equal(t, 302, m.Status)
	assert.Equal(t, "/elsewhere", m.Header.Get("Location"))
	readAll(t, m)

	_, err = src.Fetch(context.Background(), &Request{Params: map[string]string{"SCRIPT_NAME": "/slow.php"}})
	var se *Error
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, 504, se.Status)

	down, err := NewFastCGI(fcgiUpstream("unix:" + filepath.Join(t.TempDir(), "none.sock")))
	require.NoError(t, err)
	defer down.Close()
	_, err = down.Fetch(context.Background(), &Request{Params: map[string]string{"SCRIPT_NAME": "/x.php"}})
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, 502, se.Status)
}
