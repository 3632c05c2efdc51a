package fcgi

// The record layer: FastCGI 1.0 framing shared by the server and the client of
// this package. Nothing here knows about requests or connections; it turns bytes
// into records and records into bytes without reflection and, in steady state,
// without allocating.
//
// What the rest of the package uses (all unexported, same package):
//
//   recordHeader, parseHeader(b), recordHeader.put(b)
//       the 8-byte header by byte indexing.
//   newRecordReader(r io.Reader) *recordReader; (*recordReader).next() (recordHeader, []byte, error)
//       reads one record at a time into a pooled buffer: a small one first, a big one
//       (a whole record of maximum size) once more has arrived than the small one
//       holds, given back by release when nothing is buffered. The returned content aliases the
//       reader's buffer and stays valid only until the next call to next. Any
//       padding 0-255 is skipped, reserved is ignored, a version other than 1 is a
//       *versionError, a stream that ends inside a record is io.ErrUnexpectedEOF. A
//       timeout during next consumes nothing: next can be called again after the
//       deadline is moved and resumes where it stopped.
//   recordBuf: an outgoing record assembled in place (content appended after room
//       for the header), then finish() frames it for a single Write without copying.
//   appendRecord(dst, t, id, content), appendEmptyRecord, appendEndRequest
//       small records appended to a buffer (management replies, stream ends).
//   appendPair(dst, name, value), appendPairLength(dst, n)
//       name-value encoding with 1- or 4-byte lengths.
//   pairDecoder{limits}.feed(p, emit) / .finish()
//       name-value decoding that resumes when a pair straddles records and checks
//       each declared length against the limits before allocating anything.
//   decodePairs(b, limits, emit): one self-contained buffer (GET_VALUES).

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Record types, from section 8 of the specification.
type recType uint8

const (
	typeBeginRequest    recType = 1
	typeAbortRequest    recType = 2
	typeEndRequest      recType = 3
	typeParams          recType = 4
	typeStdin           recType = 5
	typeStdout          recType = 6
	typeStderr          recType = 7
	typeData            recType = 8
	typeGetValues       recType = 9
	typeGetValuesResult recType = 10
	typeUnknownType     recType = 11
)

var typeNames = [...]string{
	typeBeginRequest:    "BEGIN_REQUEST",
	typeAbortRequest:    "ABORT_REQUEST",
	typeEndRequest:      "END_REQUEST",
	typeParams:          "PARAMS",
	typeStdin:           "STDIN",
	typeStdout:          "STDOUT",
	typeStderr:          "STDERR",
	typeData:            "DATA",
	typeGetValues:       "GET_VALUES",
	typeGetValuesResult: "GET_VALUES_RESULT",
	typeUnknownType:     "UNKNOWN_TYPE",
}

func (t recType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(%d)", uint8(t))
}

const (
	version1 = 1 // FCGI_VERSION_1

	headerLen      = 8     // FCGI_HEADER_LEN
	maxContent     = 65535 // the content length field is 16 bits
	maxPadding     = 255   // the padding length field is 8 bits
	maxRecordBytes = headerLen + maxContent + maxPadding

	nullRequestID = 0 // FCGI_NULL_REQUEST_ID: management records

	flagKeepConn = 1 // FCGI_KEEP_CONN in FCGI_BeginRequestBody.flags

	beginBodyLen   = 8 // FCGI_BeginRequestBody
	endBodyLen     = 8 // FCGI_EndRequestBody
	unknownBodyLen = 8 // FCGI_UnknownTypeBody
)

// Roles, from FCGI_BeginRequestBody.role.
const (
	roleResponder  = 1 // FCGI_RESPONDER
	roleAuthorizer = 2 // FCGI_AUTHORIZER
	roleFilter     = 3 // FCGI_FILTER
)

// Role is the role a web server asks the application to play for one request.
type Role uint16

const (
	RoleResponder  Role = roleResponder
	RoleAuthorizer Role = roleAuthorizer
	RoleFilter     Role = roleFilter
)

func (r Role) String() string {
	switch r {
	case RoleResponder:
		return "RESPONDER"
	case RoleAuthorizer:
		return "AUTHORIZER"
	case RoleFilter:
		return "FILTER"
	}
	return fmt.Sprintf("ROLE(%d)", uint16(r))
}

