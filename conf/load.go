package conf

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a configuration, located as precisely as known.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted key, e.g. "transform.t.max", `route "api".transform`; "" for syntax errors
	Msg  string

	// ref is the table an unknown reference names ("transform.t"), so that
	// a reference into a misspelt table is not reported twice.
	ref string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, in file order, so
// that one run of `fcgi-bridge -t` shows them all.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As find an individual *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the embedded default configuration text.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the embedded default configuration, which runs on a fresh
// machine with only Go installed: its transforms are the fcgi-bridge binary's
// own sample transforms (command "@self").
func Default() *Config {
	c, err := Parse("(default)", defaultTOML)
	if err != nil {
		// The embedded file is tested; failing here is a build mistake.
		panic("conf: embedded default.toml is invalid: " + err.Error())
	}
	return c
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data)
}

// rawConfig decodes tables whose defaults are per element (listeners,
// transforms, upstreams, routes) as Primitives, so each can be decoded on
// top of its defaults.
type rawConfig struct {
	Include   []string                  `toml:"include"`
	Listen    []toml.Primitive          `toml:"listen"`
	Server    Server                    `toml:"server"`
	Log       Log                       `toml:"log"`
	Transform map[string]toml.Primitive `toml:"transform"`
	Upstream  map[string]toml.Primitive `toml:"upstream"`
	Route     []toml.Primitive          `toml:"route"`
}

// Parse parses and validates a configuration; name is used in messages.
// The error, if any, is Errors (every problem found) with file:line and key.
// Files named by its include key are read relative to name's directory
// (include.go).
func Parse(name string, data []byte) (*Config, error) {
	d, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	if len(d.c.Include) > 0 {
		return parseIncludes(d)
	}
	return d.finish(nil)
}

// decoded is one file as read, before the defaults that depend on the
// whole configuration and before validation.
type decoded struct {
	c      *Config
	lines  *keyLines
	md     toml.MetaData
	errs   Errors
	failed []string // keys whose decoding failed: their values are not checked
	// misspelt names the tables reported as misspelt, so that references
	// into them are not reported again as unknown names.
	misspelt map[string]bool
	rank     map[string]int // file order for errors, with includes; the main file is 0
}

