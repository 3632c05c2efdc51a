// Package testtransform is a misbehaving-on-demand transform for tests. A test
// binary re-executes itself with FCGI_BRIDGE_TEST_TRANSFORM=<mode> in its
// environment; Run, called first thing from TestMain, sees the variable,
// speaks the pipe protocol on stdin/stdout in that mode and exits. Without the
// variable Run returns and the tests run as usual.
//
// It parses the protocol on its own, without package filter, so that filter's
// tests check filter against an independent implementation (and so that
// filter's internal tests can import this package without an import cycle).
//
// Modes (see the constants): cat, upper, echo-headers, status, pid,
// stderr-flood, slow-reader, conn-close, conn-close-linger, once,
// crash-at-start, crash-after-read, crash-mid-reply, hang, hang-mid-reply,
// garbage, ignore-term, close-stdout, reply-first, stray-stderr, and one per
// common reply mistake: cgi-status, no-blank-line, short-body, long-body,
// reply-before-read.
package testtransform

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvMode is the environment variable that selects the mode.
const EnvMode = "FCGI_BRIDGE_TEST_TRANSFORM"

// Modes.
const (
	Cat            = "cat"              // identity: the message comes back as it was sent, streamed
	Upper          = "upper"            // like cat, with the body's ASCII letters upper-cased
	EchoHeaders    = "echo-headers"     // 200, body = the received status line and header lines
	Status         = "status"           // answers with the status in header X-Test-Status, body echoed when allowed
	Pid            = "pid"              // 200, body = "<pid> <exchange number>"
	StderrFlood    = "stderr-flood"     // 1 MiB on stderr per request, then like cat
	SlowReader     = "slow-reader"      // reads its input 1 KiB per millisecond, then like cat
	ConnClose      = "conn-close"       // replies "Connection: close" with an EOF-delimited body, then exits 0
	Once           = "once"             // answers one message like cat, then exits 0 without saying so
	CrashAtStart   = "crash-at-start"   // writes a line on stderr and exits 1 before reading anything
	CrashAfterRead = "crash-after-read" // reads the whole message, writes a line on stderr, exits 3
	CrashMidReply  = "crash-mid-reply"  // announces a longer body than it writes, writes half, exits 4
	Hang           = "hang"             // reads the message, never answers
	HangMidReply   = "hang-mid-reply"   // writes the headers and part of the body, then never finishes
	Garbage        = "garbage"          // replies with bytes that are not HTTP
	IgnoreTerm     = "ignore-term"      // like hang, and ignores SIGTERM (kill escalation must use SIGKILL)

	// Transforms with the mistakes authors make most often; each reads its
	// message and keeps serving unless said otherwise.
	CGIStatus       = "cgi-status"        // answers "Status: 200 OK" instead of an HTTP/1.1 status line
	NoBlankLine     = "no-blank-line"     // writes the body right after the headers, without the blank line
	ShortBody       = "short-body"        // announces 10 bytes more than the body it writes
	LongBody        = "long-body"         // announces half of the body it writes
	ReplyBeforeRead = "reply-before-read" // reads the head only, answers, then waits without reading on

	// ConnCloseLinger answers like conn-close but with a Content-Length,
	// then lingers, deaf to SIGTERM and to the end of its input, as a
	// runtime finishing its work before it exits.
	ConnCloseLinger = "conn-close-linger"
	// CloseStdout reads the message, closes its stdout without replying
	// and runs on, deaf to SIGTERM and to the end of its input.
	CloseStdout = "close-stdout"
	// ReplyFirst reads the head, writes a 256 KiB reply, then reads the
	// body: the bridge must read the reply while it still writes the
	// message.
	ReplyFirst = "reply-first"
	// StrayStderr is a one-shot program (no pipe protocol): it starts a
	// helper in a session of its own that keeps stderr open, writes the
	// helper's pid on stdout and a line on stderr, and exits 0. The
	// caller kills the helper.
	StrayStderr = "stray-stderr"
)

// StatusHeader names the request header read by the status mode ("404" or
// "404 Gone").
const StatusHeader = "X-Test-Status"

// Env returns the environment entry that selects mode, for pool.Config.Env.
func Env(mode string) string { return EnvMode + "=" + mode }

// Command returns the argv that re-executes the running test binary as a
// transform; combine it with Env(mode).
func Command() []string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe}
}

// Run serves as a transform and exits when EnvMode is set; otherwise it
// returns at once.
func Run() {
	mode, ok := os.LookupEnv(EnvMode)
	if !ok {
		return
	}
	os.Exit(serve(mode, os.Stdin, os.Stdout, os.Stderr))
}

type message struct {
	statusLine string
	header     [][2]string
	length     int64 // -1: chunked; -2: no body
}

func (m *message) get(name string) string {
	for _, f := range m.header {
		if strings.EqualFold(f[0], name) {
			return f[1]
		}
	}
	return ""
}

