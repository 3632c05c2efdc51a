package bridge

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

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
		return newRequestView(&fcgi.Request{Role: role, Params: params})
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
