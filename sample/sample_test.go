package sample

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// exchange is one answer as net/http parses it: an independent reader of
// the framing, so the tests do not grade this package with its own parser.
type exchange struct {
	status int
	header http.Header
	body   string
	length int64
	te     []string
}

// converse runs transform name over pipes, writing input while reading the
// answers concurrently (as the bridge does), and returns the answers and
// Run's error.
func converse(t *testing.T, name string, input string) ([]exchange, error) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		err := Run(name, inR, outW, &stderr)
		inR.CloseWithError(io.ErrClosedPipe)
		outW.Close()
		done <- err
	}()
	go func() {
		io.WriteString(inW, input)
		inW.Close()
	}()
	var got []exchange
	br := bufio.NewReader(outR)
	for {
		if _, err := br.Peek(1); err != nil {
			break
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("transform %s wrote an answer net/http cannot parse: %v", name, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("transform %s: answer body: %v", name, err)
		}
		got = append(got, exchange{resp.StatusCode, resp.Header, string(body), resp.ContentLength, resp.TransferEncoding})
	}
	return got, <-done
}

func msg(status string, body string, headers ...string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + status + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

func chunked(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
	}
	b.WriteString("0\r\nX-Trailer: t\r\n\r\n")
	return b.String()
}

func TestIdentitySeveralMessages(t *testing.T) {
	input := msg("200 OK", "hello", "Content-Type: text/plain", "Set-Cookie: a=1", "Set-Cookie: b=2", "Content-Length: 5") +
		msg("404 Not Found", chunked("not ", "found"), "Transfer-Encoding: chunked") +
		msg("204 No Content", "", "X-A: 1") +
		msg("304 Not Modified", "", "Content-Length: 99", "ETag: \"x\"") +
		msg("200 OK", "", "Content-Length: 0") +
		msg("500 Internal Server Error", "until the end", "Connection: close")
	got, err := converse(t, "identity", input)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		status int
		body   string
		length int64
	}{{200, "hello", 5}, {404, "not found", -1}, {204, "", 0}, {304, "", 0}, {200, "", 0}, {500, "until the end", -1}}
	if len(got) != len(want) {
		t.Fatalf("got %d answers, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.status != w.status || g.body != w.body {
			t.Errorf("answer %d: %d %q, want %d %q", i, g.status, g.body, w.status, w.body)
		}
		if w.status != 304 && g.length != w.length {
			t.Errorf("answer %d: length %d, want %d", i, g.length, w.length)
		}
	}
	if c := got[0].header.Values("Set-Cookie"); len(c) != 2 || c[0] != "a=1" || c[1] != "b=2" {
		t.Errorf("duplicate Set-Cookie headers not kept in order: %q", c)
	}
	if got[5].te == nil || got[5].te[0] != "chunked" {
		t.Errorf("an EOF-delimited input should be answered chunked, got %v", got[5].te)
	}
}

func TestUpper(t *testing.T) {
	input := msg("200 OK", "Hello, wörld", "Content-Type: text/plain; charset=utf-8", "Content-Length: 13") +
		msg("200 OK", chunked("ab", "cD"), "Transfer-Encoding: chunked") +
		msg("200 OK", "png-ish", "Content-Type: image/png", "Content-Length: 7") +
		msg("200 OK", "gz", "Content-Type: text/plain", "Content-Encoding: gzip", "Content-Length: 2") +
		msg("200 OK", `{"k":"v"}`, "Content-Type: application/json", "Content-Length: 9") +
		msg("200 OK", "filter data", "Content-Type: application/octet-stream", "Content-Length: 11")
	got, err := converse(t, "upper", input)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"HELLO, WöRLD", "ABCD", "png-ish", "gz", `{"K":"V"}`, "FILTER DATA"}
	if len(got) != len(want) {
		t.Fatalf("got %d answers, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].body != w {
			t.Errorf("answer %d: %q, want %q", i, got[i].body, w)
		}
	}
	if got[0].length != 13 {
		t.Errorf("upper should keep Content-Length: got %d", got[0].length)
	}
}

