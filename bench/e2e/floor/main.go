// Command floor is a measuring reference for bench/e2e, not a product: the
// least a Go program built on the standard library's netpoller can do to
// relay nginx's FastCGI requests to an HTTP/1.1 app, and optionally to pipe
// the app's answer through pooled renderers, so the benchmark can tell the
// cost inherent in those hops (system calls, goroutine wake-ups) from
// fcgi-bridge's own.
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
// With -renderers N it also starts N long-lived "NODE render.js" processes
// (working directory -render-dir), the renderer of fcgi-bridge's
// [transform.render] in bench/e2e, and answers requests whose REQUEST_URI
// starts with /floor-render/ by piping the app's answer through one of
// them: it takes a free renderer from a buffered channel (waiting until one
// is free), writes one message in one write (docs/protocol.md: the status
// line; the headers fcgi-bridge sends for that request, the app's Date and
// Content-Type, X-Request-URL, X-Bridge-Method and X-Bridge-Path; the
// Content-Length; the body), reads the reply's head and its Content-Length
// body with a bufio reader, puts the renderer back and answers with the
// reply's status, Content-Type and body.
//
// Compared with fcgi-bridge it omits, on purpose: limits of any kind
// (connections, request sizes, pool size beyond the channel), timeouts and
// deadlines, detection of a client going away while a request runs
// (ABORT_REQUEST records are skipped like any other), forwarding of
// request and response headers, request bodies, validation of what nginx
// or the app send (chunked or close-delimited bodies, 1xx answers,
// multiplexed requests, FCGI_GET_VALUES), retries on a stale kept
// connection, routing, logging and metrics; and for the renderers: health
// checks, restarts (a renderer whose exchange fails is dropped, and once
// none is left render requests wait forever), timeouts, chunked or
// close-delimited replies, X-Bridge-Query and X-Bridge-Param-*, the app's
// other headers, the reply's headers but Content-Type, and any check of
// the app's status or Content-Type.
//
//	floor -listen /path/floor.sock -app 127.0.0.1:8080 [-renderers 2 -node /usr/bin/node -render-dir testdata/node]
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
	"os/exec"
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
	n := flag.Int("renderers", 0, "long-lived renderers (NODE render.js) for /floor-render/; 0: none")
	node := flag.String("node", "node", "the node binary the renderers run")
	dir := flag.String("render-dir", "", "the renderers' working directory, holding render.js")
	flag.Parse()
	if *listen == "" || *app == "" || *n > 0 && *dir == "" {
		fmt.Fprintln(os.Stderr, "floor: -listen and -app are required, and -render-dir with -renderers")
		os.Exit(2)
	}
	var rs chan *renderer
	if *n > 0 {
		var err error
		if rs, err = startRenderers([]string{*node, "render.js"}, *dir, *n); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
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
		go serve(c, p, rs)
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

// serve answers the requests of one FastCGI connection, one after another;
// those under /floor-render/ through a renderer from rs.
func serve(c net.Conn, p *pool, rs chan *renderer) {
	defer c.Close()
	br := bufio.NewReader(c)
	var hdr [8]byte
	var content, params, reqLine, stdout, date, msg, out []byte
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
		var body int
		rendered := rs != nil && bytes.HasPrefix(uri, []byte("/floor-render/"))
		stdout, body, date, err = p.roundTrip(reqLine, stdout[:0], date[:0])
		if err == nil && rendered {
			// The headers fcgi-bridge sends for the same request: the
			// app's Date and Content-Type, the request's URL, method and
			// path. The renderer parses them and sends them back.
			path, _, _ := bytes.Cut(uri, []byte("?"))
			msg = append(append(append(msg[:0], "HTTP/1.1 200 OK\r\nDate: "...), date...), "\r\nContent-Type: application/json\r\nX-Request-URL: http://localhost"...)
			msg = append(append(append(append(append(msg, uri...), "\r\nX-Bridge-Method: "...), method...), "\r\nX-Bridge-Path: "...), path...)
			msg = strconv.AppendInt(append(msg, "\r\nContent-Length: "...), int64(len(stdout)-body), 10)
			msg = append(append(msg, "\r\n\r\n"...), stdout[body:]...)
			stdout, err = render(rs, msg, stdout[:0])
		}
		if err != nil {
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
// answer to dst as a CGI response (see readAnswer); body is where the body
// starts in the returned slice. The value of the answer's Date header is
// appended to date.
func (p *pool) roundTrip(req, dst, date []byte) (_ []byte, body int, _ []byte, err error) {
	u, err := p.get()
	if err != nil {
		return dst, 0, date, err
	}
	if _, err = u.c.Write(req); err == nil {
		dst, body, date, err = readAnswer(u.br, dst, date)
	}
	if err != nil {
		u.c.Close()
		return dst, 0, date, fmt.Errorf("app: %w", err)
	}
	p.put(u)
	return dst, body, date, nil
}

// renderer is one long-lived renderer process: its stdin and a reader on
// its stdout.
type renderer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startRenderers starts n processes of argv in dir and returns them in a
// channel that holds the free ones.
func startRenderers(argv []string, dir string, n int) (chan *renderer, error) {
	rs := make(chan *renderer, n)
	for range n {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir, cmd.Stderr = dir, os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return rs, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return rs, err
		}
		if err := cmd.Start(); err != nil {
			return rs, err
		}
		rs <- &renderer{cmd: cmd, in: in, out: bufio.NewReader(out)}
	}
	return rs, nil
}

// render writes msg, one framed message, to a free renderer of rs in one
// write and appends the reply to dst as a CGI response. A renderer whose
// exchange fails is closed and not given back: its stream may be out of
// step.
func render(rs chan *renderer, msg, dst []byte) ([]byte, error) {
	r := <-rs
	_, err := r.in.Write(msg)
	if err == nil {
		dst, _, _, err = readAnswer(r.out, dst, nil)
	}
	if err != nil {
		r.in.Close()
		return dst, fmt.Errorf("renderer %d: %w", r.cmd.Process.Pid, err)
	}
	rs <- r
	return dst, nil
}

// readAnswer reads an HTTP/1.1 answer's head and its Content-Length body
// from br and appends them to dst as a CGI response: the Status and
// Content-Type headers, then the body, which starts at the returned offset.
// The value of the Date header is appended to date.
func readAnswer(br *bufio.Reader, dst, date []byte) (_ []byte, body int, _ []byte, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil || len(line) < 12 {
		return dst, 0, date, fmt.Errorf("status line %q: %v", line, err)
	}
	dst = append(append(dst, "Status: "...), bytes.TrimRight(line[9:], "\r\n")...)
	length := -1
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return dst, 0, date, err
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
				return dst, 0, date, fmt.Errorf("Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Content-Type")):
			dst = append(append(dst, "\r\nContent-Type: "...), value...)
		case bytes.EqualFold(name, []byte("Date")):
			date = append(date, value...)
		}
	}
	if length < 0 {
		return dst, 0, date, fmt.Errorf("answer without Content-Length")
	}
	dst = append(dst, "\r\n\r\n"...)
	body = len(dst)
	dst = append(dst, make([]byte, length)...)
	_, err = io.ReadFull(br, dst[body:])
	return dst, body, date, err
}
