package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/pool"
)

// transform-check runs a transform the way the bridge does (a pool of one
// process, the same framing, reader and checks) against a sample message,
// shows the reply parsed and names each protocol mistake with the hint
// the developer mode page and the log give: the quickest way to try a new
// transform without a web server.

const checkUsage = `usage: fcgi-bridge transform-check [flags] COMMAND [ARG...]

Runs COMMAND as a pooled transform, sends it a sample message (a built-in
JSON document, or --body FILE), prints the reply it sends back and reports
each pipe protocol mistake with a hint. Exit status: 0 when every reply is
a valid message, 1 when a mistake or failure was found, 2 for usage errors.

Flags:
`

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("transform-check", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SetInterspersed(false) // flags after COMMAND are the command's
	bodyFile := fs.String("body", "", "send the contents of `FILE` as the body instead of the built-in JSON sample")
	ctype := fs.String("type", "", "Content-Type of the body (default application/json for the sample, application/octet-stream for --body)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long a reply may take before the transform counts as stuck")
	runs := fs.Int("runs", 2, "messages to send one after the other; more than one checks that a process serves message after message")
	showBody := fs.Int("show", 512, "print at most `N` bytes of each reply body")
	usageTo := stderr
	fs.Usage = func() {
		fmt.Fprint(usageTo, checkUsage)
		fs.SetOutput(usageTo)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	// Asked for, the usage is the answer: on stdout, so it pipes into a pager.
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		usageTo = stdout
		fs.Usage()
		return 0
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 || *runs < 1 || *timeout <= 0 {
		fs.Usage()
		return 2
	}
	body, contentType := checkSample(), "application/json"
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			fmt.Fprintf(stderr, "fcgi-bridge transform-check: %v\n", err)
			return 2
		}
		body, contentType = b, "application/octet-stream"
	}
	if *ctype != "" {
		contentType = *ctype
	}

	p, err := pool.New(pool.Config{
		Name:    "check",
		Command: argv,
		// A check runs in the author's shell: the transform sees what it
		// would see run by hand (PATH, NODE_PATH, a virtualenv).
		Env:          os.Environ(),
		Min:          0,
		Max:          1,
		QueueTimeout: *timeout,
		StartTimeout: *timeout,
		KillGrace:    time.Second,
		Logger:       slog.New(&checkLog{w: stderr}),
	})
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-bridge transform-check: %v\n", err)
		return 2
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	}()
	tr := filter.NewPooled(strings.Join(argv, " "), p, *timeout)
	req := &filter.RequestInfo{URL: "http://localhost/transform-check", Method: "GET", Path: "/transform-check"}

	problems := 0
	for i := 1; i <= *runs; i++ {
		fmt.Fprintf(stdout, "== message %d: %s, %d bytes of %s\n", i, "HTTP/1.1 200 OK", len(body), contentType)
		in := &filter.Message{Status: 200, Header: filter.Header{{Name: "Content-Type", Value: contentType}},
			Length: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}
		if !checkOnce(stdout, tr, in, req, *showBody) {
			problems++
		}
	}
	if problems > 0 {
		fmt.Fprintf(stdout, "\n%d of %d messages got no valid reply: see the hints above\n", problems, *runs)
		return 1
	}
	fmt.Fprintf(stdout, "\nevery reply was a valid message\n")
	return 0
}

// checkOnce sends one message and reports the reply or what was wrong
// with it; it returns false when something was.
func checkOnce(w io.Writer, tr filter.Transform, in *filter.Message, req *filter.RequestInfo, show int) bool {
	out, err := tr.Apply(context.Background(), in, req)
	if err != nil {
		report(w, err)
		return false
	}
	fmt.Fprintf(w, "reply:     HTTP/1.1 %d %s\n", out.Status, out.Reason)
	for _, f := range out.Header {
		fmt.Fprintf(w, "header:    %s: %s\n", f.Name, f.Value)
	}
	var head bytes.Buffer
	n, err := io.Copy(&capped{w: &head, n: show}, out.Body)
	out.Body.Close()
	if err != nil {
		fmt.Fprintf(w, "body:      %d bytes, then the reply broke off\n", n)
		report(w, err)
		return false
	}
	length := "no Content-Length (chunked or until the process exits)"
	if out.Length >= 0 {
		length = "Content-Length " + strconv.FormatInt(out.Length, 10)
	}
	fmt.Fprintf(w, "body:      %d bytes (%s)\n", n, length)
	if head.Len() > 0 {
		more := ""
		if n > int64(head.Len()) {
			more = fmt.Sprintf("\n  … %d more bytes", n-int64(head.Len()))
		}
		fmt.Fprintf(w, "  %s%s\n", strings.ReplaceAll(filter.Printable(head.Bytes()), "\n", "\n  "), more)
	}
	if m := filter.ServedMistake(out.Body); m != filter.NoMistake {
		fmt.Fprintf(w, "mistake:   %s\nhint:      %s\n", m, m.Hint())
		return false
	}
	fmt.Fprintln(w, "ok:        a valid reply")
	return true
}

func report(w io.Writer, err error) {
	d := filter.Diagnose(err)
	if d == nil {
		fmt.Fprintf(w, "error:     %v\n", err)
		return
	}
	d.WriteText(w)
}

// capped keeps the first n bytes written to it and counts the rest.
type capped struct {
	w io.Writer
	n int
}

func (c *capped) Write(p []byte) (int, error) {
	if k := min(c.n, len(p)); k > 0 {
		c.w.Write(p[:k])
		c.n -= k
	}
	return len(p), nil
}

// checkSample is the built-in message body: a JSON document of 256 KiB,
// larger than a pipe and a transform's read buffer together, so that a
// transform that answers before reading its whole message is caught.
func checkSample() []byte {
	var b bytes.Buffer
	b.WriteString(`{"title": "transform-check sample", "items": [`)
	for i := 0; b.Len() < 256<<10; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"id": %d, "text": "item %d of the sample"}`, i, i)
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

// checkLog prints what the pool reports while checking: the transform's
// stderr lines as they come, and start failures.
type checkLog struct {
	w     io.Writer
	attrs []slog.Attr
}

func (h *checkLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *checkLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "transform stderr" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "line" {
				fmt.Fprintf(h.w, "stderr| %s\n", a.Value.String())
			}
			return true
		})
		return nil
	}
	if r.Level < slog.LevelWarn || r.Message == "transform exited" {
		// A death while serving is in the report, with its stderr.
		return nil
	}
	var b strings.Builder
	b.WriteString("fcgi-bridge transform-check: " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "stderr" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	fmt.Fprintln(h.w, b.String())
	return nil
}

func (h *checkLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &checkLog{w: h.w, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *checkLog) WithGroup(string) slog.Handler { return h }
