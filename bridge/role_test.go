package bridge

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// A configuration with no AUTHORIZER route: the real fcgi server asks the
// Bridge (a fcgi.RoleServer) and answers an AUTHORIZER request with
// END_REQUEST{FCGI_UNKNOWN_ROLE}, as the specification asks, instead of a
// made-up 403; RESPONDER requests on the same connection are still served.
func TestUnknownRoleThroughFCGIServer(t *testing.T) {
	cfg, err := conf.Parse("role.toml", []byte(`
[[route]]
path = "/only/"
`))
	require.NoError(t, err)
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	var _ fcgi.RoleServer = b

	sock := filepath.Join(t.TempDir(), "role.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := &fcgi.Server{Handler: b, Limits: ServerLimits(cfg.Server)}
	go func() { _ = srv.Serve(l) }()
	c := &fcgi.Client{Network: "unix", Address: sock, KeepConn: true}
	t.Cleanup(func() {
		_ = c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	params := []fcgi.Pair{{Name: "REQUEST_METHOD", Value: "GET"}, {Name: "REQUEST_URI", Value: "/only/x"}, {Name: "HTTP_HOST", Value: "site.test"}}
	resp, err := c.Do(ctx, &fcgi.ClientRequest{Role: fcgi.RoleAuthorizer, Params: params})
	if err == nil {
		_, err = io.ReadAll(resp.Stdout)
		_ = resp.Stdout.Close()
	}
	require.ErrorIs(t, err, fcgi.ErrUnknownRole)

	r := wire(t, c, fcgi.RoleResponder, "POST", "/only/x", nil, "as is", "")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "as is", r.body)
}
