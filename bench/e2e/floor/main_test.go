package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// record encodes one FastCGI record with pad bytes of padding.
func record(t byte, id uint16, content []byte, pad int) []byte {
	b := []byte{1, t, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

func param(name, value string) []byte {
	b := []byte{byte(len(name))}
	if len(value) < 128 {
		b = append(b, byte(len(value)))
	} else {
		b = binary.BigEndian.AppendUint32(b, uint32(len(value))|1<<31)
	}
	return append(append(b, name...), value...)
}

// jsonApp answers every request with a small JSON page naming its URI and
// method.
func jsonApp(t *testing.T) *pool {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"uri":"`+r.RequestURI+`","method":"`+r.Method+`"}`)
	}))
	t.Cleanup(app.Close)
	return &pool{addr: app.Listener.Addr().String(), idle: make(chan *upstream, 4)}
}

// request sends one request for uri on a kept connection, as nginx does
// with fastcgi_keep_conn on: params split across two records (in the middle
// of a pair), padding, a long value, a STDIN stream. It returns the STDOUT
// stream of the answer.
func request(t *testing.T, client net.Conn, br *bufio.Reader, id uint16, uri string) string {
	t.Helper()
	params := append(append(param("LONG", string(make([]byte, 300))), param("REQUEST_URI", uri)...), param("REQUEST_METHOD", "GET")...)
	var in []byte
	in = append(in, record(typeBeginRequest, id, []byte{0, 1, flagKeepConn, 0, 0, 0, 0, 0}, 0)...)
	in = append(in, record(typeParams, id, params[:305], 3)...)
	in = append(in, record(typeParams, id, params[305:], 5)...)
	in = append(in, record(typeParams, id, nil, 0)...)
	in = append(in, record(typeStdin, id, []byte("ignored"), 1)...)
	in = append(in, record(typeStdin, id, nil, 0)...)
	go client.Write(in)

	var stdout []byte
	for {
		var hdr [8]byte
		_, err := io.ReadFull(br, hdr[:])
		require.NoError(t, err)
		assert.Equal(t, id, binary.BigEndian.Uint16(hdr[2:4]))
		content := make([]byte, int(binary.BigEndian.Uint16(hdr[4:6]))+int(hdr[6]))
		_, err = io.ReadFull(br, content)
		require.NoError(t, err)
		if hdr[1] == typeEndRequest {
			assert.Equal(t, make([]byte, 8), content)
			return string(stdout)
		}
		require.Equal(t, byte(typeStdout), hdr[1])
		stdout = append(stdout, content...)
	}
}

func TestServeKeptConnection(t *testing.T) {
	p := jsonApp(t)
	client, server := net.Pipe()
	defer client.Close()
	go serve(server, p, nil)
	br := bufio.NewReader(client)
	for i, id := range []uint16{1, 7} {
		uri := "/floor/page?n=" + string(rune('a'+i))
		assert.Equal(t, "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n"+`{"uri":"`+uri+`","method":"GET"}`, request(t, client, br, id, uri))
	}
	assert.Len(t, p.idle, 1, "the second request reused the first's app connection")
}

// TestServeRender pipes the app's answers through two pooled renderers:
// tee, which sends the message back as its reply and keeps a copy (so the
// test sees exactly what a renderer reads), and render.js when node and testdata/node's
// modules are installed (required when CI=true).
func TestServeRender(t *testing.T) {
	nodeDir, _ := filepath.Abs(filepath.Join("..", "..", "..", "testdata", "node"))
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(nodeDir, "node_modules", "subprocess-middleware"))
	}
	msgs := filepath.Join(t.TempDir(), "messages")
	for _, tc := range []struct {
		name string
		argv []string
		want func(uri, json string) string
	}{
		{"tee", []string{"tee", "-a", msgs}, func(uri, json string) string {
			// The message comes back as the reply: its Content-Length
			// framed it, its status line and Content-Type are the reply's.
			return "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n" + json
		}},
		{"render.js", []string{node, "render.js"}, func(uri, json string) string {
			return "Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
				`<!DOCTYPE html>` + "\n" + `<html><head><title>http://localhost` + uri + `</title></head><body data-url="http://localhost` + uri +
				`"><dl><dt>uri</dt><dd>` + uri + `</dd><dt>method</dt><dd>GET</dd></dl></body></html>` + "\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "render.js" && err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("node or testdata/node/node_modules missing (run npm ci in testdata/node): %v", err)
				}
				t.Skipf("node or testdata/node/node_modules missing (run npm ci in testdata/node): %v", err)
			}
			rs, err := startRenderers(tc.argv, nodeDir, 2)
			require.NoError(t, err)
			t.Cleanup(func() {
				for range 2 {
					r := <-rs
					r.in.Close()
					r.cmd.Wait()
				}
			})
			p := jsonApp(t)
			client, server := net.Pipe()
			defer client.Close()
			go serve(server, p, rs)
			br := bufio.NewReader(client)
			for i, id := range []uint16{1, 2, 3} {
				uri := "/floor-render/page?n=" + string(rune('a'+i))
				got := request(t, client, br, id, uri)
				assert.Equal(t, tc.want(uri, `{"uri":"`+uri+`","method":"GET"}`), got)
			}
			if tc.name == "tee" {
				// Each renderer is a tee appending what it reads to msgs, and
				// writes it there after answering: find the first request's
				// message wherever it landed, once it has.
				var head string
				require.True(t, testenv.Poll(5*time.Second, func() bool {
					data, err := os.ReadFile(msgs)
					if err != nil {
						return false
					}
					s := string(data)
					at := strings.Index(s, "?n=a\r\n")
					if at < 0 {
						return false
					}
					start := strings.LastIndex(s[:at], "HTTP/1.1 ")
					end := strings.Index(s[at:], "\r\n\r\n")
					if start < 0 || end < 0 {
						return false
					}
					head = s[start : at+end]
					return true
				}), "the renderers never got the first request's message")
				assert.Regexp(t, `^HTTP/1.1 200 OK\r\nDate: \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT\r\nContent-Type: application/json\r\n`+
					`X-Request-URL: http://localhost/floor-render/page\?n=a\r\nX-Bridge-Method: GET\r\nX-Bridge-Path: /floor-render/page\r\nContent-Length: 47$`, head)
			}
			// Outside /floor-render/ the answer is the app's, untouched.
			assert.True(t, strings.HasSuffix(request(t, client, br, 4, "/floor/x"), `{"uri":"/floor/x","method":"GET"}`))
		})
	}
}