func serve(mode string, stdin io.Reader, stdout, stderr io.Writer) int {
	if mode == CrashAtStart {
		fmt.Fprintln(stderr, "testtransform: crash-at-start: exiting before reading anything")
		return 1
	}
	if mode == StrayStderr {
		return strayStderr(stdout, stderr)
	}
	if mode == IgnoreTerm || mode == ConnCloseLinger || mode == CloseStdout {
		signal.Ignore(syscall.SIGTERM)
	}
	var in io.Reader = stdin
	if mode == SlowReader {
		in = &slowReader{r: stdin}
	}
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(stdout, 64<<10)
	for n := 1; ; n++ {
		m, err := readHead(br)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "testtransform: %s: bad input: %v\n", mode, err)
			return 2
		}
		switch mode {
		case Cat, StderrFlood, SlowReader, Once:
			if mode == StderrFlood {
				flood(stderr)
			}
			writeHead(bw, m.statusLine, m.header)
			if err := copyBody(bw, br, m, nil); err != nil {
				fmt.Fprintf(stderr, "testtransform: %s: %v\n", mode, err)
				return 2
			}
			if mode == Once {
				bw.Flush()
				return 0
			}
		case Upper:
			writeHead(bw, m.statusLine, m.header)
			if err := copyBody(bw, br, m, bytes.ToUpper); err != nil {
				fmt.Fprintf(stderr, "testtransform: %s: %v\n", mode, err)
				return 2
			}
		case EchoHeaders, Pid:
			if _, err := readBody(br, m); err != nil {
				return 2
			}
			var body bytes.Buffer
			if mode == Pid {
				fmt.Fprintf(&body, "%d %d", os.Getpid(), n)
			} else {
				body.WriteString(m.statusLine + "\n")
				for _, f := range m.header {
					body.WriteString(f[0] + ": " + f[1] + "\n")
				}
			}
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", strconv.Itoa(body.Len())}})
			bw.Write(body.Bytes())
		case Status:
			body, err := readBody(br, m)
			if err != nil {
				return 2
			}
			st := m.get(StatusHeader)
			code, _, _ := strings.Cut(st, " ")
			if _, err := strconv.Atoi(code); err != nil || !strings.Contains(st, " ") {
				st = code + " Test"
			}
			if c, _ := strconv.Atoi(code); (c >= 100 && c < 200) || c == 204 || c == 304 {
				writeHead(bw, "HTTP/1.1 "+st, nil)
			} else {
				writeHead(bw, "HTTP/1.1 "+st, [][2]string{{"Content-Length", strconv.Itoa(len(body))}})
				bw.Write(body)
			}
		case ConnClose:
			body, err := readBody(br, m)
			if err != nil {
				return 2
			}
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Content-Type", "text/plain"}, {"Connection", "close"}})
			bw.Write(body)
			bw.Flush()
			return 0
		case ConnCloseLinger:
			body, err := readBody(br, m)
			if err != nil {
				return 2
			}
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Connection", "close"}, {"Content-Length", strconv.Itoa(len(body))}})
			bw.Write(body)
			bw.Flush()
			sleepForever()
		case CloseStdout:
			readBody(br, m)
			if c, ok := stdout.(io.Closer); ok {
				c.Close()
			}
			fmt.Fprintln(stderr, "testtransform: close-stdout: closed stdout, running on")
			sleepForever()
		case ReplyFirst:
			const size = 256 << 10
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Content-Length", strconv.Itoa(size)}})
			bw.Write(bytes.Repeat([]byte("r"), size))
			if err := bw.Flush(); err != nil {
				return 2
			}
			if _, err := readBody(br, m); err != nil {
				return 2
			}
		case CrashAfterRead:
			readBody(br, m)
			fmt.Fprintln(stderr, "testtransform: crash-after-read: read the message")
			fmt.Fprintln(stderr, "testtransform: crash-after-read: exiting with status 3")
			return 3
		case CrashMidReply:
			body, _ := readBody(br, m)
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Content-Length", strconv.Itoa(len(body) + 100)}})
			bw.Write(body[:len(body)/2])
			bw.Flush()
			fmt.Fprintln(stderr, "testtransform: crash-mid-reply: exiting with status 4")
			return 4
		case Hang, IgnoreTerm:
			readBody(br, m)
			fmt.Fprintln(stderr, "testtransform: hang: not answering")
			sleepForever()
		case HangMidReply:
			body, _ := readBody(br, m)
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Content-Length", strconv.Itoa(len(body) + 100)}})
			bw.Write(body[:len(body)/2])
			bw.Flush()
			sleepForever()
		case CGIStatus, NoBlankLine, ShortBody, LongBody:
			body, err := readBody(br, m)
			if err != nil {
				return 2
			}
			body = append([]byte("<p>"), append(body, "</p>\n"...)...)
			status, length, blank := "HTTP/1.1 200 OK", len(body), "\r\n"
			switch mode {
			case CGIStatus:
				status = "Status: 200 OK"
			case NoBlankLine:
				blank = ""
			case ShortBody:
				length += 10
			case LongBody:
				length /= 2
			}
			fmt.Fprintf(bw, "%s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n%s", status, length, blank)
			bw.Write(body)
		case ReplyBeforeRead:
			writeHead(bw, "HTTP/1.1 200 OK", [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", "6"}})
			bw.WriteString("early\n")
			bw.Flush()
			sleepForever()
		case Garbage:
			readBody(br, m)
			bw.WriteString("this is not HTTP at all\r\n\x00\x01\x02\r\n\r\n")
		default:
			fmt.Fprintf(stderr, "testtransform: unknown mode %q\n", mode)
			return 64
		}
		if err := bw.Flush(); err != nil {
			return 2
		}
	}
}

