package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes Parse or the line scanner panic, and
// that whatever Parse accepts survives Encode and Parse again.
func FuzzParse(f *testing.F) {
	f.Add(defaultTOML)
	if full, err := os.ReadFile(filepath.Join("testdata", "full.toml")); err == nil {
		f.Add(full)
	}
	f.Add([]byte(minimal + "[[route.header]]\nname = \"A\"\nmatch = \"(\"\n"))
	f.Add([]byte("s = \"\"\"\n[[x]]\n\"\"\"\n[[route]]\na.b.'c' = [\n{x=1},\n]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		scanKeyLines(data)
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := c.Encode(&buf); err != nil {
			t.Fatalf("encode an accepted config: %v", err)
		}
		if _, err := Parse("again.toml", buf.Bytes()); err != nil {
			t.Fatalf("the encoded config does not parse: %v\n%s", err, buf.String())
		}
	})
}
