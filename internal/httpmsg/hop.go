package httpmsg

// hopByHop are the fields that describe one connection and are never
// forwarded (RFC 9110 section 7.6.1), plus Proxy-Connection, still sent by
// old clients, and the proxy credentials, which are for the next hop only.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// IsHopByHop reports whether name is a hop-by-hop field. Fields that a
// Connection field nominates are hop-by-hop too: RemoveHopByHop removes both.
func IsHopByHop(name string) bool {
	for _, n := range hopByHop {
		if equalFold(n, name) {
			return true
		}
	}
	return false
}

// IsFraming reports whether a field describes how the message is carried
// rather than the message: whoever writes the message next frames it again.
func IsFraming(name string) bool {
	switch len(name) {
	case 10:
		return equalFold(name, "Connection") || equalFold(name, "Keep-Alive")
	case 14:
		return equalFold(name, "Content-Length")
	case 17:
		return equalFold(name, "Transfer-Encoding")
	}
	return false
}

// BodyAllowed reports whether a response with this status may carry a body.
func BodyAllowed(status int) bool {
	return !(status >= 100 && status < 200) && status != 204 && status != 304
}

// RemoveHopByHop removes, in place, the fields a Connection field nominates
// and then the hop-by-hop fields themselves.
func RemoveHopByHop(h *Header) {
	// The nominations are read first: compacting overwrites the list.
	var small [4]string
	nominations := small[:0]
	for _, f := range *h {
		if equalFold(f.Name, "Connection") {
			nominations = append(nominations, f.Value)
		}
	}
	h.DelFunc(func(name string) bool {
		if IsHopByHop(name) {
			return true
		}
		for _, v := range nominations {
			if HasToken(v, name) {
				return true
			}
		}
		return false
	})
}

// HasToken reports whether the comma-separated list v holds tok, ignoring
// ASCII case and the whitespace around list members.
func HasToken(v, tok string) bool {
	for v != "" {
		var item string
		if i := indexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, ""
		}
		if equalFold(trimOWS(item), tok) {
			return true
		}
	}
	return false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