// decode reads one file. Its error is a syntax error, which stops the
// reading; every other problem is kept in errs.
func decode(name string, data []byte) (*decoded, error) {
	lines := scanKeyLines(data)
	raw := rawConfig{Server: defaultServer(), Log: defaultLog()}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, Errors{tomlError(name, lines, data, err, "")}
	}
	c := &Config{
		Include:   raw.Include,
		Server:    raw.Server,
		Log:       raw.Log,
		Transform: map[string]*Transform{},
		Upstream:  map[string]*Upstream{},
		File:      name,
		lines:     lines,
	}
	var errs Errors
	// A table whose decoding failed stopped at the bad key: the keys after
	// it read as undecoded and its values as defaults. Only the decoding
	// error is reported for it, not unknown keys or missing values that
	// are neither.
	//
	// Undecoded keys of [[listen]] and [[route]] carry no index, so a failed
	// element silences the known keys of every element of its array
	// (silenced); an unknown key is reported wherever it is.
	var failed, silenced []string
	fail := func(key string, err error) {
		e := tomlError(name, lines, nil, err, key)
		failed = append(failed, key)
		if arr, _, ok := strings.Cut(key, "."); ok && (arr == "listen" || arr == "route") {
			// The decoder names the element's key without its index
			// ("route.keep_input"); say which element, as validation does.
			if e.Key != key && strings.HasPrefix(e.Key, arr+".") && !strings.HasPrefix(e.Key, key+".") {
				e.Key = key + strings.TrimPrefix(e.Key, arr)
			}
			key = arr
		}
		e.Msg = friendlyTypeError(e.Key, e.Msg, data)
		errs = append(errs, e)
		silenced = append(silenced, key)
	}
	for i, p := range raw.Listen {
		l := defaultListener()
		if err := md.PrimitiveDecode(p, &l); err != nil {
			fail(fmt.Sprintf("listen.%d", i), err)
		}
		c.Listen = append(c.Listen, &l)
	}
	for _, n := range sortedKeys(raw.Transform) {
		t := defaultTransform()
		if err := md.PrimitiveDecode(raw.Transform[n], &t); err != nil {
			fail("transform."+n, err)
		}
		t.Name = n
		c.Transform[n] = &t
	}
	for _, n := range sortedKeys(raw.Upstream) {
		u := defaultUpstream()
		if err := md.PrimitiveDecode(raw.Upstream[n], &u); err != nil {
			fail("upstream."+n, err)
		}
		u.Name = n
		c.Upstream[n] = &u
	}
	for i, p := range raw.Route {
		r := defaultRoute()
		if err := md.PrimitiveDecode(p, &r); err != nil {
			fail(fmt.Sprintf("route.%d", i), err)
			// The decoding stopped at the bad value, perhaps before the
			// name, which the messages spell the route's keys with.
			var named struct {
				Name string `toml:"name"`
			}
			if md.PrimitiveDecode(p, &named) == nil {
				r.Name = named.Name
			}
		}
		c.Route = append(c.Route, &r)
	}
	// A misspelt table is reported once, at its header, and the
	// references into it are not reported again as unknown names.
	misspelt := map[string]bool{}
	seen := map[string]int{}
	undecoded := md.Undecoded()
	holdsOthers := func(key string) bool {
		for _, o := range undecoded {
			if strings.HasPrefix(o.String(), key+".") {
				return true
			}
		}
		return false
	}
	for _, k := range undecoded {
		ks := k.String()
		if under(ks, silenced...) && knownKey(ks) {
			continue
		}
		if _, ok := topLevelKeys()[k[0]]; !ok {
			if holdsOthers(ks) {
				continue // reported through the keys it holds
			}
			written, meant, e := unknownTopLevel(name, lines, md, k)
			if !misspelt[written] {
				misspelt[written] = true
				errs = append(errs, e)
			}
			if meant != "" {
				misspelt[meant] = true
			}
			continue
		}
		// Tables that only hold other keys are reported through those keys.
		if md.Type(k...) == "Hash" || md.Type(k...) == "ArrayHash" {
			continue
		}
		line := lines.plainLine(ks, seen[ks])
		seen[ks]++
		if k[0] == "listen" || k[0] == "route" {
			// The decoder names keys of [[listen]] and [[route]] without
			// their element's index: find it from the line.
			if i := lines.elementAt(k[0], line); i >= 0 {
				ks = k[0] + "." + strconv.Itoa(i) + strings.TrimPrefix(ks, k[0])
			}
		}
		errs = append(errs, &Error{File: name, Line: line, Key: ks, Msg: unknownKeyMsg(k)})
	}
	// The reader leaves a table of names (transform, env, params, vars)
	// empty, without a word, when it is given something else.
	for _, k := range md.Keys() {
		if t := keyType(k.String()); t != nil && t.Kind() == reflect.Map {
			if typ := md.Type(k...); typ != "" && typ != "Hash" {
				errs = append(errs, &Error{File: name, Line: lines.line(k.String()), Key: k.String(),
					Msg: friendlyTypeError(k.String(), "type mismatch", data)})
			}
		}
	}
	return &decoded{c: c, lines: lines, md: md, errs: errs, failed: failed, misspelt: misspelt}, nil
}

// finish fills the defaults that depend on the whole configuration,
// validates it and returns it, or every problem found. remap, when set,
// moves a validation error to the file and key it came from (include.go).
func (d *decoded) finish(remap func(*Error)) (*Config, error) {
	c, errs, failed := d.c, d.errs, d.failed
	if len(c.Listen) == 0 {
		l := defaultListener()
		l.Addr = DefaultListenAddr
		c.Listen = []*Listener{&l}
	}
	for i, r := range c.Route {
		if r.Source == "" {
			r.Source = defaultSource(r.Role)
		}
		if r.Name == "" {
			r.Name = fmt.Sprintf("route%d", i+1)
		}
	}
	c.inheritDebug()
	for _, e := range c.validate(d.lines) {
		if !under(e.Key, failed...) && !d.misspelt[e.ref] {
			if remap != nil {
				remap(e)
			}
			errs = append(errs, e)
		}
	}
	nameRoutes(errs, c.Route, c.namedRoutes())
	if len(errs) > 0 {
		// The main file first, then the included ones in order.
		sort.SliceStable(errs, func(i, j int) bool {
			if ri, rj := d.rank[errs[i].File], d.rank[errs[j].File]; ri != rj {
				return ri < rj
			}
			return errs[i].Line < errs[j].Line
		})
		return nil, errs
	}
	return c, nil
}

