package bridge

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// flushCounter is a recorder that counts Flush calls and can fail writes.
type flushCounter struct {
	*recorder
	flushes  atomic.Int32
	writeErr error
}

func (f *flushCounter) Flush() error { f.flushes.Add(1); return nil }

func (f *flushCounter) Write(p []byte) (int, error) {
	if f.writeErr != nil {
		return 0, f.writeErr
	}
	return f.recorder.Write(p)
}

// TestNoFlushAfterBody: a response is left for the fcgi server to send with
// END_REQUEST in one write; a flush after the body split every response in
// two writes. A failing write is still what the access line records.
func TestNoFlushAfterBody(t *testing.T) {
	f := newFixture(t)
	r := &fcgi.Request{ID: 1, Role: fcgi.RoleResponder, ContentLength: 5, DataLength: -1,
		Params: map[string]string{"REQUEST_METHOD": "POST", "REQUEST_URI": "/x", "CONTENT_LENGTH": "5"},
		Stdin:  strings.NewReader("hello"), Data: strings.NewReader("")}
	w := &flushCounter{recorder: newRecorder()}
	f.b.ServeFCGI(w, r)
	require.Equal(t, 200, w.status)
	assert.Equal(t, "HELLO", w.body.String())
	assert.Zero(t, w.flushes.Load(), "send must not flush")

	r.Stdin = strings.NewReader("hello")
	w = &flushCounter{recorder: newRecorder(), writeErr: errors.New("broken pipe to the web server")}
	f.b.ServeFCGI(w, r)
	assert.Contains(t, f.logText(), "broken pipe to the web server", "the write error reaches the log")
}
