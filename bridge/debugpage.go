package bridge

import (
	"bytes"
	"encoding/json"
	"html/template"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
)

// Developer mode (a route's debug setting): the error answer for a failure
// says what went wrong, where the transform's author is looking, as a small
// HTML page, plain text or JSON by the request's Accept. Every value comes
// from the transform (its stderr, its output) and is escaped for the
// format. Without debug the answer is the status line's text only.

// debugAnswer writes the developer mode answer for err with status and
// returns the number of body bytes written.
func (b *Bridge) debugAnswer(w fcgi.ResponseWriter, status int, x *exchange, err error) int64 {
	d := filter.Diagnose(err)
	if d == nil {
		d = &filter.Diagnosis{Phase: "fetch the content", Message: err.Error()}
	}
	d.Route, d.Status = x.route, status
	var body bytes.Buffer
	ctype := "text/plain; charset=utf-8"
	switch debugFormat(x.accept) {
	case "html":
		ctype = "text/html; charset=utf-8"
		debugPage.Execute(&body, d)
	case "json":
		ctype = "application/json"
		json.NewEncoder(&body).Encode(d)
	default:
		d.WriteText(&body)
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(body.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	n, _ := w.Write(body.Bytes())
	return int64(n)
}

// debugFormat picks html, json or text by the first media range in accept
// that names one of them; text when none does (curl sends */*).
func debugFormat(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" {
			continue
		}
		switch mt {
		case "text/html", "application/xhtml+xml":
			return "html"
		case "application/json":
			return "json"
		case "text/plain":
			return "text"
		}
	}
	return "text"
}

// debugReplyMax bounds how much of a transform's reply developer mode holds
// back before sending it, so that a reply that breaks off (a body shorter
// than its Content-Length) becomes the error page instead of a truncated
// answer. Beyond it the reply streams as usual.
const debugReplyMax = 1 << 20

// holdReply reads up to debugReplyMax of out's body before any of it is
// sent. It returns the error of a reply that broke within that bound; out's
// body is closed then.
func holdReply(out *filter.Message) error {
	if out.Body == nil {
		return nil
	}
	var held bytes.Buffer
	_, err := io.CopyN(&held, out.Body, debugReplyMax)
	switch {
	case err == io.EOF:
		out.Body = &heldBody{Reader: &held, body: out.Body}
		return nil
	case err != nil:
		out.Body.Close()
		return err
	}
	out.Body = &heldBody{Reader: io.MultiReader(&held, out.Body), body: out.Body}
	return nil
}

// heldBody serves the held bytes, then the rest; Close ends the exchange.
type heldBody struct {
	io.Reader
	body io.ReadCloser
}

func (h *heldBody) Close() error { return h.body.Close() }

// Pid forwards the transform's pid for the access line.
func (h *heldBody) Pid() int { return pidOf(h.body) }

var debugPage = template.Must(template.New("debug").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
h1{font-size:1.3em;color:#a00}th{text-align:left;padding-right:1em;vertical-align:top}
pre{background:#f4f4f4;padding:.6em;overflow:auto;white-space:pre-wrap}.hint{background:#ffe;padding:.6em;border-left:4px solid #cb0}
</style></head><body>
<h1>{{.Title}}</h1>
{{if .Hint}}<p class="hint"><b>{{if .Mistake}}{{.Mistake}}: {{end}}</b>{{.Hint}}</p>{{end}}
<table>
{{if .Route}}<tr><th>route</th><td>{{.Route}}</td></tr>{{end}}
{{if .Transform}}<tr><th>transform</th><td>{{.Transform}}</td></tr>{{end}}
{{if .Pid}}<tr><th>pid</th><td>{{.Pid}}</td></tr>{{end}}
<tr><th>phase</th><td>{{.Phase}}</td></tr>
<tr><th>error</th><td>{{.Message}}</td></tr>
{{if .Exit}}<tr><th>exit</th><td>{{.Exit}}</td></tr>{{end}}
</table>
{{if .Line}}<h2>reply line {{.Line}}</h2><pre>{{.Offending}}</pre>{{end}}
{{if .Stderr}}<h2>stderr (last {{len .Stderr}} lines)</h2><pre>{{range .Stderr}}{{.}}
{{end}}</pre>{{end}}
{{if .Output}}<h2>the reply went on with</h2><pre>{{.Output}}</pre>{{end}}
<p><small>fcgi-bridge developer mode (debug = true): turn it off outside development.</small></p>
</body></html>
`))
