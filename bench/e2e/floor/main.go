// Command floor is a measuring reference for bench/e2e, not a product: the
// least a Go program built on the standard library's netpoller can do to
// relay nginx's FastCGI requests to an HTTP/1.1 app, so the benchmark can
// tell the cost inherent in that hop (system calls, goroutine wake-ups)
// from fcgi-bridge's own.
//
// Per FastCGI connection it runs one goroutine with a bufio reader: it
// reads BEGIN_REQUEST, PARAMS up to the empty one and STDIN up to the
// empty one (discarded), sends "METHOD REQUEST_URI HTTP/1.1" with only a
// Host header on a kept TCP connection to the app (idle connections wait
// in a buffered channel; a new one is dialled when none is idle), reads
// the answer's head (status line, Content-Type, Content-Length) and its
// Content-Length body, and writes the STDOUT record, the empty STDOUT
// record and END_REQUEST in one write.
//
// Compared with fcgi-bridge it omits, on purpose: limits of any kind
// (connections, request sizes, pool size beyond the channel), timeouts and
// deadlines, detection of a client going away while a request runs
// (ABORT_REQUEST records are skipped like any other), forwarding of
// request and response headers, request bodies, validation of what nginx
// or the app send (chunked or close-delimited bodies, 1xx answers,
// multiplexed requests, FCGI_GET_VALUES), retries on a stale kept
// connection, routing, transforms, logging and metrics.
//
//	floor -listen /path/floor.sock -app 127.0.0.1:8080
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

const (
	typeBeginRequest = 1
	typeEndRequest   = 3
	typeParams       = 4
	typeStdin        = 5
	typeStdout       = 6
	flagKeepConn     = 1
)

func main() {
	listen := flag.String("listen", "", "unix socket path to serve FastCGI on")
	app := flag.String("app", "", "host:port of the HTTP/1.1 app")
	flag.Parse()
	if *listen == "" || *app == "" {
		fmt.Fprintln(os.Stderr, "floor: -listen and -app are required")
		os.Exit(2)
	}
	os.Remove(*listen)
	ln, err := net.Listen("unix", *listen)
	if err == nil {
		err = os.Chmod(*listen, 0o666)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	p := &pool{addr: *app, idle: make(chan *upstream, 256)}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		go serve(c, p)
	}
}

// upstream is one kept connection to the app.
type upstream struct {
	c  net.Conn
	br *bufio.Reader
}

type pool struct {
	addr string
	idle chan *upstream
}

func (p *pool) get() (*upstream, error) {
	select {
	case u := <-p.idle:
		return u, nil
	default:
	}
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &upstream{c: c, br: bufio.NewReader(c)}, nil
}

func (p *pool) put(u *upstream) {
	select {
	case p.idle <- u:
	default:
		u.c.Close()
	}
}

// serve answers the requests of one FastCGI connection, one after another.
func serve(c net.Conn, p *pool) {
	defer c.Close()
	br := bufio.NewReader(c)
	var hdr [8]byte
	var content, params, reqLine, stdout, out []byte
	for {
		// One request: BEGIN_REQUEST, PARAMS until empty, STDIN until empty.
		var id uint16
		keep, paramsDone, stdinDone := false, false, false
		params = params[:0]
		for !paramsDone || !stdinDone {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint16(hdr[4:6]))
			if cap(content) < n {
				content = make([]byte, n)
			}
			content = content[:n]
			if _, err := io.ReadFull(br, content); err != nil {
				return
			}
			if _, err := br.Discard(int(hdr[6])); err != nil {
				return
			}
			switch hdr[1] {
			case typeBeginRequest:
				id = binary.BigEndian.Uint16(hdr[2:4])
				keep = n >= 3 && content[2]&flagKeepConn != 0
			case typeParams:
				params = append(params, content...)
				paramsDone = n == 0
			case typeStdin:
				stdinDone = n == 0
			}
		}
		method, uri := []byte("GET"), []byte("/")
		forEachParam(params, func(name, value []byte) {
			switch string(name) {
			case "REQUEST_METHOD":
				method = value
			case "REQUEST_URI":
				uri = value
			}
		})
		reqLine = append(append(append(append(reqLine[:0], method...), ' '), uri...), " HTTP/1.1\r\nHost: x\r\n\r\n"...)
		var err error
		if stdout, err = p.roundTrip(reqLine, stdout[:0]); err != nil {
			stdout = append(append(stdout[:0], "Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n"...), err.Error()...)
		}
		out = appendRecord(out[:0], typeStdout, id, stdout)
		out = appendRecord(out, typeStdout, id, nil)
		out = appendRecord(out, typeEndRequest, id, []byte{0, 0, 0, 0, 0, 0, 0, 0})
		if _, err := c.Write(out); err != nil || !keep {
			return
		}
	}
}

// appendRecord appends content as records of type t, at most 65535 bytes
// each; empty content gives one empty record.
func appendRecord(b []byte, t byte, id uint16, content []byte) []byte {
	for {
		n := min(len(content), 65535)
		b = append(b, 1, t, byte(id>>8), byte(id), byte(n>>8), byte(n), 0, 0)
		b = append(b, content[:n]...)
		content = content[n:]
		if len(content) == 0 {
			return b
		}
	}
}

// forEachParam calls f for each name-value pair of a FastCGI params stream.
func forEachParam(b []byte, f func(name, value []byte)) {
	length := func() (int, bool) {
		if len(b) >= 1 && b[0] < 0x80 {
			n := int(b[0])
			b = b[1:]
			return n, true
		}
		if len(b) < 4 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint32(b) & 0x7fffffff)
		b = b[4:]
		return n, true
	}
	for len(b) > 0 {
		nl, ok1 := length()
		vl, ok2 := length()
		if !ok1 || !ok2 || nl+vl > len(b) {
			return
		}
		f(b[:nl], b[nl:nl+vl])
		b = b[nl+vl:]
	}
}

// roundTrip sends req on a kept connection to the app and appends its
// answer to dst as a CGI response: Status and Content-Type headers, then
// the Content-Length body.
func (p *pool) roundTrip(req, dst []byte) ([]byte, error) {
	u, err := p.get()
	if err != nil {
		return dst, err
	}
	dst, err = u.read(req, dst)
	if err != nil {
		u.c.Close()
		return dst, err
	}
	p.put(u)
	return dst, nil
}

func (u *upstream) read(req, dst []byte) ([]byte, error) {
	if _, err := u.c.Write(req); err != nil {
		return dst, err
	}
	line, err := u.br.ReadSlice('\n')
	if err != nil || len(line) < 12 {
		return dst, fmt.Errorf("app status line %q: %v", line, err)
	}
	dst = append(append(dst, "Status: "...), bytes.TrimRight(line[9:], "\r\n")...)
	length := -1
	for {
		if line, err = u.br.ReadSlice('\n'); err != nil {
			return dst, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return dst, fmt.Errorf("app Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Content-Type")):
			dst = append(append(dst, "\r\nContent-Type: "...), value...)
		}
	}
	if length < 0 {
		return dst, fmt.Errorf("app answer without Content-Length")
	}
	dst = append(dst, "\r\n\r\n"...)
	n := len(dst)
	dst = append(dst, make([]byte, length)...)
	_, err = io.ReadFull(u.br, dst[n:])
	return dst, err
}
