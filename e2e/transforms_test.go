package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"strconv"
	"strings"
)

// envTransform makes the test binary a transform: the bridge's
// configuration runs it with E2E_TRANSFORM=<mode>.
const envTransform = "E2E_TRANSFORM"

// Modes the test binary serves as a pooled transform.
const (
	// modeAuthz decides AUTHORIZER requests from the params Apache's
	// mod_authnz_fcgi sends (passed as X-Bridge-Param-*): the password
	// must be "open-sesame" (else 401) and the user "alice" (else 403).
	// Allowed requests get a Variable-E2E-User header that Apache turns
	// into a variable.
	modeAuthz = "authz"
)

// transformCommand is the configuration's command line for mode.
func transformCommand(mode string) string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("command = [%q]\nenv = { %s = %q }\n", exe, envTransform, mode)
}

func runTransform(mode string) int {
	br := bufio.NewReader(os.Stdin)
	bw := bufio.NewWriter(os.Stdout)
	for {
		hdr, err := readMessage(br)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e transform %s: %v\n", mode, err)
			return 2
		}
		switch mode {
		case modeAuthz:
			authz(bw, hdr)
		default:
			fmt.Fprintf(os.Stderr, "e2e transform: unknown mode %q\n", mode)
			return 2
		}
		if err := bw.Flush(); err != nil {
			return 0
		}
	}
}

func authz(w io.Writer, h textproto.MIMEHeader) {
	param := func(name string) string { return h.Get("X-Bridge-Param-" + name) }
	role, user, pass := param("FCGI_APACHE_ROLE"), param("REMOTE_USER"), param("REMOTE_PASSWD")
	fmt.Fprintf(os.Stderr, "authz: role=%q user=%q password given=%v\n", role, user, pass != "")
	var allow bool
	switch role {
	case "AUTHENTICATOR":
		allow = pass == "open-sesame"
	case "AUTHORIZER", "ACCESS_CHECKER":
		allow = user == "alice"
	default:
		// mod_authnz_fcgi's "authnz" provider asks once, with the
		// password, and names no phase: both checks at once.
		allow = pass == "open-sesame" && user == "alice"
	}
	if allow {
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nVariable-E2E-User: %s\r\nContent-Length: 0\r\n\r\n", user)
		return
	}
	status := "403 Forbidden"
	if pass != "open-sesame" && role != "AUTHORIZER" && role != "ACCESS_CHECKER" {
		status = "401 Unauthorized"
	}
	fmt.Fprintf(w, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\ndenied\n", status)
}

// readMessage reads one pipe-protocol message and discards its body.
func readMessage(br *bufio.Reader) (textproto.MIMEHeader, error) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "HTTP/1.") {
		return nil, fmt.Errorf("status line %q", line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("content-length %q", cl)
		}
		_, err = io.CopyN(io.Discard, br, n)
		return h, err
	}
	if strings.EqualFold(h.Get("Transfer-Encoding"), "chunked") {
		for {
			sz, err := tp.ReadLine()
			if err != nil {
				return nil, err
			}
			sz, _, _ = strings.Cut(sz, ";")
			n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("chunk size %q", sz)
			}
			if n == 0 {
				// Trailers, up to the blank line.
				if _, err := tp.ReadMIMEHeader(); err != nil {
					return nil, err
				}
				return h, nil
			}
			if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}
