package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// transform-check finds each common mistake in a transform that makes it
// on purpose, and names it with its hint; a good transform passes.
func TestTransformCheckFindsMistakes(t *testing.T) {
	for _, tc := range []struct {
		mode string
		code int
		want []string
	}{
		{testtransform.Cat, 0, []string{"reply:     HTTP/1.1 200 OK", "body:      262182 bytes (Content-Length 262182)", "every reply was a valid message"}},
		{testtransform.CGIStatus, 1, []string{"line 1:    Status: 200 OK", "mistake:   " + filter.BadStatusLine.String(), "hint:      " + filter.BadStatusLine.Hint()}},
		{testtransform.NoBlankLine, 1, []string{"line 4:    <p>{", "mistake:   " + filter.NoBlankLine.String(), "hint:      " + filter.NoBlankLine.Hint()}},
		{testtransform.ShortBody, 1, []string{"then the reply broke off", "mistake:   " + filter.BodyShort.String(), "hint:      update Content-Length when you change the body"}},
		{testtransform.LongBody, 1, []string{"mistake:   " + filter.BodyLong.String(), "hint:      " + filter.BodyLong.Hint()}},
		{testtransform.ReplyBeforeRead, 1, []string{"reply:     HTTP/1.1 200 OK", "mistake:   " + filter.ReplyBeforeRead.String(), "hint:      " + filter.ReplyBeforeRead.Hint()}},
		{testtransform.CrashAfterRead, 1, []string{"phase:     read reply", "exit:      exit status 3", "exiting with status 3"}},
		{testtransform.Garbage, 1, []string{"line 1:    this is not HTTP at all", `\x00\x01\x02`}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var out, errOut bytes.Buffer
			// Only a body shorter than its Content-Length is found by the
			// timeout (the transform stalls); every other case is answered,
			// and a busy machine must not turn it into a timeout.
			timeout := "30s"
			if tc.mode == testtransform.ShortBody {
				timeout = "3s"
			}
			args := append([]string{"--timeout", timeout, "env", testtransform.Env(tc.mode)}, testtransform.Command()...)
			code := runCheck(args, &out, &errOut)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q\n%s", w, out.String())
				}
			}
		})
	}
}

func TestTransformCheckUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runCheck(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: fcgi-bridge transform-check") {
		t.Fatalf("no command: exit %d, stderr %q", code, errOut.String())
	}
	// Asked for, the usage goes to stdout with exit 0, so it pipes into a pager.
	for _, help := range []string{"--help", "-h", "help"} {
		out.Reset()
		errOut.Reset()
		if code := runCheck([]string{help}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "usage: fcgi-bridge transform-check") || !strings.Contains(out.String(), "--runs") || errOut.Len() != 0 {
			t.Fatalf("transform-check %s: exit %d, stdout %q, stderr %q", help, code, out.String(), errOut.String())
		}
	}
	if code := runCheck([]string{"--body", "/nonexistent/body", "cat"}, &out, &errOut); code != 2 {
		t.Fatalf("missing body file: exit %d", code)
	}
	// The subcommand is reached from the command line.
	code, stdout, stderr := runCmd(t, "", "transform-check", "--runs", "1", "cat")
	if code != 0 || !strings.Contains(stdout, "every reply was a valid message") {
		t.Fatalf("transform-check cat: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runCmd(t, "", "transform-check", "/nonexistent/transform")
	if code != 1 || !strings.Contains(stdout, "phase:     start") || !strings.Contains(stdout, "check the command path") {
		t.Fatalf("missing program: exit %d\n%s", code, stdout)
	}
}
