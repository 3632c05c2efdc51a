package fcgi

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// TestClientTinyRecordsHoldBoundedMemory: an application that answers with
// one-byte STDOUT records to a caller that does not read must not make the
// client hold more than ResponseBuffer plus one buffer's worth of memory,
// counted as the capacity of what it holds, not the payload.
func TestClientTinyRecordsHoldBoundedMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			limit   = 4 << 10
			records = 200_000
		)
		clientEnd, appEnd := net.Pipe()
		c := &Client{
			Network: "pipe", Address: "app",
			ResponseBuffer: limit,
			Dial: func(context.Context, string, string) (net.Conn, error) {
				return clientEnd, nil
			},
		}
		defer c.Close()

		appDone := make(chan error, 1)
		go func() { appDone <- tinyRecordApp(appEnd, records) }()

		resp, err := c.Do(t.Context(), &ClientRequest{})
		require.NoError(t, err)
		st := resp.Stdout.(*clientStream)

		// Every goroutine now waits: the application in a write, the
		// client's read loop for the caller to read.
		synctest.Wait()
		held, payload := clientStreamHeld(st)
		t.Logf("held %d bytes of memory for %d bytes of payload", held, payload)
		require.LessOrEqual(t, held, limit+clientChunkSize, "memory held for a caller that does not read")
		require.Positive(t, payload)

		// Read slowly, a little at a time, checking the bound each time.
		var got bytes.Buffer
		buf := make([]byte, 100)
		for {
			n, err := resp.Stdout.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			synctest.Wait()
			held, _ := clientStreamHeld(st)
			require.LessOrEqual(t, held, limit+clientChunkSize)
		}
		require.Equal(t, records, got.Len())
		require.Equal(t, bytes.Repeat([]byte{'x'}, records), got.Bytes())
		require.NoError(t, resp.Stdout.Close())
		require.NoError(t, <-appDone)
		c.Close()
		appEnd.Close()
	})
}

// tinyRecordApp reads one request from nc and answers it with n one-byte
// STDOUT records.
func tinyRecordApp(nc net.Conn, n int) error {
	rr := newRecordReader(nc)
	for {
		h, content, err := rr.next()
		if err != nil {
			return err
		}
		if h.Type == typeStdin && len(content) == 0 {
			break
		}
	}
	var batch []byte
	for i := 0; i < n; i++ {
		batch = appendRecord(batch, typeStdout, 1, []byte{'x'})
		if len(batch) >= 32<<10 || i == n-1 {
			if _, err := nc.Write(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	batch = appendEmptyRecord(batch, typeStdout, 1)
	batch = appendEndRequest(batch, 1, 0, StatusRequestComplete)
	_, err := nc.Write(batch)
	return err
}

// clientStreamHeld returns the capacity of the buffers st holds and the
// payload bytes in them.
func clientStreamHeld(st *clientStream) (held, payload int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, c := range st.chunks {
		held += cap(c.b)
	}
	return held, st.buffered
}
