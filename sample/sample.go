// Package sample holds the transforms built into the fcgi-bridge binary and
// run as `fcgi-bridge transform NAME`. They let the embedded default config
// work on a machine with nothing but the binary, and they are the Go example
// of how to write a transform.
//
// A transform is a separate, long-lived program. The bridge writes one
// HTTP/1.1-framed message per exchange to its stdin and reads one message
// back from its stdout, many times over the life of the process:
//
//	HTTP/1.1 200 OK\r\n
//	Content-Type: application/json\r\n
//	X-Request-URL: http://example.com/page?x=1\r\n
//	Content-Length: 13\r\n
//	\r\n
//	{"hello":1}\r\n
//
// The body is framed by Content-Length, by Transfer-Encoding: chunked, or
// (answering only) by Connection: close and the end of the stream, after
// which the process exits. 1xx, 204 and 304 carry no body. A transform may
// change the status and headers; it must read each body to its end before
// the next message, and flush its answer, because the bridge waits for it.
//
// This package reads and writes messages with the bridge's own HTTP message
// layer (internal/httpmsg), so that a message is judged by one set of rules
// on both ends of the pipe: what the bridge writes this package reads, and
// what this package writes the bridge accepts. To reuse this code outside
// the fcgi-bridge module, where internal/httpmsg cannot be imported, read
// messages with net/http's http.ReadResponse (httpmsg is fuzzed against it
// and accepts and refuses the same framing) and write them as WriteMessage
// does: status line, fields, Content-Length or chunked, and a flush.
package sample

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
)

// Func transforms one message. It writes exactly one answer to out (with
// WriteMessage) and need not drain in.Body: Run discards what is left.
type Func func(in *Message, out *bufio.Writer) error

type entry struct {
	fn   Func
	help string
}

var registry = map[string]entry{
	"identity":  {identity, "returns every message unchanged"},
	"upper":     {upper, "upper-cases the ASCII letters of the body (not of images, audio, video or compressed bodies); status and headers unchanged"},
	"html":      {renderHTML, "renders the body as an HTML page showing the request URL: JSON as nested lists, anything else as text"},
	"json-html": {renderJSONHTML, "renders a JSON body as an HTML page; other bodies pass unchanged"},
	"annotate":  {annotate, "adds X-Transform-Pid and X-Transform-Count headers (shows which process served, and how often)"},
}

// Names lists the sample transforms, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Help returns the one-line description of a sample transform.
func Help(name string) string { return registry[name].help }

// Run serves messages from in to out with the named transform until in ends.
// Diagnostics go to errOut (the bridge copies a transform's stderr into its
// log). It returns nil when in ends cleanly between messages.
func Run(name string, in io.Reader, out io.Writer, errOut io.Writer) error {
	e, ok := registry[name]
	if !ok {
		return fmt.Errorf("unknown sample transform %q (have %v)", name, Names())
	}
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriterSize(out, 64<<10)
	for count := 1; ; count++ {
		m, err := ReadMessage(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("transform %s: message %d: %w", name, count, err)
		}
		m.Seq = count
		if err := e.fn(m, w); err != nil {
			return fmt.Errorf("transform %s: message %d: %w", name, count, err)
		}
		if m.Body != nil {
			if _, err := io.Copy(io.Discard, m.Body); err != nil {
				return fmt.Errorf("transform %s: message %d: %w", name, count, err)
			}
		}
		if m.Last {
			return nil
		}
	}
}

func identity(in *Message, out *bufio.Writer) error {
	return WriteMessage(out, in)
}

func annotate(in *Message, out *bufio.Writer) error {
	in.Header = slices.Clone(in.Header)
	in.Set("X-Transform-Pid", fmt.Sprint(os.Getpid()))
	in.Set("X-Transform-Count", fmt.Sprint(in.Seq))
	return WriteMessage(out, in)
}
