package fcgi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// CGIResponse is the parsed output of a FastCGI responder: the status, the
// header block in order (without the Status line) and the body that follows.
type CGIResponse struct {
	Status int
	Reason string
	Header []Pair // in the order received; duplicates kept
	Body   io.Reader
}

// Get returns the value of the first header named name (case-insensitive), or "".
func (r *CGIResponse) Get(name string) string {
	for _, p := range r.Header {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// MaxCGIHeaderBytes is the header block size ReadCGIResponse accepts. nginx
// rejects blocks over its 4-8 KiB buffer, so a real application stays far
// below; the limit only stops a broken one from making us buffer without end.
const MaxCGIHeaderBytes = 64 << 10

// ErrCGIHeaderTooLarge is returned when the header block exceeds the limit.
var ErrCGIHeaderTooLarge = errors.New("fcgi: CGI header block too large")

// CGIError describes a malformed CGI header block.
type CGIError struct {
	Line   int    // 1-based line of the header block, 0 when not about one line
	Reason string // what is wrong
}

func (e *CGIError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("fcgi: malformed CGI response: header line %d: %s", e.Line, e.Reason)
	}
	return "fcgi: malformed CGI response: " + e.Reason
}

// ReadCGIResponse parses the CGI header block at the start of r (a
// responder's STDOUT) with the default size limit. See ReadCGIResponseLimit.
func ReadCGIResponse(r io.Reader) (*CGIResponse, error) {
	return ReadCGIResponseLimit(r, MaxCGIHeaderBytes)
}

// ReadCGIResponseLimit parses the CGI header block at the start of r. Lines
// may end in CRLF or LF. The Status line is optional: without it the status is
// 200, or 302 when a Location header is present (what nginx and lighttpd do
// with a "local redirect"). The returned Body reads what follows the blank
// line, including bytes already buffered. maxHeader bounds the header block
// (<= 0 means MaxCGIHeaderBytes).
func ReadCGIResponseLimit(r io.Reader, maxHeader int) (*CGIResponse, error) {
	if maxHeader <= 0 {
		maxHeader = MaxCGIHeaderBytes
	}
	br := bufio.NewReaderSize(r, 4096)
	resp := &CGIResponse{Body: br}
	total := 0
	statusSeen := false
	for line := 1; ; line++ {
		raw, err := readCGILine(br, maxHeader-total)
		total += len(raw)
		if err != nil {
			if errors.Is(err, ErrCGIHeaderTooLarge) {
				return nil, fmt.Errorf("%w (over %d bytes)", ErrCGIHeaderTooLarge, maxHeader)
			}
			if errors.Is(err, io.EOF) {
				if total == 0 {
					return nil, &CGIError{Reason: "empty output (no header block)"}
				}
				return nil, &CGIError{Line: line, Reason: "output ended inside the header block (no blank line)"}
			}
			return nil, fmt.Errorf("fcgi: read CGI header block: %w", err)
		}
		text := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte{'\n'}), []byte{'\r'})
		if len(text) == 0 {
			break
		}
		if text[0] == ' ' || text[0] == '\t' {
			return nil, &CGIError{Line: line, Reason: "folded (continuation) header lines are not allowed"}
		}
		colon := bytes.IndexByte(text, ':')
		if colon <= 0 {
			return nil, &CGIError{Line: line, Reason: fmt.Sprintf("no header name before a colon in %q", truncateForError(text))}
		}
		name := string(text[:colon])
		if !validHeaderName(name) {
			return nil, &CGIError{Line: line, Reason: fmt.Sprintf("invalid header name %q", truncateForError([]byte(name)))}
		}
		value := strings.Trim(string(text[colon+1:]), " \t")
		if strings.EqualFold(name, "Status") {
			if statusSeen {
				return nil, &CGIError{Line: line, Reason: "more than one Status header"}
			}
			statusSeen = true
			code, reason, err := parseCGIStatus(value)
			if err != nil {
				return nil, &CGIError{Line: line, Reason: err.Error()}
			}
			resp.Status, resp.Reason = code, reason
			continue
		}
		resp.Header = append(resp.Header, Pair{Name: name, Value: value})
	}
	if !statusSeen {
		resp.Status = 200
		if resp.Get("Location") != "" {
			resp.Status = 302
		}
	}
	if resp.Reason == "" {
		resp.Reason = http.StatusText(resp.Status)
	}
	return resp, nil
}

// readCGILine returns one line including its '\n', refusing to buffer more
// than budget bytes.
func readCGILine(br *bufio.Reader, budget int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > budget {
			return nil, ErrCGIHeaderTooLarge
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			// A last line without a newline cannot end the block.
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

func parseCGIStatus(v string) (int, string, error) {
	codeStr, reason, _ := strings.Cut(v, " ")
	if len(codeStr) != 3 || strings.Trim(codeStr, "0123456789") != "" {
		return 0, "", fmt.Errorf("Status %q: want a 3-digit code", truncateForError([]byte(v)))
	}
	code, err := strconv.Atoi(codeStr)
	if err != nil || code < 100 || code > 599 {
		return 0, "", fmt.Errorf("Status %q: code out of range 100-599", truncateForError([]byte(v)))
	}
	return code, strings.TrimSpace(reason), nil
}

// validHeaderName accepts RFC 9110 token characters.
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

func truncateForError(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
