package filter

import "github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"

// Field is one header line. Names keep the case they arrived with; lookups
// are case-insensitive.
type Field = httpmsg.Field

// Header is an ordered list of header fields. Order and duplicates (several
// Set-Cookie lines, say) are kept exactly, because transforms and clients may
// depend on both.
type Header = httpmsg.Header

// Message is one HTTP-shaped response travelling through the bridge; see
// httpmsg.Message, where it lives so that sources need not import filter.
type Message = httpmsg.Message

// BodyAllowed reports whether a message with this status may carry a body.
func BodyAllowed(status int) bool { return httpmsg.BodyAllowed(status) }
