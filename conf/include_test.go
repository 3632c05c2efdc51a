package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// includeTree writes files (path relative to a temp dir -> content) and
// returns the directory.
func includeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	return dir
}

const includeMain = `include = ["conf.d/*.toml", "extra.toml"]

[transform.base]
command = ["cat"]

[[route]]
name = "default"
transform = ["base"]
`

func TestIncludeMerges(t *testing.T) {
	dir := includeTree(t, map[string]string{
		"main.toml": includeMain,
		"conf.d/20-b.toml": `[[route]]
name = "b"
path = "/b"
transform = ["render"]
`,
		"conf.d/10-a.toml": `[transform.render]
command = ["cat"]
max = 2

[upstream.app]
kind = "http"
url = "http://127.0.0.1:8080/"

[[route]]
name = "a"
path = "/a"
source = "app"
transform = ["render", "base"]
`,
		"conf.d/notes.txt": "not toml, not matched",
		"extra.toml":       "",
	})
	main := filepath.Join(dir, "main.toml")
	c, err := Load(main)
	require.NoError(t, err)
	var names []string
	for _, r := range c.Route {
		names = append(names, r.Name)
	}
	require.Equal(t, []string{"a", "b", "default"}, names, "included routes first, by file name, then the main file's")
	require.Equal(t, 2, c.Transform["render"].Max)
	a, b := filepath.Join(dir, "conf.d/10-a.toml"), filepath.Join(dir, "conf.d/20-b.toml")
	require.Equal(t, a, c.FileOf("transform.render"))
	require.Equal(t, a, c.FileOf("upstream.app.url"))
	require.Equal(t, main, c.FileOf("transform.base"))
	require.Equal(t, b, c.FileOf("route.1.transform"))
	require.Equal(t, main, c.FileOf("route.2"))
	require.Equal(t, main, c.FileOf("server.max_conns"))
	require.Equal(t, []string{
		a + `: transform.render, upstream.app, route "a"`,
		b + `: route "b"`,
		filepath.Join(dir, "extra.toml") + ": nothing",
	}, c.Included())

	// -T prints the merged configuration, each table under the file it
	// came from, and reads back to the same settings without includes.
	var buf bytes.Buffer
	require.NoError(t, c.Encode(&buf))
	out := buf.String()
	require.Contains(t, out, "# from "+a+"\n[transform.render]")
	require.Contains(t, out, "# from "+main+"\n[transform.base]")
	require.Equal(t, 2, strings.Count(out, "# from "+main+"\n"))
	require.NotContains(t, out, "include =")
	back, err := Parse("dump.toml", buf.Bytes())
	require.NoError(t, err, out)
	require.Len(t, back.Route, 3)
	require.Equal(t, "a", back.Route[0].Name)
	require.Equal(t, []string{"render", "base"}, back.Route[0].Transform)
	require.Nil(t, back.Included())
}

func TestIncludeErrorsNameTheirFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"reference across files", map[string]string{
			"conf.d/a.toml": "\n[[route]]\nname = \"a\"\npath = \"/a\"\ntransform = [\"nope\"]\n",
		}, []string{"conf.d/a.toml:5: route \"a\".transform: unknown transform \"nope\""}},
		{"unknown key", map[string]string{
			"conf.d/a.toml": "[transform.x]\ncommand = [\"cat\"]\nmaxx = 2\n",
		}, []string{"conf.d/a.toml:3: transform.x.maxx: unknown key"}},
		{"defined twice", map[string]string{
			"conf.d/a.toml": "[transform.x]\ncommand = [\"cat\"]\n",
			"conf.d/b.toml": "\n[transform.x]\ncommand = [\"cat\"]\n",
		}, []string{"conf.d/b.toml:2: transform.x: transform \"x\" is already defined in", "conf.d/a.toml"}},
		{"defined in the main file too", map[string]string{
			"conf.d/a.toml": "[transform.base]\ncommand = [\"cat\"]\n",
		}, []string{"conf.d/a.toml:1: transform.base: transform \"base\" is already defined in", "main.toml"}},
		{"main-file table in an include", map[string]string{
			"conf.d/a.toml": "[server]\nmax_conns = 5\n",
		}, []string{"conf.d/a.toml:1: server: belongs in the main file"}},
		{"nested include", map[string]string{
			"conf.d/a.toml": "include = [\"x.toml\"]\n",
		}, []string{"conf.d/a.toml:1: include: belongs in the main file"}},
		{"syntax error", map[string]string{
			"conf.d/a.toml": "[[route]\n",
		}, []string{"conf.d/a.toml:2: expected end of table array"}},
		{"main file error keeps its own index", map[string]string{
			"conf.d/a.toml": "[[route]]\nname = \"a\"\npath = \"/a\"\n",
			"main.toml":     strings.Replace(includeMain, `transform = ["base"]`, `transform = ["nope"]`, 1),
		}, []string{"main.toml:8: route \"a\".transform: unknown transform \"nope\""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"main.toml": includeMain, "extra.toml": ""}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := includeTree(t, files)
			_, err := Load(filepath.Join(dir, "main.toml"))
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestIncludePatterns(t *testing.T) {
	// A glob that matches nothing is an empty conf.d; a plain name that
	// matches nothing is a mistake.
	dir := includeTree(t, map[string]string{"main.toml": includeMain})
	_, err := Load(filepath.Join(dir, "main.toml"))
	require.ErrorContains(t, err, "extra.toml does not exist")

	dir = includeTree(t, map[string]string{"main.toml": includeMain, "extra.toml": ""})
	c, err := Load(filepath.Join(dir, "main.toml"))
	require.NoError(t, err)
	require.Len(t, c.Route, 1)

	dir = includeTree(t, map[string]string{"main.toml": "include = [\"[\"]\n" + includeMain[strings.Index(includeMain, "\n"):]})
	_, err = Load(filepath.Join(dir, "main.toml"))
	require.ErrorContains(t, err, "include")

	// The main file matched by its own pattern is not read twice.
	dir = includeTree(t, map[string]string{"main.toml": strings.Replace(includeMain, `"extra.toml"`, `"*.toml"`, 1)})
	c, err = Load(filepath.Join(dir, "main.toml"))
	require.NoError(t, err)
	require.Len(t, c.Route, 1)
}
