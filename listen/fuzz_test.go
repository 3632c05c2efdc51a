package listen

import "testing"

// FuzzParseSpec checks that spec parsing never panics and that what it
// accepts prints back to an equivalent spec.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"tcp:127.0.0.1:9000", "unix:/run/x.sock", "systemd:", "systemd:web", "[::1]:80", "/x", "tcp::", "udp:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSpec(spec)
		if err != nil {
			return
		}
		again, err := ParseSpec(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseSpec(%q) = %+v, which prints as %q and parses as %+v, %v", spec, s, s.String(), again, err)
		}
	})
}

// FuzzParseAllow checks that allow-list parsing never panics.
func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "fd00::/8", "1.2.3.4", "x", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		a, err := ParseAllow([]string{entry})
		if err == nil && a == nil {
			t.Fatalf("ParseAllow(%q) accepted the entry but returned no list", entry)
		}
	})
}
