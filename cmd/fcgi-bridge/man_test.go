package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/sample"
)

// The manual page is written by hand: these checks keep it in step with
// the command (every flag and sample transform in it, its example
// configuration valid) and make sure it renders without warnings.
func TestManPage(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "fcgi-bridge.8")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	roff := func(s string) string { return strings.ReplaceAll(s, "-", `\-`) }

	_, help, _ := runCmd(t, "", "--help")
	flags := regexp.MustCompile(`(?m)^\s+(?:-([a-zA-Z]), )?--([a-z-]+)`).FindAllStringSubmatch(help, -1)
	if len(flags) < 5 {
		t.Fatalf("found %d flags in --help:\n%s", len(flags), help)
	}
	for _, f := range append(flags, []string{"", "h", "help"}) {
		if f[1] != "" && !strings.Contains(page, `.BR \-`+f[1]) && !strings.Contains(page, `.B \-`+f[1]) && !strings.Contains(page, `.BI \-`+f[1]) {
			t.Errorf("the manual page does not describe -%s", f[1])
		}
		if !strings.Contains(page, roff("--"+f[2])) {
			t.Errorf("the manual page does not describe --%s", f[2])
		}
	}
	for _, n := range sample.Names() {
		if !strings.Contains(page, roff(n)) {
			t.Errorf("the manual page does not list the sample transform %q", n)
		}
	}

	m := regexp.MustCompile(`(?s)\.EX\n(\[\[listen\]\].*?)\.EE`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the manual page has no example configuration (.EX [[listen]] … .EE)")
	}
	if _, err := conf.Parse("fcgi-bridge.8 example", []byte(strings.ReplaceAll(m[1], `\-`, "-"))); err != nil {
		t.Errorf("the manual page's example configuration is invalid: %v", err)
	}

	man, err := exec.LookPath("man")
	if err != nil {
		t.Skip("man is not installed: the page's rendering is not checked")
	}
	cmd := exec.Command(man, "--warnings", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), "SYNOPSIS") {
		t.Errorf("man --warnings -l %s: %v\nstderr:\n%s", path, err, stderr.String())
	}
}
