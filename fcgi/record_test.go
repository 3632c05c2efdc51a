package fcgi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// rawRecord builds a record by hand, with any padding, so tests do not depend
// on the writer they check.
func rawRecord(t recType, id uint16, content []byte, padding int) []byte {
	b := []byte{version1, byte(t), byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(padding), 0xee}
	b = append(b, content...)
	return append(b, bytes.Repeat([]byte{0xa5}, padding)...)
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []recordHeader{
		{version1, typeBeginRequest, 1, 8, 0},
		{version1, typeStdout, 0xffff, 0xffff, 0xff},
		{version1, typeGetValues, 0, 0, 7},
		{2, recType(200), 0x7fff, 0x100, 1},
	} {
		var b [headerLen]byte
		h.put(b[:])
		require.Equal(t, h, parseHeader(b[:]))
		require.Zero(t, b[7], "reserved is written as zero")
	}
}

type readRecord struct {
	h       recordHeader
	content string
}

func readAll(t *testing.T, r io.Reader) ([]readRecord, error) {
	t.Helper()
	rr := newRecordReader(r)
	var out []readRecord
	for {
		h, c, err := rr.next()
		if err != nil {
			return out, err
		}
		out = append(out, readRecord{h, string(c)})
	}
}

// splitReader returns its input in two reads split at off, then byte by byte
// when byByte, so every offset inside a header and a body is exercised.
type splitReader struct {
	data []byte
	off  int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := len(s.data)
	if s.off > 0 {
		n = s.off
		s.off = 0
	}
	n = copy(p, s.data[:min(n, len(s.data))])
	s.data = s.data[n:]
	return n, nil
}

func TestRecordReaderSplitAtEveryOffset(t *testing.T) {
	var stream []byte
	stream = append(stream, rawRecord(typeBeginRequest, 1, []byte{0, 1, 1, 0, 0, 0, 0, 0}, 0)...)
	stream = append(stream, rawRecord(typeParams, 1, []byte("\x04\x03NAMEval"), 5)...)
	stream = append(stream, rawRecord(typeParams, 1, nil, 255)...)
	stream = append(stream, rawRecord(typeStdin, 1, []byte("body"), 4)...)
	stream = append(stream, rawRecord(typeStdin, 1, nil, 0)...)
	want, err := readAll(t, bytes.NewReader(stream))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, want, 5)
	require.Equal(t, "\x04\x03NAMEval", want[1].content)
	for off := 1; off < len(stream); off++ {
		got, err := readAll(t, &splitReader{data: stream, off: off})
		require.ErrorIs(t, err, io.EOF, "split at %d", off)
		require.Equal(t, want, got, "split at %d", off)
	}
	got, err := readAll(t, iotest.OneByteReader(bytes.NewReader(stream)))
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, want, got)
}

func TestRecordReaderPaddingAndReserved(t *testing.T) {
	for pad := 0; pad <= maxPadding; pad++ {
		stream := append(rawRecord(typeStdin, 3, []byte("x"), pad), rawRecord(typeStdin, 3, nil, 0)...)
		got, err := readAll(t, bytes.NewReader(stream))
		require.ErrorIs(t, err, io.EOF)
		require.Equal(t, []readRecord{{recordHeader{1, typeStdin, 3, 1, uint8(pad)}, "x"}, {recordHeader{1, typeStdin, 3, 0, 0}, ""}}, got)
	}
}

func TestRecordReaderErrors(t *testing.T) {
	maxRec := rawRecord(typeStdin, 1, bytes.Repeat([]byte{'m'}, maxContent), maxPadding)
	tests := []struct {
		name    string
		stream  []byte
		records int
		err     error
	}{
		{"version 2", []byte{2, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 0, &versionError{2}},
		{"version 0 after a good record", append(rawRecord(typeStdin, 1, nil, 0), 0, 1, 0, 1, 0, 0, 0, 0), 1, &versionError{0}},
		{"header cut", []byte{1, 5, 0}, 0, io.ErrUnexpectedEOF},
		{"content cut", rawRecord(typeStdin, 1, []byte("abcdef"), 0)[:11], 0, io.ErrUnexpectedEOF},
		{"padding cut", rawRecord(typeStdin, 1, []byte("abc"), 200)[:100], 0, io.ErrUnexpectedEOF},
		{"length says more than sent", []byte{1, 5, 0, 1, 0xff, 0xff, 0xff, 0, 'a'}, 0, io.ErrUnexpectedEOF},
		{"largest record", maxRec, 1, io.EOF},
		{"empty", nil, 0, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, bytes.NewReader(tt.stream))
			require.Len(t, got, tt.records)
			var ve *versionError
			if errors.As(tt.err, &ve) {
				var gv *versionError
				require.ErrorAs(t, err, &gv)
				require.Equal(t, ve.Version, gv.Version)
				return
			}
			require.ErrorIs(t, err, tt.err)
		})
	}
}

