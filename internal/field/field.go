// Package field is kept only for callers not yet moved onto
// internal/httpmsg, which owns the checks: use httpmsg.ValidName and
// httpmsg.ValidValue in new code. It goes when its last caller moves.
package field

import "github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"

// Token reports whether s is an RFC 9110 token, as a field name must be.
func Token(s string) bool { return httpmsg.ValidName(s) }

// Value reports whether s has no control characters but tab.
func Value(s string) bool { return httpmsg.ValidValue(s) }
