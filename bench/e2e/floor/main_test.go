package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestServeKeptConnection sends two requests on one kept connection, as
// nginx does with fastcgi_keep_conn on: params split across two records
// (in the middle of a pair), padding, a long value, a STDIN stream.
func TestServeKeptConnection(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"uri":"`+r.RequestURI+`","method":"`+r.Method+`"}`)
	}))
	defer app.Close()
	p := &pool{addr: app.Listener.Addr().String(), idle: make(chan *upstream, 4)}
	client, server := net.Pipe()
	defer client.Close()
	go serve(server, p)

	br := bufio.NewReader(client)
	for i, id := range []uint16{1, 7} {
		uri := "/floor/page?n=" + string(rune('a'+i))
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
				break
			}
			require.Equal(t, byte(typeStdout), hdr[1])
			stdout = append(stdout, content...)
		}
		assert.Equal(t, "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n"+`{"uri":"`+uri+`","method":"GET"}`, string(stdout))
	}
	assert.Len(t, p.idle, 1, "the second request reused the first's app connection")
}
