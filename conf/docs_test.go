package conf

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// keyDocs are the pages that document configuration keys, under docs/. A
// page is read as sections: a heading that names tables in backquotes
// (### `[server]`, ### `[transform.NAME]`, ### Conditions: `route.header`
// and `route.query` items; "Top-level keys" for keys outside any table)
// documents the keys in the first column of its table rows (| `max_conns` |).
// A page that documents keys of its own goes in this list.
var keyDocs = []string{"configuration.md"}

// TestEveryKeyDocumented keeps the configuration reference in step with the
// code both ways: every key the configuration structs accept (found by
// reflection, so a new field is covered at once) is documented under its
// table, and every key documented there is accepted.
func TestEveryKeyDocumented(t *testing.T) {
	code := map[string]map[string]reflect.Type{} // table path ("" for top level) -> key -> type
	schemaTables(reflect.TypeFor[Config](), "", code)

	documented := map[string]map[string]string{} // table -> key -> page
	for _, page := range keyDocs {
		data, err := os.ReadFile(filepath.Join("..", "docs", page))
		if err != nil {
			t.Fatal(err)
		}
		for table, rows := range documentedKeys(string(data)) {
			if _, ok := code[table]; !ok {
				t.Errorf("docs/%s documents a table %q, which the configuration does not have", page, table)
				continue
			}
			if documented[table] == nil {
				documented[table] = map[string]string{}
			}
			for _, r := range rows {
				documented[table][r.key] = page
				if typ, ok := code[table][r.key]; ok && r.typ != typeWord(typ) {
					t.Errorf("docs/%s: key %q of %s is a %s, not a %s", page, r.key, tableName(table), typeWord(typ), r.typ)
				}
			}
		}
	}
	for _, table := range sortedKeys(code) {
		for _, k := range sortedKeys(code[table]) {
			if _, ok := documented[table][k]; !ok {
				t.Errorf("key %q of %s is documented nowhere: add a row | `%s` | %s | default | meaning | to its table in docs/configuration.md",
					k, tableName(table), k, typeWord(code[table][k]))
			}
		}
		for _, k := range sortedKeys(documented[table]) {
			if _, ok := code[table][k]; !ok {
				t.Errorf("docs/%s documents key %q of %s, which the configuration does not accept", documented[table][k], k, tableName(table))
			}
		}
	}
}

func tableName(path string) string {
	if path == "" {
		return "the top level"
	}
	return "[" + path + "]"
}

// typeWord is how the reference's type column names a Go type.
func typeWord(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case sizeType:
		return "size"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeWord(t.Elem()) // unset means "inherit", said in the default column
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "whole number"
	case reflect.String:
		return "string"
	case reflect.Map:
		return "table of " + typeWord(t.Elem()) + "s"
	case reflect.Slice:
		el := t.Elem()
		if el.Kind() == reflect.Pointer && el.Elem().Kind() == reflect.Struct {
			return "list of tables"
		}
		return "list of " + typeWord(el) + "s"
	}
	return t.String()
}

// schemaTables records the keys of struct type t under path, and walks
// into the tables it holds (structs, lists of structs, maps of structs).
func schemaTables(t reflect.Type, path string, out map[string]map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		k := tomlKey(f)
		if k == "" {
			continue
		}
		el := f.Type
		for el.Kind() == reflect.Pointer || el.Kind() == reflect.Slice || el.Kind() == reflect.Map {
			el = el.Elem()
		}
		if out[path] == nil {
			out[path] = map[string]reflect.Type{}
		}
		table := el.Kind() == reflect.Struct
		if !table || path != "" {
			out[path][k] = f.Type
		}
		if table {
			child := k
			if path != "" {
				child = path + "." + k
			}
			schemaTables(el, child, out)
		}
	}
	if out[path] == nil {
		out[path] = map[string]reflect.Type{}
	}
}

var (
	headingRE = regexp.MustCompile("^#+ ")
	tickRE    = regexp.MustCompile("`([^`]+)`")
)

type docRow struct{ key, typ string }

// documentedKeys reads a page's sections: table path -> the keys in its
// rows, with the type the row's second column gives them.
func documentedKeys(page string) map[string][]docRow {
	out := map[string][]docRow{}
	var tables []string
	fence := false
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if fence {
			continue
		}
		if headingRE.MatchString(line) {
			tables = nil
			if strings.Contains(strings.ToLower(line), "top-level keys") {
				tables = append(tables, "")
			}
			for _, m := range tickRE.FindAllStringSubmatch(line, -1) {
				if p, ok := tablePath(m[1]); ok {
					tables = append(tables, p)
				}
			}
			continue
		}
		if len(tables) == 0 || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		typ := strings.TrimSpace(cells[2])
		for _, m := range tickRE.FindAllStringSubmatch(cells[1], -1) {
			for _, tbl := range tables {
				out[tbl] = append(out[tbl], docRow{m[1], typ})
			}
		}
	}
	return out
}

// tablePath turns a heading's `[transform.NAME]`, `[[route]]` or
// `route.header` into a table path; other code spans are not tables.
func tablePath(s string) (string, bool) {
	bracketed := strings.HasPrefix(s, "[")
	s = strings.Trim(s, "[]")
	s = strings.TrimSuffix(s, ".NAME")
	if !bracketed && !strings.Contains(s, ".") {
		return "", false
	}
	if s == "" || strings.ContainsAny(s, " =-") {
		return "", false
	}
	return s, true
}
