package sample

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"strings"
)

// maxJSONBytes bounds the body held in memory to render it; a larger body is
// treated as not JSON (html streams it as text, json-html passes it on).
const maxJSONBytes = 16 << 20

// maxJSONDepth bounds nesting so hostile input cannot exhaust the stack.
const maxJSONDepth = 500

// renderHTML renders any body as a page: JSON as nested lists, anything else
// escaped in a <pre>, always with the request URL it was sent for.
func renderHTML(in *Message, out *bufio.Writer) error {
	if !renderable(in) {
		return WriteMessage(out, in)
	}
	buf, isJSON := readJSON(in)
	if isJSON {
		if page, err := jsonPage(in, buf); err == nil {
			return writePage(out, in, page)
		}
	}
	// Not JSON: escape the body as it streams; nothing is held in memory.
	in.Body = io.MultiReader(
		strings.NewReader(pageHead(in)+"<pre>"),
		&escaper{r: io.MultiReader(bytes.NewReader(buf), bodyOrEmpty(in))},
		strings.NewReader("</pre>\n"+pageTail),
	)
	in.Length = -1
	setHTMLHeaders(in)
	return WriteMessage(out, in)
}

// renderJSONHTML renders a JSON body and passes everything else unchanged.
func renderJSONHTML(in *Message, out *bufio.Writer) error {
	if !renderable(in) {
		return WriteMessage(out, in)
	}
	buf, isJSON := readJSON(in)
	if isJSON {
		if page, err := jsonPage(in, buf); err == nil {
			return writePage(out, in, page)
		}
	}
	in.Body = io.MultiReader(bytes.NewReader(buf), bodyOrEmpty(in))
	return WriteMessage(out, in)
}

// renderable excludes bodyless messages and compressed bodies, which would
// need decoding first.
func renderable(in *Message) bool {
	ce := in.Get("Content-Encoding")
	return in.Body != nil && (ce == "" || strings.EqualFold(ce, "identity"))
}

func bodyOrEmpty(in *Message) io.Reader {
	if in.Body == nil {
		return strings.NewReader("")
	}
	return in.Body
}

// readJSON reads the body when it may be JSON (a JSON Content-Type, or a body
// that starts like a JSON object or array) and reports whether the whole of
// it is valid JSON. What was read is returned either way, for the caller to
// pass on followed by the unread rest of the body.
func readJSON(in *Message) ([]byte, bool) {
	mt, _, _ := mime.ParseMediaType(in.Get("Content-Type"))
	declared := strings.HasSuffix(mt, "json")
	br := bufio.NewReader(in.Body)
	in.Body = br
	if !declared {
		first, _ := br.Peek(64)
		trimmed := bytes.TrimLeft(first, " \t\r\n")
		if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
			return nil, false
		}
	}
	buf, err := io.ReadAll(io.LimitReader(br, maxJSONBytes+1))
	if err != nil || len(buf) > maxJSONBytes {
		return buf, false
	}
	return buf, json.Valid(buf)
}

// jsonPage renders a JSON document as a whole page.
func jsonPage(in *Message, body []byte) (*bytes.Buffer, error) {
	page := &bytes.Buffer{}
	page.WriteString(pageHead(in))
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := renderValue(dec, page, 0); err != nil {
		return nil, fmt.Errorf("render JSON: %w", err)
	}
	page.WriteString("\n" + pageTail)
	return page, nil
}

func writePage(out *bufio.Writer, in *Message, page *bytes.Buffer) error {
	in.Body = page
	in.Length = int64(page.Len())
	setHTMLHeaders(in)
	return WriteMessage(out, in)
}

// setHTMLHeaders describes the new representation: the old validators and
// length no longer apply to it.
func setHTMLHeaders(in *Message) {
	in.Set("Content-Type", "text/html; charset=utf-8")
	in.Del("ETag")
	in.Del("Content-MD5")
	in.Del("Content-Encoding")
}

func pageHead(in *Message) string {
	title := "Response"
	url := in.Get("X-Request-URL")
	if url != "" {
		title = url
	}
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<title>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</title>\n<style>body{font-family:sans-serif;margin:2em}dt{font-weight:bold}dd{margin-bottom:.3em}code{color:#555}</style>\n</head><body>\n<h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n")
	if url != "" {
		fmt.Fprintf(&b, "<p>Rendered by fcgi-bridge for <code>%s</code>, status %d.</p>\n", html.EscapeString(url), in.Status)
	}
	return b.String()
}

const pageTail = "</body></html>\n"

// renderValue writes the next JSON value from dec as HTML: objects as <dl>,
// arrays as <ol>, scalars as escaped text. Key order is kept.
func renderValue(dec *json.Decoder, w *bytes.Buffer, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		open, close, item, end := "<dl>", "</dl>", "", ""
		if v == '[' {
			open, close, item, end = "<ol>", "</ol>", "<li>", "</li>"
		}
		w.WriteString(open)
		for dec.More() {
			if v == '{' {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				w.WriteString("<dt>" + html.EscapeString(key.(string)) + "</dt>")
				item, end = "<dd>", "</dd>"
			}
			w.WriteString(item)
			if err := renderValue(dec, w, depth+1); err != nil {
				return err
			}
			w.WriteString(end)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return err
		}
		w.WriteString(close)
	case string:
		w.WriteString(html.EscapeString(v))
	case json.Number:
		w.WriteString("<code>" + html.EscapeString(v.String()) + "</code>")
	case bool:
		fmt.Fprintf(w, "<code>%t</code>", v)
	case nil:
		w.WriteString("<code>null</code>")
	}
	return nil
}

// escaper HTML-escapes a stream. Every character it escapes is a single
// byte, so escaping each read on its own is correct at any boundary.
type escaper struct {
	r       io.Reader
	pending []byte
	buf     [16 << 10]byte
}

func (e *escaper) Read(p []byte) (int, error) {
	for len(e.pending) == 0 {
		n, err := e.r.Read(e.buf[:])
		if n > 0 {
			e.pending = []byte(html.EscapeString(string(e.buf[:n])))
		}
		if err != nil && len(e.pending) == 0 {
			return 0, err
		}
		if err != nil {
			break
		}
	}
	n := copy(p, e.pending)
	e.pending = e.pending[n:]
	return n, nil
}
