package httpmsg

import "net/textproto"

// Field is one header line. Names keep the case they arrived with (unless
// Options.Canonical); lookups are case-insensitive.
type Field struct {
	Name  string
	Value string
}

// Header is an ordered list of header fields. Order and duplicates (several
// Set-Cookie lines, say) are kept exactly, because transforms and clients may
// depend on both. Lookups compare in place and do not allocate.
type Header []Field

// Get returns the value of the first field named name, or "".
func (h Header) Get(name string) string {
	for i := range h {
		if equalFold(h[i].Name, name) {
			return h[i].Value
		}
	}
	return ""
}

// Values returns every value of the fields named name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for i := range h {
		if equalFold(h[i].Name, name) {
			vs = append(vs, h[i].Value)
		}
	}
	return vs
}

// Has reports whether a field named name is present.
func (h Header) Has(name string) bool {
	for i := range h {
		if equalFold(h[i].Name, name) {
			return true
		}
	}
	return false
}

// Add appends a field.
func (h *Header) Add(name, value string) {
	*h = append(*h, Field{Name: name, Value: value})
}

// Set replaces every field named name by one field, kept at the position of
// the first one (or appended with the canonical form of name).
func (h *Header) Set(name, value string) {
	out := (*h)[:0]
	done := false
	for _, f := range *h {
		if equalFold(f.Name, name) {
			if done {
				continue
			}
			f.Value = value
			done = true
		}
		out = append(out, f)
	}
	if !done {
		out = append(out, Field{Name: textproto.CanonicalMIMEHeaderKey(name), Value: value})
	}
	*h = out
}

// Del removes every field named name.
func (h *Header) Del(name string) {
	h.DelFunc(func(n string) bool { return equalFold(n, name) })
}

// DelPrefix removes every field whose name starts with prefix
// (case-insensitively).
func (h *Header) DelPrefix(prefix string) {
	h.DelFunc(func(n string) bool { return HasPrefixFold(n, prefix) })
}

// DelFunc removes, in place, every field whose name drop reports.
func (h *Header) DelFunc(drop func(name string) bool) {
	out := (*h)[:0]
	for _, f := range *h {
		if !drop(f.Name) {
			out = append(out, f)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// Clone returns a copy that shares nothing with h.
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	return append(Header(nil), h...)
}

// EqualFold reports whether two field names are equal ignoring ASCII case.
func EqualFold(a, b string) bool { return equalFold(a, b) }

// HasPrefixFold reports whether name starts with prefix, ignoring ASCII case.
func HasPrefixFold(name, prefix string) bool {
	return len(name) >= len(prefix) && equalFold(name[:len(prefix)], prefix)
}
