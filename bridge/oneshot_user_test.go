package bridge

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// user and group apply to one-shot transforms as they do to pooled ones:
// each run is under that identity, and a bridge that cannot switch users
// refuses the configuration instead of running the command as itself.
func TestOneShotUser(t *testing.T) {
	b, err := New(oneShotAs(t, "nobody"))
	if os.Geteuid() != 0 {
		require.ErrorContains(t, err, "need the bridge to run as root")
		return
	}
	require.NoError(t, err)
	t.Cleanup(func() { b.Close(context.Background()) })
	f := &fixture{b: b}
	w := f.do(t, req{role: fcgi.RoleFilter, uri: "/x", data: "ignored"})
	require.Equal(t, 200, w.status, w.stderr.String())
	require.Equal(t, "65534\n", w.body.String())
}

// A user that does not exist stops the configuration, naming the transform
// and the user, whether or not the bridge runs as root.
func TestOneShotUnknownUser(t *testing.T) {
	_, err := New(oneShotAs(t, "no-such-user-xyz"))
	require.ErrorContains(t, err, `transform "whoami"`)
	require.ErrorContains(t, err, "no-such-user-xyz")
}

// oneShotAs is a FILTER route through a one-shot "id -u" run as user.
func oneShotAs(t *testing.T, user string) *conf.Config {
	t.Helper()
	cfg, err := conf.Parse("test.toml", []byte(`
[transform.whoami]
kind = "oneshot"
command = ["sh", "-c", "id -u"]
pass_env = ["PATH"]
user = "`+user+`"

[[route]]
name = "whoami"
role = "filter"
transform = ["whoami"]
`))
	require.NoError(t, err)
	return cfg
}
