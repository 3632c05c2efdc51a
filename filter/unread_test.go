package filter

import (
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A transform that answers from the head alone and leaves the body unread
// must not be reused: the next exchange would read the leftover body as
// the start of its own message, and another client would see it.
func TestUnreadBodyRetiresProcess(t *testing.T) {
	sh := "while :; do while IFS= read -r l; do [ \"$l\" = $'\\r' ] && break; done || exit 0; " +
		"printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'; sleep 2; done"
	p := newPool(t, pool.Config{Name: "head-only", Command: []string{"bash", "-c", sh}})
	tr := NewPooled("head-only", p, 0)

	_, got, err := roundTrip(t, tr, textMessage("SECRET-BODY-OF-REQUEST-ONE"), &RequestInfo{})
	require.NoError(t, err)
	require.Equal(t, "ok", got)
	_, got, err = roundTrip(t, tr, textMessage("second"), &RequestInfo{})
	require.NoError(t, err)
	assert.Equal(t, "ok", got, "the second exchange must not see the first one's body")
	st := p.Stats()
	assert.EqualValues(t, 2, st.Spawned, "the process that left input unread was replaced")
}
