package conf

import (
	"strconv"
	"strings"
)

// keyLines maps keys to the line they are written on, so that errors found
// after decoding (a bad value, an unknown reference) can name file:line. The
// TOML library keeps positions private, and this small scan of the source is
// enough: configurations are short and hand-written.
//
// Paths are dotted, with the element index after an array of tables:
// "transform.upper.max", "route.2.transform", "route.0.header.1.match".
// plain holds the same keys without indices, because MetaData reports
// unknown keys that way ("route.bogus").
type keyLines struct {
	exact map[string]int
	plain map[string][]int
}

func scanKeyLines(data []byte) *keyLines {
	kl := &keyLines{exact: map[string]int{}, plain: map[string][]int{}}
	arrays := map[string]int{} // resolved array-table path -> elements seen
	resolve := func(parts []string) (exact, plain string) {
		var e, p []string
		for _, part := range parts {
			e = append(e, part)
			p = append(p, part)
			if n, ok := arrays[strings.Join(e, ".")]; ok {
				e = append(e, strconv.Itoa(n-1))
			}
		}
		return strings.Join(e, "."), strings.Join(p, ".")
	}
	record := func(exact, plain string, line int) {
		if _, ok := kl.exact[exact]; !ok {
			kl.exact[exact] = line
		}
		kl.plain[plain] = append(kl.plain[plain], line)
	}

	var table, tablePlain string
	depth := 0  // open brackets/braces of a value spanning lines
	multi := "" // open multi-line string delimiter
	lines := strings.Split(string(data), "\n")
	for i, raw := range lines {
		lineNo := i + 1
		if multi != "" {
			if strings.Contains(raw, multi) {
				multi = ""
			}
			continue
		}
		if depth > 0 {
			d, m := bracketDepth(raw)
			depth += d
			multi = m
			continue
		}
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			parts := splitKey(line[2:end])
			if len(parts) == 0 {
				continue
			}
			parent, parentPlain := resolve(parts[:len(parts)-1])
			last := parts[len(parts)-1]
			key, keyPlain := join(parent, last), join(parentPlain, last)
			arrays[key]++
			table = key + "." + strconv.Itoa(arrays[key]-1)
			tablePlain = keyPlain
			record(table, tablePlain, lineNo)
			record(key, keyPlain, lineNo)
		case line[0] == '[':
			end := strings.LastIndex(line, "]")
			if end < 0 {
				continue
			}
			table, tablePlain = resolve(splitKey(line[1:end]))
			record(table, tablePlain, lineNo)
		default:
			eq := keyEnd(line)
			if eq < 0 {
				continue
			}
			parts := splitKey(line[:eq])
			if len(parts) == 0 {
				continue
			}
			k := strings.Join(parts, ".")
			record(join(table, k), join(tablePlain, k), lineNo)
			d, m := bracketDepth(line[eq+1:])
			depth, multi = d, m
		}
	}
	return kl
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// line returns the line of key or, failing that, of its closest enclosing
// table; 0 when nothing is known.
func (kl *keyLines) line(key string) int {
	if kl == nil {
		return 0
	}
	for k := key; k != ""; {
		if n, ok := kl.exact[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// plainLine returns the line of the nth occurrence of an index-free key,
// or of its closest enclosing key (a key inside an inline table).
func (kl *keyLines) plainLine(key string, nth int) int {
	if kl == nil {
		return 0
	}
	ls := kl.plain[key]
	for len(ls) == 0 {
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return 0
		}
		key = key[:i]
		ls = kl.plain[key]
	}
	if nth < len(ls) {
		return ls[nth]
	}
	if len(ls) > 0 {
		return ls[len(ls)-1]
	}
	return 0
}

// firstLine returns the first line of a table or key, or of anything
// beneath it ([transfrom.t] for "transfrom"); 0 when nothing is known.
func (kl *keyLines) firstLine(key string) int {
	if kl == nil {
		return 0
	}
	first := 0
	for k, ls := range kl.plain {
		if k != key && !strings.HasPrefix(k, key+".") {
			continue
		}
		for _, l := range ls {
			if first == 0 || l < first {
				first = l
			}
		}
	}
	return first
}

// elementAt returns the index of the element of the array of tables arr
// ("route") that line falls in, or -1.
func (kl *keyLines) elementAt(arr string, line int) int {
	if kl == nil || line == 0 {
		return -1
	}
	idx := -1
	for i := 0; ; i++ {
		l, ok := kl.exact[arr+"."+strconv.Itoa(i)]
		if !ok || l > line {
			return idx
		}
		idx = i
	}
}

// keyEnd returns the index of the '=' ending the key, outside quotes.
func keyEnd(line string) int {
	var q byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '=':
			return i
		}
	}
	return -1
}

// splitKey splits a dotted key, removing quotes and surrounding blanks.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			q = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	if p := strings.TrimSpace(cur.String()); p != "" || len(parts) > 0 {
		parts = append(parts, p)
	}
	return parts
}

// bracketDepth returns how many brackets or braces a value leaves open at the
// end of the line, and the delimiter of a multi-line string left open.
func bracketDepth(s string) (int, string) {
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '#':
			return depth, ""
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '"', '\'':
			if strings.HasPrefix(s[i:], `"""`) || strings.HasPrefix(s[i:], `'''`) {
				delim := s[i : i+3]
				rest := s[i+3:]
				end := strings.Index(rest, delim)
				if end < 0 {
					return depth, delim
				}
				i += 3 + end + 2
				continue
			}
			end := i + 1
			for end < len(s) && s[end] != c {
				if c == '"' && s[end] == '\\' {
					end++
				}
				end++
			}
			i = end
		}
	}
	return depth, ""
}