// under reports whether key is one of prefixes or inside one.
func under(key string, prefixes ...string) bool {
	for _, p := range prefixes {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// tomlError turns a decoding error into an Error with the best position known.
// data, when not nil, is the source, read again to turn a type mismatch
// into a message that says what the key wants and what it got.
func tomlError(file string, lines *keyLines, data []byte, err error, key string) *Error {
	var e *Error
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e = &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		if e.Line == 0 {
			e.Line = lines.line(key)
		}
		if e.Key == "" {
			e.Key = key
		}
	} else if m := tomlLineRE.FindStringSubmatch(err.Error()); m != nil {
		// Type mismatches come as plain errors that carry the line in the text.
		n, _ := strconv.Atoi(m[1])
		e = &Error{File: file, Line: n, Key: m[2], Msg: m[3]}
	} else {
		e = &Error{File: file, Line: lines.line(key), Key: key, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	if data != nil {
		e.Msg = friendlyTypeError(e.Key, e.Msg, data)
	}
	return e
}

var tomlLineRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// knownKey reports whether the dotted key names a field of an array of
// tables or a named table ("route.transform", "transform.x.env.NODE_ENV"),
// as opposed to a misspelt one.
func knownKey(key string) bool {
	parts := strings.Split(key, ".")
	switch {
	case parts[0] == "listen" || parts[0] == "route":
	case (parts[0] == "transform" || parts[0] == "upstream") && len(parts) > 1:
	default:
		return false
	}
	return keyType(key) != nil
}

// keyType returns the Go type a dotted key decodes into ("transform.t.max"
// is an int, "route.0.header" a []*Condition), or nil for a key the
// configuration does not have. Element indices and user-chosen names (of
// transforms, upstreams, env variables) are stepped over. It reads the
// struct tags, so a key added to the configuration is known here at once.
func keyType(key string) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, p := range strings.Split(key, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Slice:
			t = t.Elem()
			if _, err := strconv.Atoi(p); err == nil {
				continue
			}
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
		case reflect.Map:
			t = t.Elem()
			continue
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByKey(t, p)
		if !ok {
			return nil
		}
		t = f.Type
	}
	return t
}

// fieldByKey finds the field of struct type t whose TOML key is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && tomlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// tomlKey is the key a struct field is written as; "" for none.
func tomlKey(f reflect.StructField) string {
	k := strings.Split(f.Tag.Get("toml"), ",")[0]
	if k == "-" || !f.IsExported() {
		return ""
	}
	return k
}

// KeysOf returns the TOML keys of a configuration table's struct type, in
// declaration order: what a [table] of that type accepts.
func KeysOf(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	var keys []string
	for i := range t.NumField() {
		if k := tomlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func topLevelKeys() map[string]reflect.Type {
	t := reflect.TypeFor[Config]()
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		if k := tomlKey(t.Field(i)); k != "" {
			out[k] = t.Field(i).Type
		}
	}
	return out
}

// unknownKeyMsg says that the key k does not exist, and which key of its
// table was probably meant.
func unknownKeyMsg(k toml.Key) string {
	parent := keyType(strings.Join(k[:len(k)-1], "."))
	if parent != nil {
		if s := suggest(k[len(k)-1], KeysOf(parent)); s != "" {
			return fmt.Sprintf("unknown key; did you mean %s?", s)
		}
	}
	return "unknown key (" + keysDoc + " lists the keys of each table)"
}

const keysDoc = "docs/configuration.md"

// unknownTopLevel reports a top-level key or table the configuration does
// not have, at its first line, with the table that was probably meant. It
// returns the table's name as written and as meant ("transfrom.t",
// "transform.t"), so that it is reported once and references into it are
// not reported again.
func unknownTopLevel(file string, lines *keyLines, md toml.MetaData, k toml.Key) (written, meant string, e *Error) {
	top := k[0]
	tops := topLevelKeys()
	names := make([]string, 0, len(tops))
	for n := range tops {
		names = append(names, n)
	}
	sort.Strings(names)
	guess := suggest(top, names)
	written, meant = top, guess
	kind := md.Type(top)
	if kind == "" && len(k) > 1 {
		kind = "Hash" // implied by a header such as [transfrom.t]
	}
	named := guess != "" && tops[guess].Kind() == reflect.Map
	if named && kind == "Hash" && len(k) > 2 {
		// [transfrom.t]: the table is transfrom.t, a transform named t.
		written, meant = top+"."+k[1], guess+"."+k[1]
	}
	e = &Error{File: file, Line: lines.firstLine(written), Key: written}
	switch {
	case kind != "Hash" && kind != "ArrayHash":
		e.Msg = "unknown key"
		if guess != "" {
			e.Msg += fmt.Sprintf("; did you mean %s?", guess)
		}
	case guess == "":
		var tables []string
		for _, n := range names {
			if k := tops[n].Kind(); k == reflect.Struct || k == reflect.Map || k == reflect.Slice && tops[n].Elem().Kind() != reflect.String {
				tables = append(tables, n)
			}
		}
		e.Msg = fmt.Sprintf("unknown table (the configuration has %s)", strings.Join(tables, ", "))
	case tops[guess].Kind() == reflect.Slice:
		e.Msg = fmt.Sprintf("unknown table; did you mean [[%s]]?", meant)
	default:
		e.Msg = fmt.Sprintf("unknown table; did you mean [%s]?", meant)
	}
	if guess == "" {
		meant = ""
	}
	return written, meant, e
}

// suggest returns the candidate closest to word when it is close enough to
// be a typing mistake, else "".
func suggest(word string, candidates []string) string {
	limit := 1
	switch n := len(word); {
	case n > 8:
		limit = 3
	case n > 4:
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of two neighbours that turn a into b (optimal string alignment).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// nameRoutes spells the key paths of routes that have a name by that name
// (route "api".transform), as the access log names them; routes without
// one keep their position (route.0.transform).
func nameRoutes(errs Errors, routes []*Route, named []bool) {
	for _, e := range errs {
		rest, ok := strings.CutPrefix(e.Key, "route.")
		if !ok {
			continue
		}
		idx, after, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if err != nil || i >= len(routes) || !named[i] {
			continue
		}
		e.Key = "route " + strconv.Quote(routes[i].Name)
		if after != "" {
			e.Key += "." + after
		}
	}
}

// friendlyTypeError rewrites the TOML reader's type mismatches ("incompatible
// types: TOML value has type string; destination has type integer") as what
// the key wants and what it got: want a whole number (like 4), got the
// string "4". Other messages are returned as they are.
func friendlyTypeError(key, msg string, data []byte) string {
	mismatch := false
	for _, p := range []string{"incompatible types", "type mismatch", "a duration is a string", "a size is an integer"} {
		mismatch = mismatch || strings.HasPrefix(msg, p)
	}
	if !mismatch {
		return msg
	}
	t := keyType(key)
	var values map[string]any
	if t == nil {
		return msg
	}
	if _, err := toml.Decode(string(data), &values); err != nil {
		return msg
	}
	v, ok := valueAt(values, key)
	if !ok {
		return msg
	}
	if list, ok := v.([]any); ok && t.Kind() == reflect.Slice {
		for i, el := range list {
			if !fits(t.Elem(), el) {
				return fmt.Sprintf("want %s, got %s as item %d", describeWant(key, t), describeGot(el), i+1)
			}
		}
	}
	return fmt.Sprintf("want %s, got %s", describeWant(key, t), describeGot(v))
}

// valueAt finds a dotted key, with element indices, in decoded TOML.
func valueAt(v any, key string) (any, bool) {
	for _, p := range strings.Split(key, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[p]; !ok {
				return nil, false
			}
		case []map[string]any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// fits reports whether a decoded TOML value can go into type t.
func fits(t reflect.Type, v any) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		_, ok := v.(string)
		return ok
	case t == sizeType:
		switch v.(type) {
		case int64, string:
			return true
		}
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		_, ok := v.(int64)
		return ok
	case reflect.String:
		_, ok := v.(string)
		return ok
	case reflect.Bool:
		_, ok := v.(bool)
		return ok
	case reflect.Struct, reflect.Map:
		_, ok := v.(map[string]any)
		return ok
	case reflect.Slice:
		_, ok := v.([]any)
		return ok
	}
	return false
}

// describeWant says what key, of type t, takes, with an example.
func describeWant(key string, t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !strings.Contains(key, ".") {
		// A top-level table: say how it is written.
		el := t
		for el.Kind() == reflect.Slice || el.Kind() == reflect.Map || el.Kind() == reflect.Pointer {
			el = el.Elem()
		}
		switch {
		case el.Kind() != reflect.Struct:
		case t.Kind() == reflect.Slice:
			return fmt.Sprintf("[[%s]] tables", key)
		case t.Kind() == reflect.Map:
			return fmt.Sprintf("[%s.NAME] tables", key)
		default:
			return fmt.Sprintf("a [%s] table", key)
		}
	}
	switch {
	case t == durationType:
		return `a duration in quotes (like "30s")`
	case t == sizeType:
		return `a size (like "64KiB", or a number of bytes)`
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number (like 4)"
	case reflect.String:
		return `a string in quotes (like "text")`
	case reflect.Bool:
		return "true or false"
	case reflect.Map:
		return `a table of strings (like { NAME = "value" })`
	case reflect.Struct:
		return "a table"
	case reflect.Slice:
		el := t.Elem()
		for el.Kind() == reflect.Pointer {
			el = el.Elem()
		}
		switch el.Kind() {
		case reflect.String:
			return `a list of strings (like ["a", "b"])`
		case reflect.Int:
			return "a list of whole numbers (like [200, 404])"
		case reflect.Struct:
			return `a list of tables (like [{ name = "Accept" }])`
		}
		return "a list"
	}
	return t.String()
}

// describeGot names a decoded TOML value as a user wrote it.
func describeGot(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the whole number %d", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return strconv.FormatBool(x)
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("the date or time %v", v)
}
