package fcgi

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzRecordReader: any bytes give records consistent with their headers or an
// error, never a panic, and the result does not depend on how reads split.
func FuzzRecordReader(f *testing.F) {
	f.Add(request(1, true, "body", "A=b"))
	f.Add(join(rawRecord(typeStdin, 1, []byte("x"), 255), rawRecord(typeData, 9, nil, 3)))
	f.Add([]byte{1, 5, 0, 1, 0xff, 0xff, 0xff, 0})
	f.Add([]byte{2, 1, 0, 0, 0, 8, 0, 0})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, stream []byte) {
		read := func(r io.Reader) ([]readRecord, error) {
			rr := newRecordReader(r)
			var out []readRecord
			for {
				h, c, err := rr.next()
				if err != nil {
					return out, err
				}
				if h.Version != version1 || len(c) != int(h.ContentLength) {
					t.Fatalf("inconsistent record %+v with %d bytes", h, len(c))
				}
				out = append(out, readRecord{h, string(c)})
			}
		}
		whole, err1 := read(bytes.NewReader(stream))
		bytewise, err2 := read(iotest.OneByteReader(bytes.NewReader(stream)))
		if len(whole) != len(bytewise) {
			t.Fatalf("%d records read whole, %d byte by byte", len(whole), len(bytewise))
		}
		for i := range whole {
			if whole[i] != bytewise[i] {
				t.Fatalf("record %d differs: %+v vs %+v", i, whole[i], bytewise[i])
			}
		}
		if (err1 == io.EOF) != (err2 == io.EOF) {
			t.Fatalf("errors differ: %v vs %v", err1, err2)
		}
		var ve *versionError
		if err1 != io.EOF && err1 != io.ErrUnexpectedEOF && !errors.As(err1, &ve) {
			t.Fatalf("unexpected error %v", err1)
		}
	})
}

// FuzzParams: the name-value decoder never panics, agrees with itself however
// the stream is split into records, and what it decodes re-encodes to pairs
// that decode the same.
func FuzzParams(f *testing.F) {
	f.Add(encodePairs([2]string{"A", "b"}, [2]string{"LONG", string(bytes.Repeat([]byte{'v'}, 200))}), 3)
	f.Add([]byte("\x80\x00\x00\x01\x80\x00\x00\x00a"), 1)
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff"), 4)
	f.Add([]byte("\x05\x00ab"), 0)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		lim := pairLimits{MaxName: 512, MaxValue: 4096, MaxPairs: 100}
		type pair struct{ n, v string }
		var whole []pair
		errWhole := decodePairs(b, lim, func(n, v []byte) error {
			whole = append(whole, pair{string(n), string(v)})
			return nil
		})
		if split < 0 {
			split = -split
		}
		if len(b) > 0 {
			split %= len(b) + 1
		} else {
			split = 0
		}
		d := pairDecoder{limits: lim}
		var parts []pair
		emit := func(n, v []byte) error { parts = append(parts, pair{string(n), string(v)}); return nil }
		errSplit := d.feed(b[:split], emit)
		if errSplit == nil {
			errSplit = d.feed(b[split:], emit)
		}
		if errSplit == nil {
			errSplit = d.finish()
		}
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v, split at %d: %v", errWhole, split, errSplit)
		}
		if errWhole != nil {
			return
		}
		if len(whole) != len(parts) {
			t.Fatalf("%d pairs whole, %d split", len(whole), len(parts))
		}
		var again []byte
		for i := range whole {
			if whole[i] != parts[i] {
				t.Fatalf("pair %d differs", i)
			}
			again = appendPair(again, whole[i].n, whole[i].v)
		}
		n := 0
		if err := decodePairs(again, lim, func(name, value []byte) error {
			if string(name) != whole[n].n || string(value) != whole[n].v {
				t.Fatalf("re-encoded pair %d differs", n)
			}
			n++
			return nil
		}); err != nil {
			t.Fatalf("re-encoded pairs fail: %v", err)
		}
	})
}
