package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Includes: the main file names further files with
//
//	include = ["conf.d/*.toml"]
//
// (glob patterns, relative to the main file's directory), php-fpm's pool.d
// habit: each included file holds [transform.*], [upstream.*] and [[route]]
// tables, so a site's pools and routes can be dropped in and removed as a
// file. The listeners, [server] and [log] stay in the main file.
//
// Since the include key sits at the top of the main file, the included
// files' routes come first, in the order of the patterns and, within a
// pattern, of the file names; the main file's own routes follow. A name
// defined in two files is an error, as are unknown keys, bad values and
// references across files, each reported with the file and line it is in.

// maxIncludedFiles bounds what one pattern list can pull in.
const maxIncludedFiles = 1000

// origins records which file each included table came from.
type origins struct {
	files     []string // included files, in order
	transform map[string]string
	upstream  map[string]string
	route     []routeOrigin // by index in Config.Route
	lines     map[string]*keyLines
}

type routeOrigin struct {
	file  string
	index int // the route's index in its own file
}

// parseIncludes reads the files main's include key names, merges their
// tables into main's configuration, and validates the result.
func parseIncludes(main *decoded) (*Config, error) {
	c := main.c
	from := &origins{transform: map[string]string{}, upstream: map[string]string{}, lines: map[string]*keyLines{c.File: main.lines}}
	errs := main.errs
	bad := func(file string, lines *keyLines, key, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: lines.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	files := includedFiles(c, main.lines, bad)

	rank := map[string]int{c.File: 0}
	var routes []*Route
	var failed []string
	for n, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, &Error{File: f, Msg: fmt.Sprintf("read included file: %v", errors.Unwrap(err))})
			continue
		}
		d, err := decode(f, data)
		if err != nil {
			var es Errors
			if errors.As(err, &es) {
				errs = append(errs, es...)
			}
			continue
		}
		rank[f] = n + 1
		from.files = append(from.files, f)
		from.lines[f] = d.lines
		errs = append(errs, d.errs...)
		for _, k := range []string{"include", "listen", "server", "log"} {
			if d.md.IsDefined(k) {
				bad(f, d.lines, k, "belongs in the main file %s; an included file holds [transform.NAME], [upstream.NAME] and [[route]] tables", c.File)
			}
		}
		for _, name := range sortedKeys(d.c.Transform) {
			if prev := from.fileOf(c, "transform", name); prev != "" {
				bad(f, d.lines, "transform."+name, "transform %q is already defined in %s", name, prev)
				continue
			}
			c.Transform[name] = d.c.Transform[name]
			from.transform[name] = f
		}
		for _, name := range sortedKeys(d.c.Upstream) {
			if prev := from.fileOf(c, "upstream", name); prev != "" {
				bad(f, d.lines, "upstream."+name, "upstream %q is already defined in %s", name, prev)
				continue
			}
			c.Upstream[name] = d.c.Upstream[name]
			from.upstream[name] = f
		}
		for _, k := range d.failed {
			failed = append(failed, shiftRoute(k, len(routes)))
		}
		for i, r := range d.c.Route {
			routes = append(routes, r)
			from.route = append(from.route, routeOrigin{file: f, index: i})
		}
	}
	for _, k := range main.failed {
		failed = append(failed, shiftRoute(k, len(routes)))
	}
	for i, r := range c.Route {
		routes = append(routes, r)
		from.route = append(from.route, routeOrigin{file: c.File, index: i})
	}
	c.Route = routes
	c.from = from
	main.errs, main.failed, main.rank = errs, failed, rank
	return main.finish(from.remap)
}

