package source

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

func TestCommonHeaderNamesMatchTheRule(t *testing.T) {
	for p, name := range commonHeaderNames {
		want, ok := headerName(p)
		assert.True(t, ok, p)
		assert.Equal(t, want, name, p)
	}
	for _, p := range []string{"HTTP_USER_AGENT", "HTTP_X_CUSTOM_THING", "HTTP_", "QUERY_STRING", "HTTPS"} {
		got, gotOK := HeaderName(p)
		want, wantOK := headerName(p)
		assert.Equal(t, wantOK, gotOK, p)
		assert.Equal(t, want, got, p)
	}
}

func TestNewRequestHeaders(t *testing.T) {
	src, err := NewHTTP(&conf.Upstream{Name: "app", URL: "http://127.0.0.1:8081/app/", KeepAlive: true})
	require.NoError(t, err)
	p := map[string]string{}
	for k, v := range nginxGET {
		p[k] = v
	}
	// Two params that name the same header keep both values.
	p["HTTP_X_TWICE"], p["HTTP_X-TWICE"] = "a", "b"
	for i := range 20 { // more fields than the first value array holds
		p["HTTP_X_EXTRA_"+string(rune('A'+i))] = string(rune('a' + i))
	}
	req, err := src.(*httpSource).newRequest(context.Background(), &Request{Params: p, ContentLength: -1, Spooled: true})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8081/app/pass/page?x=1", req.URL.String())
	assert.Equal(t, "127.0.0.1:8080", req.Host)
	assert.Equal(t, http.NoBody, req.Body)
	assert.Equal(t, "Mozilla/5.0", req.Header.Get("User-Agent"))
	assert.Equal(t, "gzip, br", req.Header.Get("Accept-Encoding"))
	assert.Empty(t, req.Header.Values("Connection"))
	assert.Empty(t, req.Header.Values("Host"))
	twice := req.Header.Values("X-Twice")
	slices.Sort(twice)
	assert.Equal(t, []string{"a", "b"}, twice)
	for i := range 20 {
		assert.Equal(t, []string{string(rune('a' + i))}, req.Header.Values("X-Extra-"+string(rune('A'+i))))
	}
}
