package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckAndDumpShowIncludes: -t lists what each included file brought,
// -T marks each table with its file, and a mistake in an included file is
// reported with that file's name and line.
func TestCheckAndDumpShowIncludes(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	main := filepath.Join(dir, "bridge.toml")
	site := filepath.Join(dir, "conf.d", "site.toml")
	os.WriteFile(main, []byte("include = [\"conf.d/*.toml\"]\n\n[[route]]\nname = \"rest\"\n"), 0o644)
	os.WriteFile(site, []byte("[transform.up]\ncommand = [\"cat\"]\n\n[[route]]\nname = \"site\"\npath = \"/site\"\ntransform = [\"up\"]\n"), 0o644)

	code, out, errOut := runCmd(t, "", "-t", "-c", main)
	if code != 0 || !strings.Contains(out, "included "+site+`: transform.up, route "site"`) {
		t.Fatalf("-t: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, "", "-T", "-c", main)
	if code != 0 || !strings.Contains(out, "# from "+site+"\n[transform.up]") || !strings.Contains(out, "# from "+main+"\n[[route]]\nname = \"rest\"") {
		t.Fatalf("-T: %d\n%s", code, out)
	}

	os.WriteFile(site, []byte("[transform.up]\ncommand = [\"/nonexistent/up\"]\n"), 0o644)
	code, _, errOut = runCmd(t, "", "-t", "-c", main)
	if code != 1 || !strings.Contains(errOut, site+":2: transform.up.command") {
		t.Fatalf("-t with a missing program in an included file: %d\n%s", code, errOut)
	}
}
