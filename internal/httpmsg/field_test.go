package httpmsg

import "testing"

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"Content-Type": true, "X_1.a~!#$%&'*+^`|": true,
		"": false, "Bad Name": false, "a:b": false, "caf\xc3\xa9": false, "a\tb": false, "(x)": false,
	} {
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidValue(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "text/html; charset=utf-8": true, "a\tb": true, "caf\xc3\xa9": true,
		"a\rb": false, "a\nb": false, "a\x00b": false, "a\x7fb": false, "\x1b[31m": false,
	} {
		if got := ValidValue(s); got != want {
			t.Errorf("ValidValue(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCleanValue(t *testing.T) {
	for in, want := range map[string]string{
		"text/html":             "text/html",
		"a\r\nSet-Cookie: x=1":  "a  Set-Cookie: x=1",
		"nul\x00and\x01ctl\x7f": "nul and ctl ",
		"tab\tkept, é kept":     "tab\tkept, é kept",
		"":                      "",
	} {
		got := CleanValue(in)
		if got != want {
			t.Errorf("CleanValue(%q) = %q, want %q", in, got, want)
		}
		if !ValidValue(got) {
			t.Errorf("CleanValue(%q) = %q, which ValidValue refuses", in, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = CleanValue("text/html; charset=utf-8") }); n != 0 {
		t.Errorf("a valid value allocated %v times", n)
	}
}
