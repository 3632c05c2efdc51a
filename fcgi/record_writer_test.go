package fcgi

import (
	"fmt"
	"io"
)

// The tests' record writer: fake peers and record tests write records with
// it; the server and the client assemble theirs in place with recordBuf.

// append copies as much of p as fits and returns how much it copied.
func (r *recordBuf) append(p []byte) int {
	n := copy(r.tail(), p)
	r.grow(n)
	return n
}

// recordWriter writes whole records to w; each record is one Write.
type recordWriter struct {
	w   io.Writer
	buf *recordBuf
}

func newRecordWriter(w io.Writer) *recordWriter {
	return &recordWriter{w: w, buf: newRecordBuf()}
}

// writeRecord writes content as records of type t for id, splitting it at
// 65535 bytes. Empty content writes one empty record (the end of a stream).
func (rw *recordWriter) writeRecord(t recType, id uint16, content []byte) error {
	for {
		rw.buf.reset()
		n := rw.buf.append(content)
		content = content[n:]
		if _, err := rw.w.Write(rw.buf.finish(t, id)); err != nil {
			return fmt.Errorf("fcgi: write %v record for request %d: %w", t, id, err)
		}
		if len(content) == 0 {
			return nil
		}
	}
}
