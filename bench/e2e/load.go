package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"time"
)

// rawLoad is the load generator: conc workers, each on its own keep-alive
// connection, sending the next GET as soon as the previous answer is read
// in full. It writes a fixed request and parses just enough of the answer
// (status, Content-Length or chunked, Connection: close), because it shares
// the machine with what it measures: Go's http.Client cost 20–30 µs more
// CPU per request here, a quarter of what the direct nginx scenario spends
// in all, CPU that every scenario's req/s paid for and the product never
// uses. wrk or ab do the same; this keeps the harness free of extra
// packages.
func rawLoad(addr, path string, conc int, d time.Duration, maxReqs int64) result {
	req := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fcgi-bridge-bench\r\nAccept: */*\r\n\r\n", path, addr))
	return drive(conc, d, maxReqs, func() (func() error, func()) {
		var c net.Conn
		var br *bufio.Reader
		do := func() error {
			if c == nil {
				var err error
				if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
					c = nil
					time.Sleep(10 * time.Millisecond)
					return err
				}
				br = bufio.NewReaderSize(c, 32<<10)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			status, keep, err := exchangeRaw(c, br, req)
			if err == nil && status != 200 {
				err = fmt.Errorf("status %d", status)
			}
			if err != nil || !keep {
				c.Close()
				c = nil
			}
			return err
		}
		stop := func() {
			if c != nil {
				c.Close()
			}
		}
		return do, stop
	})
}

// exchangeRaw sends req and reads one whole answer; keep reports whether the
// connection may carry the next request.
func exchangeRaw(c net.Conn, br *bufio.Reader, req []byte) (status int, keep bool, err error) {
	if _, err := c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, fmt.Errorf("status line: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, fmt.Errorf("header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return 0, false, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	var body io.Reader
	switch {
	case chunked:
		body = httputil.NewChunkedReader(br)
	case length >= 0:
		body = io.LimitReader(br, length)
	default:
		body, keep = br, false
	}
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		return 0, false, fmt.Errorf("body: %w", err)
	}
	if length >= 0 && n != length {
		return 0, false, fmt.Errorf("body: %d of %d bytes: %w", n, length, io.ErrUnexpectedEOF)
	}
	if chunked {
		// The chunked reader stops at the last chunk; the trailer section's
		// empty line is still to be read.
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return 0, false, fmt.Errorf("trailer: %w", err)
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
	}
	return status, keep, nil
}
