package conf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryKeyDocumented keeps docs/config.md in step with the schema: each
// key of each table must appear there as `key`.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "config.md"))
	require.NoError(t, err)
	text := string(doc)
	for _, v := range []any{Listener{}, Server{}, Log{}, Transform{}, Upstream{}, Route{}, Condition{}} {
		typ := reflect.TypeOf(v)
		for i := 0; i < typ.NumField(); i++ {
			tag := strings.Split(typ.Field(i).Tag.Get("toml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			assert.Contains(t, text, "`"+tag+"`", "%s.%s (key %q) is not in docs/config.md", typ.Name(), typ.Field(i).Name, tag)
		}
	}
}