// Protocol statuses of FCGI_EndRequestBody.protocolStatus. Exported because the
// client reports them in Response.ProtocolStatus.
const (
	StatusRequestComplete uint8 = 0 // FCGI_REQUEST_COMPLETE
	StatusCantMpxConn     uint8 = 1 // FCGI_CANT_MPX_CONN
	StatusOverloaded      uint8 = 2 // FCGI_OVERLOADED
	StatusUnknownRole     uint8 = 3 // FCGI_UNKNOWN_ROLE
)

// Names a FCGI_GET_VALUES query may ask for.
const (
	ValueMaxConns  = "FCGI_MAX_CONNS"
	ValueMaxReqs   = "FCGI_MAX_REQS"
	ValueMpxsConns = "FCGI_MPXS_CONNS"
)

// recordHeader is FCGI_Header without the reserved byte.
type recordHeader struct {
	Version       uint8
	Type          recType
	ID            uint16
	ContentLength uint16
	PaddingLength uint8
}

// parseHeader decodes the first headerLen bytes of b.
func parseHeader(b []byte) recordHeader {
	_ = b[headerLen-1]
	return recordHeader{
		Version:       b[0],
		Type:          recType(b[1]),
		ID:            uint16(b[2])<<8 | uint16(b[3]),
		ContentLength: uint16(b[4])<<8 | uint16(b[5]),
		PaddingLength: b[6],
	}
}

// put encodes h into the first headerLen bytes of b, reserved as zero.
func (h recordHeader) put(b []byte) {
	_ = b[headerLen-1]
	b[0] = h.Version
	b[1] = byte(h.Type)
	b[2] = byte(h.ID >> 8)
	b[3] = byte(h.ID)
	b[4] = byte(h.ContentLength >> 8)
	b[5] = byte(h.ContentLength)
	b[6] = h.PaddingLength
	b[7] = 0
}

// versionError reports a record whose version is not 1. Its lengths cannot be
// trusted, so the connection has to be given up.
type versionError struct{ Version uint8 }

func (e *versionError) Error() string {
	return fmt.Sprintf("fcgi: record version %d, want 1", e.Version)
}

// readerBufSize holds a whole record of maximum size, so that next can hand
// out content without copying.
const readerBufSize = 64<<10 + 512

// smallReadBufSize is the buffer a reader starts with: a typical web server
// request (BEGIN_REQUEST, params of a few headers, a small body) fits, and a
// peer that sends part of a record and stalls costs no more than this.
const smallReadBufSize = 4 << 10

// Read buffers are pooled: a reader takes a small one at its first read,
// trades it for a big one once more bytes than it holds have arrived, and
// gives its buffer back whenever nothing is buffered (see release).
var (
	smallReadBufPool = sync.Pool{New: func() any { return new([smallReadBufSize]byte) }}
	bigReadBufPool   = sync.Pool{New: func() any { return new([readerBufSize]byte) }}
)

type recordReader struct {
	src     io.Reader
	buf     []byte // a pooled buffer, nil while released
	r, w    int    // buf[r:w] is read and not consumed
	consume int    // bytes of the previous record still to discard
	err     error  // a read error kept until the buffered bytes run short
}

// newRecordReader reads records from r. It takes no buffer until the first
// read.
func newRecordReader(r io.Reader) *recordReader {
	return &recordReader{src: r}
}

// next returns the next record. content aliases the reader's buffer until the
// next call (or release). Nothing of a record is consumed until all of it has
// arrived, so an error (a read deadline, say) leaves the reader ready to try
// again.
func (rr *recordReader) next() (recordHeader, []byte, error) {
	rr.discard()
	if err := rr.fill(headerLen); err != nil {
		if err == io.EOF && rr.w > rr.r {
			err = io.ErrUnexpectedEOF
		}
		return recordHeader{}, nil, err
	}
	h := parseHeader(rr.buf[rr.r:rr.w])
	if h.Version != version1 {
		return h, nil, &versionError{h.Version}
	}
	total := headerLen + int(h.ContentLength) + int(h.PaddingLength)
	if err := rr.fill(total); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	rr.consume = total
	return h, rr.buf[rr.r+headerLen : rr.r+headerLen+int(h.ContentLength)], nil
}

