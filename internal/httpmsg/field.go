// Package httpmsg is the one place that knows the syntax of an HTTP/1.1
// message head and body as the bridge reads and writes it: a transform's
// reply on a pipe, an upstream's response on a connection, a CGI program's
// header block.
//
// Data enters through ReadHead, which reads a head from a caller-owned
// *bufio.Reader into a caller-owned Head (fields are substrings of one string
// per head), and through Body, which reads the body the head framed. Data
// leaves through AppendHead and AppendField, which write a head into a
// caller's buffer. Every per-caller difference (status line or CGI syntax,
// limits, obs-fold, whether a body needs framing) is a field of Options, set
// once by the caller, so that there is one parser and not one per caller.
//
// Framing follows net/http and RFC 9112 section 6: on HTTP/1.1 exactly one
// Transfer-Encoding field whose value is "chunked" (on HTTP/1.0 the field is
// ignored); repeated Content-Length values must be identical; no sign; with
// both, chunked wins and Head.Conflict records it. Faults are *Error values
// that say where (line or body offset), what was expected and what came.
package httpmsg

// Tables of the bytes a field name (an RFC 9110 token) and a field value may
// hold. A value, like a reason phrase, may hold anything but control
// characters other than tab: CR or LF would end the line early and let a
// value inject header lines or a body.
var tokenByte, valueByte [256]bool

func init() {
	for c := 0; c < 256; c++ {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			tokenByte[c] = true
		}
		valueByte[c] = c >= ' ' && c != 0x7f || c == '\t'
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		tokenByte[c] = true
	}
}

// ValidName reports whether s is an RFC 9110 token, as a field name must be.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// ValidValue reports whether s has no control characters but tab, as a
// field value or a reason phrase must.
func ValidValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if !valueByte[s[i]] {
			return false
		}
	}
	return true
}

// CleanValue returns s with every byte ValidValue refuses (CR, LF, NUL
// and the other controls but tab) turned into a space: for a value that
// must go out on one line whatever a caller put in it. A valid s comes back
// as it is, without allocating.
func CleanValue(s string) string {
	if ValidValue(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !valueByte[c] {
			b[i] = ' '
		}
	}
	return string(b)
}

func validNameBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

func validValueBytes(b []byte) bool {
	for _, c := range b {
		if !valueByte[c] {
			return false
		}
	}
	return true
}

// equalFold reports whether a and b are equal ignoring ASCII case. Field
// names are ASCII tokens, so Unicode folding (strings.EqualFold) is not
// needed; comparing in place is what lets lookups run without allocating.
func equalFold[T string | []byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// canonicalize rewrites a valid token in place as net/textproto would:
// upper case after the start and after each '-', lower case elsewhere.
func canonicalize(b []byte) {
	upper := true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - 0x20
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c + 0x20
		}
		upper = c == '-'
	}
}
