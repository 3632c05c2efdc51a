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
	Key  string // dotted key, e.g. "route.2.transform"; "" for syntax errors
	Msg  string
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
	Listen    []toml.Primitive          `toml:"listen"`
	Server    Server                    `toml:"server"`
	Log       Log                       `toml:"log"`
	Transform map[string]toml.Primitive `toml:"transform"`
	Upstream  map[string]toml.Primitive `toml:"upstream"`
	Route     []toml.Primitive          `toml:"route"`
}

// Parse parses and validates a configuration; name is used in messages.
// The error, if any, is Errors (every problem found) with file:line and key.
func Parse(name string, data []byte) (*Config, error) {
	lines := scanKeyLines(data)
	raw := rawConfig{Server: defaultServer(), Log: defaultLog()}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, Errors{tomlError(name, lines, err, "")}
	}
	c := &Config{
		Server:    raw.Server,
		Log:       raw.Log,
		Transform: map[string]*Transform{},
		Upstream:  map[string]*Upstream{},
		File:      name,
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
		e := tomlError(name, lines, err, key)
		failed = append(failed, key)
		if arr, _, ok := strings.Cut(key, "."); ok && (arr == "listen" || arr == "route") {
			// The decoder names the element's key without its index
			// ("route.keep_input"); say which element, as validation does.
			if e.Key != key && strings.HasPrefix(e.Key, arr+".") && !strings.HasPrefix(e.Key, key+".") {
				e.Key = key + strings.TrimPrefix(e.Key, arr)
			}
			key = arr
		}
		errs = append(errs, e)
		silenced = append(silenced, key)
	}
	under := func(key string, prefixes ...string) bool {
		for _, p := range prefixes {
			if key == p || strings.HasPrefix(key, p+".") {
				return true
			}
		}
		return false
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
		}
		c.Route = append(c.Route, &r)
	}
	seen := map[string]int{}
	for _, k := range md.Undecoded() {
		ks := k.String()
		if under(ks, silenced...) && knownKey(ks) {
			continue
		}
		// Tables that only hold other keys are reported through those keys.
		if md.Type(k...) == "Hash" || md.Type(k...) == "ArrayHash" {
			continue
		}
		errs = append(errs, &Error{File: name, Line: lines.plainLine(ks, seen[ks]), Key: ks,
			Msg: "unknown key (the configuration reference in README.md lists the keys of each table)"})
		seen[ks]++
	}
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
	for _, e := range c.validate(lines) {
		if !under(e.Key, failed...) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return c, nil
}

// tomlError turns a decoding error into an Error with the best position known.
func tomlError(file string, lines *keyLines, err error, key string) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e := &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		if e.Line == 0 {
			e.Line = lines.line(key)
		}
		if e.Key == "" {
			e.Key = key
		}
		return e
	}
	// Type mismatches come as plain errors that carry the line in the text.
	if m := tomlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Key: m[2], Msg: m[3]}
	}
	return &Error{File: file, Line: lines.line(key), Key: key, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
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

// knownKey reports whether the dotted key names a field of the
// configuration ("route.transform", "transform.x.env.NODE_ENV"), as opposed
// to a misspelt one.
func knownKey(key string) bool {
	parts := strings.Split(key, ".")
	var t reflect.Type
	switch {
	case parts[0] == "listen":
		t, parts = reflect.TypeFor[Listener](), parts[1:]
	case parts[0] == "route":
		t, parts = reflect.TypeFor[Route](), parts[1:]
	case parts[0] == "transform" && len(parts) > 1:
		t, parts = reflect.TypeFor[Transform](), parts[2:]
	case parts[0] == "upstream" && len(parts) > 1:
		t, parts = reflect.TypeFor[Upstream](), parts[2:]
	default:
		return false
	}
	for _, p := range parts {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Map {
			t = t.Elem() // p is a name chosen by the user
			continue
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := range t.NumField() {
			if f := t.Field(i); strings.Split(f.Tag.Get("toml"), ",")[0] == p {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