func strayStderr(stdout, stderr io.Writer) int {
	c := exec.Command("/bin/sleep", "1000")
	c.Stderr = stderr
	// Start returns once the helper runs in its own session: no kill of
	// this process's group can reach it.
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, c.Process.Pid)
	fmt.Fprintln(stderr, "testtransform: stray-stderr: leaving a helper behind")
	return 0
}

// sleepForever is the hang of the hanging modes: the behaviour under test,
// not a wait for anything.
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func flood(w io.Writer) {
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	for range 1024 {
		w.Write(line)
	}
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		if err == io.EOF && line != "" {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func readHead(br *bufio.Reader) (*message, error) {
	status, err := readLine(br)
	if err != nil {
		return nil, err
	}
	m := &message{statusLine: status, length: -2}
	for {
		line, err := readLine(br)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q has no colon", line)
		}
		m.header = append(m.header, [2]string{name, strings.TrimSpace(value)})
	}
	if cl := m.get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad Content-Length %q", cl)
		}
		m.length = n
	} else if strings.EqualFold(m.get("Transfer-Encoding"), "chunked") {
		m.length = -1
	}
	return m, nil
}

func writeHead(bw *bufio.Writer, status string, header [][2]string) {
	bw.WriteString(status + "\r\n")
	for _, f := range header {
		bw.WriteString(f[0] + ": " + f[1] + "\r\n")
	}
	bw.WriteString("\r\n")
}

// copyBody streams the body with its framing unchanged, passing the payload
// bytes through fn when it is not nil.
func copyBody(bw *bufio.Writer, br *bufio.Reader, m *message, fn func([]byte) []byte) error {
	copyN := func(n int64) error {
		buf := make([]byte, 32<<10)
		for n > 0 {
			k, err := br.Read(buf[:min(int64(len(buf)), n)])
			if k > 0 {
				p := buf[:k]
				if fn != nil {
					p = fn(p)
				}
				bw.Write(p)
				n -= int64(k)
			}
			if err != nil && n > 0 {
				return fmt.Errorf("body ends %d bytes early: %w", n, err)
			}
		}
		return nil
	}
	switch {
	case m.length >= 0:
		return copyN(m.length)
	case m.length == -1:
		for {
			line, err := readLine(br)
			if err != nil {
				return fmt.Errorf("chunk size line: %w", err)
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
			if err != nil || size < 0 {
				return fmt.Errorf("bad chunk size line %q", line)
			}
			bw.WriteString(line + "\r\n")
			if size == 0 {
				for {
					t, err := readLine(br)
					if err != nil {
						return err
					}
					bw.WriteString(t + "\r\n")
					if t == "" {
						return nil
					}
				}
			}
			if err := copyN(size); err != nil {
				return err
			}
			if crlf, err := readLine(br); err != nil || crlf != "" {
				return errors.New("chunk not followed by CRLF")
			}
			bw.WriteString("\r\n")
			if br.Buffered() == 0 {
				bw.Flush()
			}
		}
	}
	return nil
}

func readBody(br *bufio.Reader, m *message) ([]byte, error) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	mm := *m
	err := copyBodyPayload(bw, br, &mm)
	bw.Flush()
	return out.Bytes(), err
}

// copyBodyPayload writes only the payload (no chunk framing).
func copyBodyPayload(bw *bufio.Writer, br *bufio.Reader, m *message) error {
	switch {
	case m.length >= 0:
		_, err := io.CopyN(bw, br, m.length)
		return err
	case m.length == -1:
		for {
			line, err := readLine(br)
			if err != nil {
				return err
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
			if err != nil || size < 0 {
				return fmt.Errorf("bad chunk size line %q", line)
			}
			if size == 0 {
				for {
					t, err := readLine(br)
					if err != nil || t == "" {
						return err
					}
				}
			}
			if _, err := io.CopyN(bw, br, size); err != nil {
				return err
			}
			if crlf, err := readLine(br); err != nil || crlf != "" {
				return errors.New("chunk not followed by CRLF")
			}
		}
	}
	return nil
}

// slowReader is the slow-reader mode: reading slowly is the behaviour
// under test.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	if len(p) > 1024 {
		p = p[:1024]
	}
	return s.r.Read(p)
}
