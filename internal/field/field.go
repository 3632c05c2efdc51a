// Package field holds the two checks every HTTP head this module writes or
// reads goes through: a field name must be a token, and a value (or reason
// phrase) may not hold control characters other than tab, since CR or LF
// would end the line early and let a value inject header lines or a body.
package field

import "strings"

// Token reports whether s is an RFC 9110 token, as a field name must be.
func Token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}

// Value reports whether s has no control characters but tab.
func Value(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
