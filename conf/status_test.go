package conf

import (
	"strings"
	"testing"
)

func TestBuiltinRoutes(t *testing.T) {
	const base = "[transform.t]\ncommand = [\"cat\"]\n\n[[route]]\nname = \"app\"\ntransform = [\"t\"]\n\n"
	ok := base + "[[route]]\nname = \"s\"\npath = \"/status\"\nkind = \"status\"\nformat = \"prometheus\"\n\n" +
		"[[route]]\nname = \"p\"\npath = \"/ping\"\nkind = \"ping\"\n\n[[route]]\nname = \"r\"\nglob = \"/ready*\"\nkind = \"ready\"\n"
	if _, err := Parse("ok.toml", []byte(ok)); err != nil {
		t.Fatalf("valid status routes refused: %v", err)
	}
	for _, tc := range []struct{ route, want string }{
		{"path = \"/s\"\nkind = \"stats\"", "route \"b\".kind"},
		{"kind = \"status\"", "route \"b\".path"},
		{"path = \"/s\"\nkind = \"ping\"\ntransform = [\"t\"]", "route \"b\".transform"},
		{"path = \"/s\"\nkind = \"ping\"\nrole = \"filter\"", "route \"b\".role"},
		{"path = \"/s\"\nkind = \"ready\"\nsource = \"data\"", "route \"b\".source"},
		{"path = \"/s\"\nkind = \"ping\"\nformat = \"json\"", "route \"b\".format"},
		{"path = \"/s\"\nkind = \"status\"\nformat = \"xml\"", "route \"b\".format"},
		{"path = \"/s\"\nformat = \"json\"", "route \"b\".format"},
	} {
		_, err := Parse("bad.toml", []byte(base+"[[route]]\nname = \"b\"\n"+tc.route+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.route, err, tc.want)
		}
	}
}
