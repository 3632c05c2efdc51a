// Command app is the HTTP app of bench/e2e: it answers every path and
// method with the same JSON page, read once from a file at start, as
// application/json with its Content-Length (net/http adds Date).
//
// It runs as a process of its own, not inside the harness, so the
// benchmark can count its CPU apart from the load generator's and so tell
// whether an intermediary (fcgi-bridge, nginx's proxy hop, the floor
// relay) makes the app work harder per request by the way it sends its
// requests upstream.
//
// With -log-reads N it writes the first N reads it makes from its
// connections to stderr, quoted, each with the connection's remote
// address: the raw request heads an intermediary sends, and how many reads
// they take to arrive.
//
//	app -addr 127.0.0.1:8080 -page page.json [-log-reads 10]
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "TCP address to listen on")
	pageFile := flag.String("page", "", "the JSON file to answer every request with")
	logReads := flag.Int64("log-reads", 0, "write the first N reads from connections to stderr, quoted")
	flag.Parse()
	body, err := os.ReadFile(*pageFile)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *logReads > 0 {
		rl := &readLogger{Listener: ln}
		rl.left.Store(*logReads)
		ln = rl
	}
	log.Fatal(http.Serve(ln, handler(body)))
}

// handler answers every request with body as application/json.
func handler(body []byte) http.Handler {
	length := fmt.Sprint(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", length)
		w.Write(body)
	})
}

// readLogger hands out connections that log their reads while its count
// of reads to log lasts.
type readLogger struct {
	net.Listener
	left atomic.Int64
}

func (l *readLogger) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &loggedConn{Conn: c, left: &l.left}, nil
}

type loggedConn struct {
	net.Conn
	left *atomic.Int64
}

func (c *loggedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.left.Add(-1) >= 0 {
		fmt.Fprintf(os.Stderr, "read %s %d bytes: %q\n", c.RemoteAddr(), n, p[:n])
	}
	return n, err
}
