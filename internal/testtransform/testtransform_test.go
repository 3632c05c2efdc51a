package testtransform

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	Run()
	os.Exit(m.Run())
}

func TestModesInProcess(t *testing.T) {
	const sized = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Test-Status: 404 Gone\r\nContent-Length: 5\r\n\r\nhello"
	const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
	tests := []struct {
		mode, in, want string
		code           int
	}{
		{Cat, sized + chunked, sized + chunked, 0},
		{Upper, sized, strings.Replace(sized, "hello", "HELLO", 1), 0},
		{Upper, chunked, strings.Replace(strings.Replace(chunked, "abc", "ABC", 1), "de", "DE", 1), 0},
		{Status, sized, "HTTP/1.1 404 Gone\r\nContent-Length: 5\r\n\r\nhello", 0},
		{EchoHeaders, "HTTP/1.1 200 OK\r\nA: 1\r\nA: 2\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n\r\nHTTP/1.1 200 OK\nA: 1\nA: 2\n", 0},
		{ConnClose, sized, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello", 0},
		{CrashAtStart, sized, "", 1},
		{CrashAfterRead, sized, "", 3},
		{Garbage, sized, "this is not HTTP at all\r\n\x00\x01\x02\r\n\r\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := serve(tt.mode, strings.NewReader(tt.in), &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, tt.code, errOut.String())
			}
			if out.String() != tt.want {
				t.Fatalf("got %q\nwant %q", out.String(), tt.want)
			}
		})
	}
}

func TestReExec(t *testing.T) {
	cmd := exec.Command(Command()[0])
	cmd.Env = []string{Env(Upper)}
	cmd.Stdin = strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}
