package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// fileSource serves files under a root: the FILTER role for web servers that
// cannot send it.
type fileSource struct {
	name  string
	root  *os.Root
	fast  *beneath // nil: every lookup goes through root
	index string
}

// NewFile opens the upstream's root. Every lookup then goes through os.Root,
// which resolves each path component beneath the root's directory handle:
// "..", absolute paths and symlinks leading out are refused by the kernel
// walk itself, with no window between checking a path and opening it.
func NewFile(u *conf.Upstream) (Source, error) {
	root, err := os.OpenRoot(u.Root)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: open root: %w", u.Name, err)
	}
	return &fileSource{name: u.Name, root: root, fast: newBeneath(root), index: u.Index}, nil
}

func (s *fileSource) Name() string { return s.name }
func (s *fileSource) Close() error {
	if s.fast != nil {
		s.fast.close()
	}
	return s.root.Close()
}

// filePath picks the requested path: SCRIPT_NAME+PATH_INFO (Apache,
// lighttpd), else DOCUMENT_URI (nginx), else the decoded path of the
// request's URI (t.Path).
func filePath(params map[string]string, t *Target) string {
	if p := params["SCRIPT_NAME"] + params["PATH_INFO"]; p != "" {
		return p
	}
	if p := params["DOCUMENT_URI"]; p != "" {
		return p
	}
	return t.Path
}

func (s *fileSource) Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	if r.Stdin != nil {
		// A GET carries no body; whatever came is not used.
		if _, err := io.Copy(io.Discard, r.Stdin); err != nil {
			return nil, fmt.Errorf("source %q: read stdin: %w", s.name, err)
		}
	}
	t := r.target()
	method := t.Method
	if method != http.MethodGet && method != http.MethodHead {
		m := plainMessage(http.StatusMethodNotAllowed, "method not allowed\n")
		m.Header.Add("Allow", "GET, HEAD")
		return m, nil
	}
	reqPath := filePath(r.Params, &t)
	for _, seg := range strings.Split(reqPath, "/") {
		// ".." never; hidden files (.git, .env, .htpasswd) are not content
		// either, except .well-known, which exists to be served.
		if seg == ".." || (strings.HasPrefix(seg, ".") && seg != "." && seg != ".well-known") {
			return plainMessage(http.StatusForbidden, "forbidden\n"), nil
		}
	}
	name := strings.TrimPrefix(path.Clean("/"+reqPath), "/")
	if name == "" {
		name = "."
	}
	f, st, status := s.open(name)
	if status != 0 {
		return plainMessage(status, http.StatusText(status)+"\n"), nil
	}
	if st.IsDir() {
		f.Close()
		if s.index == "" {
			return plainMessage(http.StatusForbidden, "forbidden\n"), nil
		}
		f, st, status = s.open(path.Join(name, s.index))
		if status != 0 {
			return plainMessage(status, http.StatusText(status)+"\n"), nil
		}
		name = path.Join(name, s.index)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return plainMessage(http.StatusForbidden, "forbidden\n"), nil
	}

	mod := st.ModTime().UTC().Truncate(time.Second)
	m := &httpmsg.Message{Status: http.StatusOK, Length: st.Size()}
	m.Header.Add("Last-Modified", mod.Format(http.TimeFormat))
	if ims := r.Params["HTTP_IF_MODIFIED_SINCE"]; ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.After(t) {
			f.Close()
			m.Status, m.Length = http.StatusNotModified, -1
			return m, nil
		}
	}
	ct := mime.TypeByExtension(path.Ext(name))
	var body io.Reader = f
	if ct == "" {
		// Sniff the first bytes, as web servers do for unknown extensions,
		// without reading the file twice.
		br := bufio.NewReaderSize(f, 512)
		head, _ := br.Peek(512)
		ct = http.DetectContentType(head)
		body = br
	}
	m.Header.Add("Content-Type", ct)
	if method == http.MethodHead {
		f.Close()
		return m, nil
	}
	m.Body = &fileBody{Reader: body, f: f}
	return m, nil
}

// open opens name beneath the root; status is 403 or 404 when it cannot be
// served, 0 on success. On Linux it takes one openat2 and one fstat
// (beneath, file_linux.go); os.Root serves where openat2 cannot.
//
// With os.Root, O_NONBLOCK changes nothing for reading a regular file or a directory, but
// it saves four fcntl calls per request: the file is opened in the mode the
// runtime's poller asks for, so it is not switched to non-blocking and back
// around the poller's (refused) registration. It also makes opening a FIFO
// under the root return at once, to be refused as not a regular file,
// instead of blocking the request until some writer opens it.
func (s *fileSource) open(name string) (io.ReadCloser, fs.FileInfo, int) {
	if s.fast != nil {
		f, st, err := s.fast.open(name)
		if err != nil {
			return nil, nil, openStatus(err)
		}
		return f, st, 0
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, openStatus(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, http.StatusForbidden
	}
	return f, st, 0
}

// openStatus is the answer to a file that cannot be opened.
func openStatus(err error) int {
	if errors.Is(err, fs.ErrNotExist) {
		return http.StatusNotFound
	}
	// Escapes (symlinks out of the root), permissions, loops.
	return http.StatusForbidden
}

// fileBody reads through a buffered reader and closes the file.
type fileBody struct {
	io.Reader
	f io.Closer
}

func (b *fileBody) Close() error { return b.f.Close() }

// plainMessage is a short text answer the source makes itself (403, 404, 405).
func plainMessage(status int, text string) *httpmsg.Message {
	m := &httpmsg.Message{Status: status, Length: int64(len(text))}
	m.Header.Add("Content-Type", "text/plain; charset=utf-8")
	m.Body = io.NopCloser(strings.NewReader(text))
	return m
}