// timeoutOnce fails its first read after the given number of bytes, like a
// read deadline, then continues.
type timeoutOnce struct {
	r     io.Reader
	after int
	fired bool
}

var errFakeTimeout = errors.New("fake timeout")

func (r *timeoutOnce) Read(p []byte) (int, error) {
	if !r.fired {
		if r.after == 0 {
			r.fired = true
			return 0, errFakeTimeout
		}
		if len(p) > r.after {
			p = p[:r.after]
		}
		n, err := r.r.Read(p)
		r.after -= n
		return n, err
	}
	return r.r.Read(p)
}

func TestRecordReaderResumesAfterTimeout(t *testing.T) {
	stream := append(rawRecord(typeStdin, 1, []byte("hello"), 3), rawRecord(typeStdin, 1, nil, 0)...)
	for off := 0; off < len(stream); off++ {
		rr := newRecordReader(&timeoutOnce{r: bytes.NewReader(stream), after: off})
		var got []string
		timeouts := 0
		for {
			_, c, err := rr.next()
			if errors.Is(err, errFakeTimeout) {
				timeouts++
				continue
			}
			if err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			got = append(got, string(c))
		}
		require.Equal(t, []string{"hello", ""}, got, "timeout at %d", off)
		require.Equal(t, 1, timeouts)
	}
}

func TestRecordWriterSplitsAndPads(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 9, maxContent - 1, maxContent, maxContent + 1, 3*maxContent + 5} {
		var out bytes.Buffer
		w := newRecordWriter(&out)
		content := bytes.Repeat([]byte{'z'}, size)
		require.NoError(t, w.writeRecord(typeStdout, 0x1234, content))
		records, err := readAll(t, bytes.NewReader(out.Bytes()))
		require.ErrorIs(t, err, io.EOF)
		var joined strings.Builder
		for _, r := range records {
			require.Equal(t, uint16(0x1234), r.h.ID)
			require.Equal(t, typeStdout, r.h.Type)
			require.LessOrEqual(t, len(r.content), maxContent)
			require.Zero(t, (len(r.content)+int(r.h.PaddingLength))%8, "records are 8-byte aligned")
			joined.WriteString(r.content)
		}
		require.Equal(t, string(content), joined.String())
		require.Equal(t, max(1, (size+maxContent-1)/maxContent), len(records), "size %d", size)
	}
}

// countingWriter counts Write calls: every record must be a single Write so a
// mutex around Write is enough to keep records from interleaving.
type countingWriter struct {
	writes int
	bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) { c.writes++; return c.Buffer.Write(p) }

func TestRecordWriterOneWritePerRecord(t *testing.T) {
	var cw countingWriter
	w := newRecordWriter(&cw)
	require.NoError(t, w.writeRecord(typeStdout, 1, make([]byte, 2*maxContent+1)))
	require.Equal(t, 3, cw.writes)
}

func TestEndRequestEncoding(t *testing.T) {
	b := appendEndRequest(nil, 0x0102, 0xdeadbeef, StatusOverloaded)
	require.Equal(t, []byte{1, 3, 1, 2, 0, 8, 0, 0, 0xde, 0xad, 0xbe, 0xef, 2, 0, 0, 0}, b)
	require.Equal(t, []byte{1, 5, 0, 9, 0, 0, 0, 0}, appendEmptyRecord(nil, typeStdin, 9))
}

func TestPairLengthEncodings(t *testing.T) {
	tests := []struct {
		name   string
		raw    []byte
		n, v   string
		errStr string
	}{
		{"short short", []byte("\x01\x01ab"), "a", "b", ""},
		{"short long minimal", append([]byte("\x01\x80\x00\x00\x80a"), bytes.Repeat([]byte{'v'}, 128)...), "a", strings.Repeat("v", 128), ""},
		{"long short non-minimal", []byte("\x80\x00\x00\x01\x01ab"), "a", "b", ""},
		{"long long non-minimal", []byte("\x80\x00\x00\x01\x80\x00\x00\x00a"), "a", "", ""},
		{"empty value", []byte("\x0e\x00CONTENT_LENGTH"), "CONTENT_LENGTH", "", ""},
		{"name beyond remaining bytes", []byte("\x05\x00ab"), "", "", "truncated"},
		{"huge 4-byte lengths do not overflow", []byte("\xff\xff\xff\xff\xff\xff\xff\xffab"), "", "", "name length"},
		{"length cut inside 4 bytes", []byte("\x80\x00"), "", "", "truncated"},
	}
	lim := pairLimits{MaxName: 1024, MaxValue: 1 << 20, MaxPairs: 10}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var names, values []string
			err := decodePairs(tt.raw, lim, func(n, v []byte) error {
				names = append(names, string(n))
				values = append(values, string(v))
				return nil
			})
			if tt.errStr != "" {
				require.ErrorContains(t, err, tt.errStr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, []string{tt.n}, names)
			require.Equal(t, []string{tt.v}, values)
		})
	}
}

