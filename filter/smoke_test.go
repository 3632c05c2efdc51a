package filter

import (
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	p := newModePool(t, testtransform.Upper)
	tr := NewPooled("upper", p, 0)
	for range 3 {
		out, body, err := roundTrip(t, tr, textMessage("hello"), &RequestInfo{URL: "http://x/y"})
		require.NoError(t, err)
		require.Equal(t, "HELLO", body)
		require.Equal(t, int64(5), out.Length)
		t.Log(out.Header)
	}
}
