package child

import (
	"io"
	"os"
	"testing"
)

// A writer that keeps the pipe open (a helper that left the group) must not
// keep the reader waiting once the child is known to be gone: it gets what
// is in the pipe, then EOF, also when it was already parked in a read.
func TestStderrReaderEndsWhenPipeEmptyAfterExit(t *testing.T) {
	for _, parked := range []bool{false, true} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close() // held open for the whole test, as by a stray helper
		sr, err := NewStderrReader(r)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		read := func() {
			b, err := io.ReadAll(sr)
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- string(b)
		}
		if parked {
			// The reader waits for data that does not come.
			go read()
			if _, err := w.Write([]byte("last words\n")); err != nil {
				t.Fatal(err)
			}
			sr.Exited()
		} else {
			if _, err := w.Write([]byte("last words\n")); err != nil {
				t.Fatal(err)
			}
			sr.Exited()
			go read()
		}
		if s := <-got; s != "last words\n" {
			t.Errorf("parked=%v: read %q, want the line then EOF", parked, s)
		}
	}
}