func (rr *recordReader) discard() {
	rr.r += rr.consume
	rr.consume = 0
	if rr.r == rr.w {
		rr.r, rr.w = 0, 0
	}
}

// fill reads until at least need bytes are buffered, or returns the error
// that stopped it (once; a later call reads again).
func (rr *recordReader) fill(need int) error {
	for empty := 0; rr.w-rr.r < need; {
		if err := rr.takeErr(); err != nil {
			return err
		}
		rr.makeRoom()
		n, err := rr.src.Read(rr.buf[rr.w:])
		rr.w += n
		rr.err = err
		if n == 0 && err == nil {
			if empty++; empty == 100 {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// makeRoom makes sure there is free space after the buffered bytes: it takes
// a buffer, moves what is buffered to the front, or trades a full small
// buffer for a big one. It may move the buffered bytes.
func (rr *recordReader) makeRoom() {
	switch {
	case rr.buf == nil:
		rr.buf = smallReadBufPool.Get().(*[smallReadBufSize]byte)[:]
	case rr.w < len(rr.buf):
	case rr.r > 0:
		rr.w = copy(rr.buf, rr.buf[rr.r:rr.w])
		rr.r = 0
	case len(rr.buf) == smallReadBufSize:
		big := bigReadBufPool.Get().(*[readerBufSize]byte)
		rr.w = copy(big[:], rr.buf[rr.r:rr.w])
		rr.r = 0
		rr.putBuf()
		rr.buf = big[:]
	}
}

func (rr *recordReader) putBuf() {
	switch len(rr.buf) {
	case smallReadBufSize:
		smallReadBufPool.Put((*[smallReadBufSize]byte)(rr.buf))
	case readerBufSize:
		bigReadBufPool.Put((*[readerBufSize]byte)(rr.buf))
	}
	rr.buf = nil
}

func (rr *recordReader) takeErr() error {
	err := rr.err
	rr.err = nil
	return err
}

// readMore does one read into the free space after what is buffered, without
// consuming anything. It may move the buffered bytes (and so the content
// next returned last). It returns the read's error only when nothing came.
func (rr *recordReader) readMore() error {
	if err := rr.takeErr(); err != nil {
		return err
	}
	rr.makeRoom()
	n, err := rr.src.Read(rr.buf[rr.w:])
	rr.w += n
	if n > 0 {
		rr.err = err
		return nil
	}
	return err
}

// buffered returns what has been read and not consumed, starting with the
// record next returned last (if any).
func (rr *recordReader) buffered() []byte {
	if rr.buf == nil {
		return nil
	}
	return rr.buf[rr.r:rr.w]
}

// complete reports whether a whole record (or a header next rejects) is
// buffered after the record next returned last.
func (rr *recordReader) complete() bool {
	b := rr.buffered()[rr.consume:]
	if len(b) < headerLen {
		return false
	}
	h := parseHeader(b)
	return h.Version != version1 || len(b) >= headerLen+int(h.ContentLength)+int(h.PaddingLength)
}

// full reports whether the reader holds as much as it can: a whole big
// buffer unconsumed.
func (rr *recordReader) full() bool { return rr.w-rr.r == readerBufSize }

// release gives the buffer back to the pool when, the record next returned
// last being consumed, nothing is buffered; it reports whether the reader
// now holds no buffer. A released reader takes a buffer again at its next
// read.
func (rr *recordReader) release() bool {
	rr.discard()
	if rr.w > rr.r || rr.err != nil {
		return rr.buf == nil
	}
	if rr.buf != nil {
		rr.putBuf()
	}
	return true
}

// zeroPadding is the source of padding bytes, so padding is never allocated.
var zeroPadding [8]byte

// paddingFor returns the padding that aligns a record to 8 bytes, as the
// specification recommends.
func paddingFor(contentLen int) int { return -contentLen & 7 }

// recordBufCap leaves room after a full record for a few empty records
// (end of STDOUT, end of STDERR, END_REQUEST), so a response can finish with
// the same Write that carries its last bytes.
const recordBufCap = headerLen + maxContent + 7 + 4*headerLen + endBodyLen

// recordBuf assembles one outgoing record in place: content is appended after
// room for the header so the record goes out in one Write without another copy.
type recordBuf struct {
	b []byte // b[:headerLen] is the header slot; b[headerLen:] the content so far
}

func newRecordBuf() *recordBuf {
	return &recordBuf{b: make([]byte, headerLen, recordBufCap)}
}

func (r *recordBuf) reset()       { r.b = r.b[:headerLen] }
func (r *recordBuf) len() int     { return len(r.b) - headerLen }
func (r *recordBuf) free() int    { return maxContent - r.len() }
func (r *recordBuf) tail() []byte { return r.b[len(r.b) : headerLen+maxContent] }

// grow extends the content by n bytes already written into tail().
func (r *recordBuf) grow(n int) { r.b = r.b[:len(r.b)+n] }

// finish frames the content as a record of type t for id and returns the
// bytes to write, valid until the next change to r.
func (r *recordBuf) finish(t recType, id uint16) []byte {
	n := r.len()
	pad := paddingFor(n)
	recordHeader{Version: version1, Type: t, ID: id, ContentLength: uint16(n), PaddingLength: uint8(pad)}.put(r.b)
	r.b = append(r.b, zeroPadding[:pad]...)
	return r.b
}

// appendEmptyRecord appends a content-less record (end of a stream).
func appendEmptyRecord(dst []byte, t recType, id uint16) []byte {
	var h [headerLen]byte
	recordHeader{Version: version1, Type: t, ID: id}.put(h[:])
	return append(dst, h[:]...)
}

// appendRecord appends one record holding content (at most maxContent bytes),
// padded to 8 bytes.
func appendRecord(dst []byte, t recType, id uint16, content []byte) []byte {
	var h [headerLen]byte
	pad := paddingFor(len(content))
	recordHeader{Version: version1, Type: t, ID: id, ContentLength: uint16(len(content)), PaddingLength: uint8(pad)}.put(h[:])
	dst = append(dst, h[:]...)
	dst = append(dst, content...)
	return append(dst, zeroPadding[:pad]...)
}

// appendEndRequest appends an END_REQUEST record.
func appendEndRequest(dst []byte, id uint16, appStatus uint32, protocolStatus uint8) []byte {
	var b [headerLen + endBodyLen]byte
	recordHeader{Version: version1, Type: typeEndRequest, ID: id, ContentLength: endBodyLen}.put(b[:])
	b[8] = byte(appStatus >> 24)
	b[9] = byte(appStatus >> 16)
	b[10] = byte(appStatus >> 8)
	b[11] = byte(appStatus)
	b[12] = protocolStatus
	return append(dst, b[:]...)
}

// Name-value pairs.

// maxPairLength is the largest length a 4-byte length can carry.
const maxPairLength = 1<<31 - 1

// appendPairLength appends n in the short (1-byte) form when it fits and the
// long (4-byte) form otherwise.
func appendPairLength(dst []byte, n int) []byte {
	if n < 0x80 {
		return append(dst, byte(n))
	}
	return append(dst, byte(n>>24)|0x80, byte(n>>16), byte(n>>8), byte(n))
}

func appendPair(dst []byte, name, value string) []byte {
	dst = appendPairLength(dst, len(name))
	dst = appendPairLength(dst, len(value))
	dst = append(dst, name...)
	return append(dst, value...)
}

// pairSize is the encoded size of a pair.
func pairSize(name, value string) int {
	size := len(name) + len(value) + 2
	if len(name) >= 0x80 {
		size += 3
	}
	if len(value) >= 0x80 {
		size += 3
	}
	return size
}

// readPairLength decodes one length at the start of b. size is 0 when b is
// too short to hold it. Non-minimal 4-byte encodings of small lengths are
// accepted, as the specification allows them.
func readPairLength(b []byte) (n uint32, size int) {
	if len(b) == 0 {
		return 0, 0
	}
	if b[0]&0x80 == 0 {
		return uint32(b[0]), 1
	}
	if len(b) < 4 {
		return 0, 0
	}
	return uint32(b[0]&0x7f)<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), 4
}

// pairLimits bounds what a decoder accepts. Zero fields mean no limit, which
// only internal callers with their own bound should use.
type pairLimits struct {
	MaxName  int // bytes of one name
	MaxValue int // bytes of one value
	MaxPairs int // number of pairs
}

// errPairTruncated reports a name-value stream that ends inside a pair.
var errPairTruncated = errors.New("fcgi: name-value pair truncated")

// pairLimitError says which limit a pair broke.
type pairLimitError struct {
	What        string // "name length", "value length", "pair count"
	Size, Limit int64
}

func (e *pairLimitError) Error() string {
	return fmt.Sprintf("fcgi: params %s %d exceeds the limit of %d", e.What, e.Size, e.Limit)
}

// checkPair validates declared lengths before anything is allocated or copied.
func (l *pairLimits) checkPair(nameLen, valueLen uint32, pairs int) error {
	if l.MaxName > 0 && int64(nameLen) > int64(l.MaxName) {
		return &pairLimitError{"name length", int64(nameLen), int64(l.MaxName)}
	}
	if l.MaxValue > 0 && int64(valueLen) > int64(l.MaxValue) {
		return &pairLimitError{"value length", int64(valueLen), int64(l.MaxValue)}
	}
	if l.MaxPairs > 0 && pairs >= l.MaxPairs {
		return &pairLimitError{"pair count", int64(pairs) + 1, int64(l.MaxPairs)}
	}
	return nil
}

// splitPair decodes the pair at the start of b. complete is false when b holds
// only part of it; err is set as soon as the lengths are known to break lim.
func splitPair(b []byte, lim *pairLimits, pairs int) (name, value []byte, size int, complete bool, err error) {
	nl, s1 := readPairLength(b)
	if s1 == 0 {
		return nil, nil, 0, false, nil
	}
	vl, s2 := readPairLength(b[s1:])
	if s2 == 0 {
		return nil, nil, 0, false, nil
	}
	if err := lim.checkPair(nl, vl, pairs); err != nil {
		return nil, nil, 0, false, err
	}
	hdr := s1 + s2
	// uint64 arithmetic: two 31-bit lengths cannot overflow it (CVE-2025-23016).
	need := uint64(hdr) + uint64(nl) + uint64(vl)
	if uint64(len(b)) < need {
		return nil, nil, 0, false, nil
	}
	name = b[hdr : hdr+int(nl)]
	value = b[hdr+int(nl) : int(need)]
	return name, value, int(need), true, nil
}

// decodePairs decodes a buffer that must hold whole pairs only (GET_VALUES,
// GET_VALUES_RESULT). name and value alias b.
func decodePairs(b []byte, lim pairLimits, emit func(name, value []byte) error) error {
	pairs := 0
	for len(b) > 0 {
		name, value, size, complete, err := splitPair(b, &lim, pairs)
		if err != nil {
			return err
		}
		if !complete {
			return errPairTruncated
		}
		if err := emit(name, value); err != nil {
			return err
		}
		pairs++
		b = b[size:]
	}
	return nil
}

// pairDecoder decodes a PARAMS stream record by record. A pair that straddles
// records is kept in pending, which never holds more than one pair that passed
// the limits plus one record.
type pairDecoder struct {
	limits  pairLimits
	pending []byte
	pairs   int
}

// feed decodes the pairs completed by p. name and value passed to emit alias
// internal buffers and are valid only during the call.
func (d *pairDecoder) feed(p []byte, emit func(name, value []byte) error) error {
	if len(d.pending) > 0 {
		d.pending = append(d.pending, p...)
		rest, err := d.decode(d.pending, emit)
		if err != nil {
			return err
		}
		// Move the unfinished tail to the front; capacity stays for reuse.
		d.pending = d.pending[:copy(d.pending, rest)]
		return nil
	}
	rest, err := d.decode(p, emit)
	if err != nil {
		return err
	}
	d.pending = append(d.pending, rest...)
	return nil
}

func (d *pairDecoder) decode(b []byte, emit func(name, value []byte) error) ([]byte, error) {
	for len(b) > 0 {
		name, value, size, complete, err := splitPair(b, &d.limits, d.pairs)
		if err != nil {
			return nil, err
		}
		if !complete {
			return b, nil
		}
		if err := emit(name, value); err != nil {
			return nil, err
		}
		d.pairs++
		b = b[size:]
	}
	return b, nil
}

// finish reports an error if the stream ended inside a pair.
func (d *pairDecoder) finish() error {
	if len(d.pending) > 0 {
		return errPairTruncated
	}
	return nil
}
