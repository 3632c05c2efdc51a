package fcgi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Values decoded from one record share one string; a pair that straddles two
// records still decodes to its own value, and the strings stay right after
// the record buffer is reused.
func TestRecordStringsValues(t *testing.T) {
	var stream []byte
	pairs := [][2]string{{"REQUEST_METHOD", "GET"}, {"EMPTY", ""}, {"REQUEST_URI", "/a?b=c"}, {"LONG", string(make([]byte, 300))}, {"LAST", "z"}}
	for _, p := range pairs {
		stream = appendPair(stream, p[0], p[1])
	}
	for split := 1; split < len(stream); split++ {
		buf := make([]byte, len(stream)+16)
		got := map[string]string{}
		var d pairDecoder
		d.limits = pairLimits{MaxName: 1 << 10, MaxValue: 1 << 10, MaxPairs: 100}
		for _, part := range [][]byte{stream[:split], stream[split:]} {
			content := buf[8 : 8+copy(buf[8:], part)] // a window into a larger buffer, as records are
			values := recordStrings{content: content}
			require.NoError(t, d.feed(content, func(name, value []byte) error {
				got[string(name)] = values.value(value)
				return nil
			}))
			for i := range buf {
				buf[i] = 'X' // the read buffer is reused for the next record
			}
		}
		require.NoError(t, d.finish())
		for _, p := range pairs {
			assert.Equal(t, p[1], got[p[0]], "split at %d, %s", split, p[0])
		}
	}
}