// TestUpperLargeBody moves a body far larger than any pipe buffer through the
// transform, reading while writing: it must stream, not hold the body.
func TestUpperLargeBody(t *testing.T) {
	body := strings.Repeat("abcdefgh", 1<<18) // 2 MiB
	input := msg("200 OK", body, fmt.Sprintf("Content-Length: %d", len(body))) + msg("200 OK", "x", "Content-Length: 1")
	got, err := converse(t, "upper", input)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].body != strings.ToUpper(body) || got[1].body != "X" {
		t.Fatalf("large body not carried intact (%d answers)", len(got))
	}
}

func TestHTMLFromJSON(t *testing.T) {
	doc := `{"title":"<script>alert(1)</script>","n":1.50,"ok":true,"none":null,"list":[1,"two",{"&k\"":"v'"}],"empty":{}}`
	input := msg("201 Created", doc,
		"Content-Type: application/json", "ETag: \"abc\"", "Set-Cookie: s=1",
		`X-Request-URL: http://example.com/a?b=<x>&c="d"`, fmt.Sprintf("Content-Length: %d", len(doc)))
	for _, name := range []string{"html", "json-html"} {
		got, err := converse(t, name, input+input)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("%s: %d answers, want 2", name, len(got))
		}
		g := got[0]
		if g.status != 201 || g.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: status %d, Content-Type %q", name, g.status, g.header.Get("Content-Type"))
		}
		if g.header.Get("ETag") != "" || g.header.Get("Set-Cookie") != "s=1" {
			t.Errorf("%s: ETag should go (new representation) and cookies stay: %v", name, g.header)
		}
		if int64(len(g.body)) != g.length {
			t.Errorf("%s: Content-Length %d for a %d-byte page", name, g.length, len(g.body))
		}
		for _, want := range []string{
			"<dt>title</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>",
			"<dt>n</dt><dd><code>1.50</code></dd>",
			"<dt>ok</dt><dd><code>true</code></dd>",
			"<dt>none</dt><dd><code>null</code></dd>",
			"<ol><li><code>1</code></li><li>two</li><li><dl><dt>&amp;k&#34;</dt><dd>v&#39;</dd></dl></li></ol>",
			"<dt>empty</dt><dd><dl></dl></dd>",
			"<title>http://example.com/a?b=&lt;x&gt;&amp;c=&#34;d&#34;</title>",
		} {
			if !strings.Contains(g.body, want) {
				t.Errorf("%s: page lacks %q:\n%s", name, want, g.body)
			}
		}
		if strings.Contains(g.body, "<script>") || strings.Contains(g.body, "<x>") {
			t.Errorf("%s: unescaped input in the page:\n%s", name, g.body)
		}
		if got[1].body != g.body {
			t.Errorf("%s: second message rendered differently", name)
		}
	}
}

func TestHTMLFromText(t *testing.T) {
	input := msg("200 OK", "a < b & c", "Content-Type: text/plain", "Content-Length: 9") +
		msg("200 OK", chunked(`[not json`, ` <i>`), "Transfer-Encoding: chunked") +
		msg("200 OK", "[1,2]", "Content-Length: 5")
	got, err := converse(t, "html", input)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d answers, want 3", len(got))
	}
	if !strings.Contains(got[0].body, "<pre>a &lt; b &amp; c</pre>") || got[0].header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("text page: %q", got[0].body)
	}
	if !strings.Contains(got[1].body, "<pre>[not json &lt;i&gt;</pre>") {
		t.Errorf("invalid JSON should be shown as text: %q", got[1].body)
	}
	if !strings.Contains(got[2].body, "<ol><li><code>1</code></li><li><code>2</code></li></ol>") {
		t.Errorf("an undeclared JSON array should be rendered: %q", got[2].body)
	}
}

