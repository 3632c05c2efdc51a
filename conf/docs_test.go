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

// TestEveryKeyDocumented keeps the README's configuration reference in step
// with the schema: each key of each table must appear in that section as
// `key`.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	text := string(doc)
	start := strings.Index(text, "\n## Configuration reference\n")
	require.GreaterOrEqual(t, start, 0, "README.md has no section \"## Configuration reference\"")
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	// The operations keys (status routes, slow log, includes) are documented
	// with the rest of operations, in docs/operations.md.
	ops, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	require.NoError(t, err)
	opsKeys := string(ops)
	start = strings.Index(opsKeys, "\n## Configuration keys\n")
	require.GreaterOrEqual(t, start, 0, "docs/operations.md has no section \"## Configuration keys\"")
	opsKeys = opsKeys[start+1:]
	if end := strings.Index(opsKeys[3:], "\n## "); end >= 0 {
		opsKeys = opsKeys[:end+3]
	}
	text += opsKeys
	for _, v := range []any{Listener{}, Server{}, Log{}, Transform{}, Upstream{}, Route{}, Condition{}} {
		typ := reflect.TypeOf(v)
		for i := 0; i < typ.NumField(); i++ {
			tag := strings.Split(typ.Field(i).Tag.Get("toml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			assert.Contains(t, text, "`"+tag+"`", "%s.%s (key %q) is not in the README's configuration reference", typ.Name(), typ.Field(i).Name, tag)
		}
	}
}
