package conf

import (
	"fmt"
	"io"

	"github.com/BurntSushi/toml"
)

// Encode writes the effective configuration (defaults filled in) as TOML
// that Parse reads back to an equal Config; this is what `-T` prints.
func (c *Config) Encode(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "# effective configuration from %s\n\n", c.File); err != nil {
		return err
	}
	enc := toml.NewEncoder(w)
	enc.Indent = ""
	out := *c
	// Empty tables would print as bare headers ("[upstream]"); leave them out.
	if len(out.Transform) == 0 {
		out.Transform = nil
	}
	if len(out.Upstream) == 0 {
		out.Upstream = nil
	}
	// The included tables are printed merged in, so the output stands alone.
	out.Include = nil
	if c.from != nil {
		return c.encodeWithOrigins(w, &out)
	}
	if err := enc.Encode(&out); err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	return nil
}