func TestJSONHTMLPassesOtherBodies(t *testing.T) {
	input := msg("200 OK", "plain <b>", "Content-Type: text/plain", "Content-Length: 9") +
		msg("200 OK", `{"broken":`, "Content-Type: application/json", "Content-Length: 10") +
		msg("200 OK", `{}`, "Content-Type: application/json", "Content-Encoding: gzip", "Content-Length: 2")
	got, err := converse(t, "json-html", input)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ body, ct string }{
		{"plain <b>", "text/plain"},
		{`{"broken":`, "application/json"},
		{`{}`, "application/json"},
	}
	for i, w := range want {
		if got[i].body != w.body || got[i].header.Get("Content-Type") != w.ct {
			t.Errorf("answer %d: %q %q, want unchanged %q %q", i, got[i].body, got[i].header.Get("Content-Type"), w.body, w.ct)
		}
	}
}

func TestHTMLDeepJSON(t *testing.T) {
	doc := strings.Repeat("[", 2000) + strings.Repeat("]", 2000)
	got, err := converse(t, "html", msg("200 OK", doc, "Content-Type: application/json", fmt.Sprintf("Content-Length: %d", len(doc))))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0].body, "<pre>[[[") {
		t.Fatalf("deeply nested JSON should fall back to text, got %d answers", len(got))
	}
}

func TestAnnotateCountsAndKeepsProcess(t *testing.T) {
	one := msg("200 OK", "x", "Content-Length: 1", "X-Transform-Count: forged")
	got, err := converse(t, "annotate", one+one+one)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g.header.Get("X-Transform-Count") != fmt.Sprint(i+1) || g.header.Get("X-Transform-Pid") != fmt.Sprint(os.Getpid()) {
			t.Errorf("answer %d headers: %v", i, g.header)
		}
		if len(g.header.Values("X-Transform-Count")) != 1 || g.body != "x" {
			t.Errorf("answer %d: %v %q", i, g.header, g.body)
		}
	}
}

func TestProtocolErrors(t *testing.T) {
	good := msg("200 OK", "ok", "Content-Length: 2")
	for _, tc := range []struct {
		name, input, err string
		answers          int
	}{
		{"no framing", good + msg("200 OK", "body"), "its end is unknown", 1},
		{"bad status line", good + "HTTP/1.1 OK\r\n\r\n", "bad status line", 1},
		{"not http", "hello\r\n\r\n", "bad status line", 0},
		{"bad header", msg("200 OK", "", "Content-Length: 0", "no colon"), "bad header line", 0},
		{"bad length", msg("200 OK", "", "Content-Length: -3"), "bad Content-Length", 0},
		{"two lengths", msg("200 OK", "abcdef", "Content-Length: 5", "Content-Length: 6"), "bad Content-Length", 0},
		{"signed length", msg("200 OK", "abcde", "Content-Length: +5"), "bad Content-Length", 0},
		{"version 1.9", "HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n", "bad status line", 0},
		{"short body", msg("200 OK", "abc", "Content-Length: 10"), "short", 0},
		{"truncated head", "HTTP/1.1 200 OK\r\nContent-Le", "unexpected EOF", 0},
		{"gzip transfer coding", msg("200 OK", "", "Transfer-Encoding: gzip"), "unsupported Transfer-Encoding", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := converse(t, "identity", tc.input)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
			if len(got) != tc.answers {
				t.Errorf("%d answers before the error, want %d", len(got), tc.answers)
			}
		})
	}
	if _, err := converse(t, "no-such", ""); err == nil || !strings.Contains(err.Error(), "unknown sample transform") {
		t.Errorf("unknown name: %v", err)
	}
}

func TestEmptyInputIsClean(t *testing.T) {
	for _, name := range Names() {
		if got, err := converse(t, name, ""); err != nil || len(got) != 0 {
			t.Errorf("%s on empty input: %d answers, %v", name, len(got), err)
		}
		if Help(name) == "" {
			t.Errorf("%s has no help line", name)
		}
	}
}
