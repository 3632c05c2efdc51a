package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandlerAnswersThePage(t *testing.T) {
	page := []byte(`{"title":"Benchmark page"}`)
	srv := httptest.NewServer(handler(page))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/", "/pass/page", "/hop/page?x=1"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Equal(t, page, body, path)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), path)
		assert.Equal(t, int64(len(page)), resp.ContentLength, path)
		var names []string
		for k := range resp.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		assert.Equal(t, []string{"Content-Length", "Content-Type", "Date"}, names, path)
	}
}
