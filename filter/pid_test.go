package filter

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/internal/testtransform"
)

// TestReplyBodyPid: the body of a successful reply, pooled or one-shot,
// tells which process produced it.
func TestReplyBodyPid(t *testing.T) {
	type pider interface{ Pid() int }

	p := newModePool(t, testtransform.Cat)
	out, err := NewPooled("cat", p, 0).Apply(context.Background(), textMessage("abc"), nil)
	require.NoError(t, err)
	pb, ok := out.Body.(pider)
	require.True(t, ok, "pooled reply body has Pid()")
	assert.Positive(t, pb.Pid())
	_, err = io.ReadAll(out.Body)
	require.NoError(t, err)
	out.Body.Close()

	head, err := NewOneShot(OneShotConfig{Name: "head", Args: []string{"head", "-c", "{n}"}, Vars: map[string]string{"n": `[0-9]{1,6}`}})
	require.NoError(t, err)
	out, err = head.Apply(context.Background(), textMessage("abcdef"), &RequestInfo{Query: "n=2"})
	require.NoError(t, err)
	ob, ok := out.Body.(pider)
	require.True(t, ok, "one-shot reply body has Pid()")
	assert.Positive(t, ob.Pid())
	b, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	assert.Equal(t, "ab", string(b))
	out.Body.Close()
}