func encodePairs(pairs ...[2]string) []byte {
	var b []byte
	for _, p := range pairs {
		b = appendPair(b, p[0], p[1])
	}
	return b
}

func TestPairEncodeDecodeRoundTrip(t *testing.T) {
	in := [][2]string{{"A", "1"}, {"LONG_VALUE", strings.Repeat("x", 300)}, {strings.Repeat("N", 200), ""}, {"E", ""}}
	b := encodePairs(in...)
	size := 0
	for _, p := range in {
		size += pairSize(p[0], p[1])
	}
	require.Equal(t, size, len(b))
	var got [][2]string
	require.NoError(t, decodePairs(b, pairLimits{}, func(n, v []byte) error {
		got = append(got, [2]string{string(n), string(v)})
		return nil
	}))
	require.Equal(t, in, got)
}

func TestPairDecoderStraddlesAtEveryOffset(t *testing.T) {
	in := [][2]string{{"SCRIPT_NAME", "/x"}, {"HTTP_COOKIE", strings.Repeat("c", 200)}, {"Q", ""}, {strings.Repeat("n", 130), "v"}}
	b := encodePairs(in...)
	for a := 0; a <= len(b); a++ {
		for c := a; c <= len(b); c += 7 {
			d := pairDecoder{limits: pairLimits{MaxName: 200, MaxValue: 300, MaxPairs: 10}}
			var got [][2]string
			emit := func(n, v []byte) error { got = append(got, [2]string{string(n), string(v)}); return nil }
			require.NoError(t, d.feed(b[:a], emit))
			require.NoError(t, d.feed(b[a:c], emit))
			require.NoError(t, d.feed(b[c:], emit))
			require.NoError(t, d.finish())
			require.Equal(t, in, got, "split at %d,%d", a, c)
		}
	}
}

func TestPairDecoderLimitsBeforeAllocating(t *testing.T) {
	tests := []struct {
		name  string
		first []byte // fed alone: the lengths arrive before the bytes they announce
		lim   pairLimits
		what  string
	}{
		{"name length", []byte("\x80\x01\x00\x00\x01"), pairLimits{MaxName: 1000, MaxValue: 1000}, "name length"},
		{"value length", []byte("\x01\xff\xff\xff\xff"), pairLimits{MaxName: 1000, MaxValue: 1000}, "value length"},
		{"pair count", encodePairs([2]string{"a", "1"}, [2]string{"b", "2"}, [2]string{"c", "3"}), pairLimits{MaxPairs: 2}, "pair count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := pairDecoder{limits: tt.lim}
			err := d.feed(tt.first, func(n, v []byte) error { return nil })
			var le *pairLimitError
			require.ErrorAs(t, err, &le)
			require.Equal(t, tt.what, le.What)
			require.Less(t, cap(d.pending), 64, "nothing sized by the declared length was allocated")
		})
	}
}

func TestPairDecoderTruncatedAtEnd(t *testing.T) {
	d := pairDecoder{}
	require.NoError(t, d.feed([]byte("\x04\x04NAM"), func(n, v []byte) error { return nil }))
	require.ErrorIs(t, d.finish(), errPairTruncated)
}

func BenchmarkRecordRead(b *testing.B) {
	rec := rawRecord(typeStdin, 1, make([]byte, 4096), 0)
	stream := bytes.Repeat(rec, 64)
	src := bytes.NewReader(stream)
	rr := newRecordReader(src)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		_, _, err := rr.next()
		if err == io.EOF {
			src.Reset(stream)
			rr.r, rr.w, rr.consume, rr.err = 0, 0, 0, nil
			_, _, err = rr.next()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordWrite(b *testing.B) {
	w := newRecordWriter(io.Discard)
	content := make([]byte, 4096)
	b.SetBytes(int64(len(content) + headerLen))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.writeRecord(typeStdout, 1, content); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParamsDecode(b *testing.B) {
	params := encodePairs([2]string{"SCRIPT_FILENAME", "/srv/www/index.php"}, [2]string{"QUERY_STRING", "a=1&b=2"},
		[2]string{"REQUEST_METHOD", "GET"}, [2]string{"CONTENT_TYPE", ""}, [2]string{"CONTENT_LENGTH", ""},
		[2]string{"HTTP_USER_AGENT", strings.Repeat("u", 120)}, [2]string{"HTTP_COOKIE", strings.Repeat("c", 200)})
	d := pairDecoder{limits: pairLimits{MaxName: 4096, MaxValue: 65536, MaxPairs: 1000}}
	emit := func(n, v []byte) error { return nil }
	b.SetBytes(int64(len(params)))
	b.ReportAllocs()
	for b.Loop() {
		d.pairs = 0
		if err := d.feed(params[:50], emit); err != nil {
			b.Fatal(err)
		}
		if err := d.feed(params[50:], emit); err != nil {
			b.Fatal(err)
		}
	}
}