// includedFiles expands the include patterns, relative to the main file's
// directory: each file once, the main file never.
func includedFiles(c *Config, lines *keyLines, bad func(string, *keyLines, string, string, ...any)) []string {
	dir := filepath.Dir(c.File)
	self, _ := filepath.Abs(c.File)
	seen := map[string]bool{self: true}
	var files []string
	for _, pattern := range c.Include {
		p := pattern
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			bad(c.File, lines, "include", "pattern %q: %v", pattern, err)
			continue
		}
		if len(matches) == 0 && !strings.ContainsAny(pattern, `*?[\`) {
			// A pattern matching nothing is an empty directory; a plain
			// name that matches nothing is a mistake.
			bad(c.File, lines, "include", "%s does not exist", p)
		}
		for _, m := range matches {
			abs, _ := filepath.Abs(m)
			if st, err := os.Stat(m); err == nil && st.IsDir() {
				continue
			}
			if seen[abs] {
				continue
			}
			seen[abs] = true
			files = append(files, m)
		}
	}
	if len(files) > maxIncludedFiles {
		bad(c.File, lines, "include", "the patterns name %d files; at most %d are read", len(files), maxIncludedFiles)
		files = files[:maxIncludedFiles]
	}
	return files
}

// fileOf returns the file that defines the transform or upstream name, ""
// when none does yet.
func (o *origins) fileOf(c *Config, table, name string) string {
	m, defined := o.transform, c.Transform[name] != nil
	if table == "upstream" {
		m, defined = o.upstream, c.Upstream[name] != nil
	}
	if !defined {
		return ""
	}
	if f, ok := m[name]; ok {
		return f
	}
	return c.File
}

// locate returns the file a key of the merged configuration came from,
// and the key as written in that file (a route's index is its index there).
func (o *origins) locate(mainFile, key string) (string, string) {
	parts := strings.SplitN(key, ".", 3)
	if len(parts) < 2 {
		return mainFile, key
	}
	switch parts[0] {
	case "transform":
		if f, ok := o.transform[parts[1]]; ok {
			return f, key
		}
	case "upstream":
		if f, ok := o.upstream[parts[1]]; ok {
			return f, key
		}
	case "route":
		i, err := strconv.Atoi(parts[1])
		if err != nil || i < 0 || i >= len(o.route) {
			break
		}
		r := o.route[i]
		local := "route." + strconv.Itoa(r.index)
		if len(parts) == 3 {
			local += "." + parts[2]
		}
		return r.file, local
	}
	return mainFile, key
}

// remap moves a validation error of the merged configuration to the file,
// key and line it came from.
func (o *origins) remap(e *Error) {
	f, key := o.locate(e.File, e.Key)
	if f == e.File && key == e.Key {
		return
	}
	e.File, e.Key = f, key
	if lines := o.lines[f]; lines != nil {
		e.Line = lines.line(key)
	}
}

// shiftRoute adds offset to the index of a "route.N…" key.
func shiftRoute(key string, offset int) string {
	rest, ok := strings.CutPrefix(key, "route.")
	if !ok || offset == 0 {
		return key
	}
	idx, tail, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(idx)
	if err != nil {
		return key
	}
	out := "route." + strconv.Itoa(i+offset)
	if tail != "" {
		out += "." + tail
	}
	return out
}

// FileOf returns the file that a setting of the configuration came from:
// keys such as "transform.NAME…", "upstream.NAME…" and "route.N…" may come
// from an included file; everything else is in the main file.
func (c *Config) FileOf(key string) string {
	if c.from == nil {
		return c.File
	}
	f, _ := c.from.locate(c.File, key)
	return f
}

// Included describes what each included file contributed, in include
// order, for -t; nil without includes.
func (c *Config) Included() []string {
	if c.from == nil {
		return nil
	}
	var out []string
	for _, f := range c.from.files {
		var parts []string
		for _, n := range sortedKeys(c.from.transform) {
			if c.from.transform[n] == f {
				parts = append(parts, "transform."+n)
			}
		}
		for _, n := range sortedKeys(c.from.upstream) {
			if c.from.upstream[n] == f {
				parts = append(parts, "upstream."+n)
			}
		}
		for i, r := range c.from.route {
			if r.file == f {
				parts = append(parts, fmt.Sprintf("route %q", c.Route[i].Name))
			}
		}
		if len(parts) == 0 {
			parts = []string{"nothing"}
		}
		out = append(out, f+": "+strings.Join(parts, ", "))
	}
	return out
}

// encodeWithOrigins is Encode for a configuration with includes: the
// same TOML, with a comment naming the file each transform, upstream and
// route came from above its table.
func (c *Config) encodeWithOrigins(w io.Writer, out *Config) error {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# included: %s\n", strings.Join(c.from.files, ", "))
	route := 0
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		key := ""
		switch t := strings.TrimSpace(line); {
		case t == "[[route]]":
			key = "route." + strconv.Itoa(route)
			route++
		case strings.HasPrefix(t, "[") && !strings.HasPrefix(t, "[[") && strings.HasSuffix(t, "]"):
			if parts := splitKey(t[1 : len(t)-1]); len(parts) == 2 && (parts[0] == "transform" || parts[0] == "upstream") {
				key = parts[0] + "." + parts[1]
			}
		}
		if key != "" {
			fmt.Fprintf(&b, "# from %s\n", c.FileOf(key))
		}
		b.WriteString(line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
