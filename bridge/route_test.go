package bridge

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/filter"
	"github.com/fcgi-bridge/fcgi-bridge/source"
)

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/a/b": "/a/b", "/a/b/": "/a/b/", "/a/../b": "/b", "//a//b/": "/a/b/",
		"/static/../admin": "/admin", "/..": "/", "a": "/a",
	} {
		assert.Equal(t, want, cleanPath(in), in)
	}
}

func TestPathHasPrefix(t *testing.T) {
	assert.True(t, pathHasPrefix("/api", "/api"))
	assert.True(t, pathHasPrefix("/api/x", "/api"))
	assert.False(t, pathHasPrefix("/apix", "/api"))
	assert.True(t, pathHasPrefix("/api/x", "/api/"))
	assert.False(t, pathHasPrefix("/api", "/api/"))
}

func TestMediaMatch(t *testing.T) {
	assert.True(t, mediaMatch("application/json", "application/json"))
	assert.True(t, mediaMatch("text/*", "text/html"))
	assert.False(t, mediaMatch("text/*", "textual/html"))
	assert.True(t, mediaMatch("*/*", "image/png"))
	assert.True(t, mediaMatch("Application/JSON", "application/json"))
	assert.False(t, mediaMatch("application/json", "application/jsonx"))
}

func TestRouteMatches(t *testing.T) {
	cfg, err := conf.Parse("r.toml", []byte(`
[[route]]
name = "glob"
role = "any"
glob = "/img/*.jpg"
method = ["GET", "HEAD"]
[[route]]
name = "hdr"
header = [{ name = "X-Mode", match = "^fast$" }, { name = "Content-Type", match = "json" }]
query = [{ name = "debug", not = true }]
`))
	if !assert.NoError(t, err) {
		return
	}
	glob, err := newRoute(cfg.Route[0], stubSource{}, nil)
	assert.NoError(t, err)
	hdr, err := newRoute(cfg.Route[1], stubSource{}, nil)
	assert.NoError(t, err)
	view := func(role fcgi.Role, params map[string]string) *requestView {
		tg := source.NewTarget(params)
		return newRequestView(&fcgi.Request{Role: role, Params: params}, &tg)
	}
	assert.True(t, glob.matches(view(fcgi.RoleResponder, map[string]string{"REQUEST_URI": "/img/a.jpg"})))
	assert.True(t, glob.matches(view(fcgi.RoleFilter, map[string]string{"REQUEST_URI": "/img/a.jpg", "REQUEST_METHOD": "HEAD"})))
	assert.False(t, glob.matches(view(fcgi.RoleAuthorizer, map[string]string{"REQUEST_URI": "/img/a.jpg"})), "any never means authorizer")
	assert.False(t, glob.matches(view(fcgi.RoleResponder, map[string]string{"REQUEST_URI": "/img/x/a.jpg"})))
	assert.False(t, glob.matches(view(fcgi.RoleResponder, map[string]string{"REQUEST_URI": "/img/a.jpg", "REQUEST_METHOD": "POST"})))

	ok := map[string]string{"REQUEST_URI": "/x", "HTTP_X_MODE": "fast", "CONTENT_TYPE": "application/json"}
	assert.True(t, hdr.matches(view(fcgi.RoleResponder, ok)))
	assert.False(t, hdr.matches(view(fcgi.RoleFilter, ok)), "role defaults to responder")
	ok["REQUEST_URI"] = "/x?debug=1"
	ok["QUERY_STRING"] = "debug=1"
	assert.False(t, hdr.matches(view(fcgi.RoleResponder, ok)), "negated query condition")
	assert.False(t, hdr.matches(view(fcgi.RoleResponder, map[string]string{"REQUEST_URI": "/x", "HTTP_X_MODE": "slow", "CONTENT_TYPE": "application/json"})))
}

type stubSource struct{}

func (stubSource) Name() string { return "stub" }
func (stubSource) Close() error { return nil }
func (stubSource) Fetch(context.Context, *source.Request) (*filter.Message, error) {
	return &filter.Message{Status: 200, Length: 0}, nil
}

// targetSource records the Target each request reached the source with.
type targetSource struct {
	stubSource
	got chan source.Target
}

func (s targetSource) Fetch(ctx context.Context, r *source.Request) (*filter.Message, error) {
	s.got <- r.Target
	return s.stubSource.Fetch(ctx, r)
}

// The bridge reads the request's target once and hands it to the source,
// which then reads no params for it.
func TestSourceGetsTarget(t *testing.T) {
	cfg, err := conf.Parse("r.toml", []byte(`
[[route]]
name = "rec"
path = "/a b"
source = "body"
`))
	require.NoError(t, err)
	src := targetSource{got: make(chan source.Target, 1)}
	b, err := New(cfg, WithSource("body", src), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer b.Close(context.Background())
	params := map[string]string{"REQUEST_METHOD": "HEAD", "REQUEST_URI": "/a%20b/c?x=1", "QUERY_STRING": "x=1",
		"HTTP_HOST": "site.test", "HTTPS": "on"}
	w := newRecorder()
	b.ServeFCGI(w, &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, Params: params, ContentLength: -1, DataLength: -1})
	assert.Equal(t, 200, w.status)
	assert.Equal(t, source.Target{Method: "HEAD", Scheme: "https", Host: "site.test", URI: "/a%20b/c?x=1", Path: "/a b/c", Query: "x=1"}, <-src.got)
}
