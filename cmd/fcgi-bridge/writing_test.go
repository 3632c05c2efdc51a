package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// The minimal transforms in docs/writing-transforms.md work as written:
// each passes transform-check, with the sample and with an empty body
// (which arrives chunked).
func TestWritingTransformsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/writing-transforms.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```(?:python|js|sh)\n(?:#!.*?\n)?(?:#|//) file: (\\S+)\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) != 3 {
		t.Fatalf("found %d example transforms in the page, want 3", len(blocks))
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		name := string(b[1])
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, b[2], 0o644); err != nil {
				t.Fatal(err)
			}
			var argv []string
			switch filepath.Ext(name) {
			case ".py":
				argv = []string{testenv.Require(t, "python3"), path}
			case ".sh":
				argv = []string{testenv.Require(t, "sh"), path}
			case ".js":
				modules, err := filepath.Abs("../../testdata/node/node_modules")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(modules, "subprocess-middleware/package.json")); err != nil {
					testenv.Missing(t, "testdata/node/node_modules is missing (run: cd testdata/node && npm ci)")
				}
				argv = []string{"env", "NODE_PATH=" + modules, testenv.Require(t, "node"), path}
			}
			for _, extra := range [][]string{nil, {"--body", empty}} {
				var out, errOut bytes.Buffer
				if code := runCheck(append(extra, argv...), &out, &errOut); code != 0 {
					t.Fatalf("transform-check %v: exit %d\n%s\nstderr:\n%s", extra, code, out.String(), errOut.String())
				}
				if extra == nil && !strings.Contains(out.String(), `{"TITLE": "TRANSFORM-CHECK SAMPLE"`) {
					t.Fatalf("the body was not upper-cased:\n%s", out.String())
				}
			}
		})
	}
}

// The page lists every mistake the bridge names, with its hint as the
// bridge words it.
func TestWritingTransformsMistakes(t *testing.T) {
	doc, err := os.ReadFile("../../docs/writing-transforms.md")
	if err != nil {
		t.Fatal(err)
	}
	for m := filter.BadStatusLine; m.String() != ""; m++ {
		if !bytes.Contains(doc, []byte("| "+m.String()+" |")) || !bytes.Contains(doc, []byte(m.Hint())) {
			t.Errorf("docs/writing-transforms.md lacks the mistake %q or its hint %q", m, m.Hint())
		}
	}
}
