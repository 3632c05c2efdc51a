package field

import "testing"

func TestToken(t *testing.T) {
	for s, want := range map[string]bool{
		"Content-Type": true, "X_1.a~!#$%&'*+^`|": true,
		"": false, "Bad Name": false, "a:b": false, "caf\xc3\xa9": false, "a\tb": false, "(x)": false,
	} {
		if got := Token(s); got != want {
			t.Errorf("Token(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValue(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "text/html; charset=utf-8": true, "a\tb": true, "caf\xc3\xa9": true,
		"a\rb": false, "a\nb": false, "a\x00b": false, "a\x7fb": false, "\x1b[31m": false,
	} {
		if got := Value(s); got != want {
			t.Errorf("Value(%q) = %v, want %v", s, got, want)
		}
	}
}
