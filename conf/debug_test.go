package conf

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDebugInheritance(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []bool // per route
	}{
		{"off by default", minimal + "[[route]]\ntransform = [\"t\"]\n", []bool{false, false}},
		{"server on", "[server]\ndebug = true\n" + minimal + "[[route]]\ntransform = [\"t\"]\ndebug = false\n", []bool{true, false}},
		{"one route", minimal + "debug = true\n[[route]]\ntransform = [\"t\"]\n", []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("d.toml", []byte(tc.toml))
			require.NoError(t, err)
			var got []bool
			for _, r := range c.Route {
				got = append(got, r.DebugOn())
			}
			require.Equal(t, tc.want, got)
			// -T prints what runs, and reads back the same.
			var buf bytes.Buffer
			require.NoError(t, c.Encode(&buf))
			c2, err := Parse("d.toml", buf.Bytes())
			require.NoError(t, err, buf.String())
			for i, r := range c2.Route {
				require.Equal(t, tc.want[i], r.DebugOn())
			}
		})
	}
}

func TestDebugWarnings(t *testing.T) {
	for _, tc := range []struct {
		addr string
		warn bool
	}{
		{"tcp:127.0.0.1:9000", false},
		{"tcp:[::1]:9000", false},
		{"tcp:localhost:9000", false},
		{"unix:/run/fcgi-bridge.sock", false},
		{"tcp:0.0.0.0:9000", true},
		{"tcp:192.0.2.7:9000", true},
		{"tcp::9000", true},
		{"systemd:", true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			for _, debug := range []bool{false, true} {
				toml := "[[listen]]\naddr = \"" + tc.addr + "\"\n" + minimal + "name = \"page\"\n"
				if debug {
					toml += "debug = true\n"
				}
				c, err := Parse("d.toml", []byte(toml))
				require.NoError(t, err)
				w := c.DebugWarnings()
				if !debug || !tc.warn {
					require.Empty(t, w)
					continue
				}
				require.Len(t, w, 1)
				require.Contains(t, w[0], `d.toml: listen.0.addr "`+tc.addr+`" is not a loopback address or a unix socket, and debug is on for route page`)
			}
		})
	}
}

func TestQuickDebug(t *testing.T) {
	c, err := Quick([]string{"tcp:0.0.0.0:9000"}, "", []string{"cat"})
	require.NoError(t, err)
	require.Empty(t, c.DebugWarnings())
	for _, r := range c.Route {
		require.False(t, r.DebugOn())
	}
	c.SetDebug()
	for _, r := range c.Route {
		require.True(t, r.DebugOn())
	}
	require.Len(t, c.DebugWarnings(), 1)
}
