package source

import (
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// beneath opens files under a root directory with one openat2(2) each,
// RESOLVE_BENEATH keeping the lookup inside the root as os.Root does ("..",
// absolute symlinks and symlinks leading out all fail). A regular file is
// then read with plain read(2) calls: an *os.File would first be offered to
// the runtime's poller, which refuses regular files, costing a failed
// epoll_ctl on every request.
type beneath struct {
	dir *os.File // the root directory; its descriptor is the lookups' base
}

// newBeneath returns nil when the kernel has no openat2 (before Linux 5.6)
// or a seccomp filter refuses it: os.Root serves then.
func newBeneath(root *os.Root) *beneath {
	dir, err := root.Open(".")
	if err != nil {
		return nil
	}
	b := &beneath{dir: dir}
	fd, err := b.openat2(".")
	if err != nil {
		dir.Close()
		return nil
	}
	unix.Close(fd)
	return b
}

func (b *beneath) openat2(name string) (int, error) {
	rc, err := b.dir.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := rc.Control(func(dfd uintptr) {
		// O_NONBLOCK: see fileSource.open.
		how := unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		}
		for {
			fd, err = unix.Openat2(int(dfd), name, &how)
			if err != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}

// open opens name beneath the root; the error wraps the errno, so
// errors.Is(err, fs.ErrNotExist) holds for a missing file.
func (b *beneath) open(name string) (io.ReadCloser, fs.FileInfo, error) {
	fd, err := b.openat2(name)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "openat2", Path: name, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "fstat", Path: name, Err: err}
	}
	mode := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	default:
		mode |= fs.ModeIrregular
	}
	info := &rawInfo{name: name, size: st.Size, mode: mode, mod: time.Unix(st.Mtim.Unix())}
	return &rawFile{fd: fd}, info, nil
}

func (b *beneath) close() error { return b.dir.Close() }

// rawFile reads a regular file with read(2), as os.File does for a file
// the poller refused. Read and Close may come from different goroutines (an
// exchange aborted from a timer): mu keeps Close from releasing the
// descriptor, whose number the next open may reuse, under a Read. Close is
// safe to call more than once.
type rawFile struct {
	mu sync.Mutex
	fd int // -1 once closed
}

func (f *rawFile) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return 0, os.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, &fs.PathError{Op: "read", Path: "file", Err: err}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *rawFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

// rawInfo is what fstat(2) told about a file.
type rawInfo struct {
	name string
	size int64
	mode fs.FileMode
	mod  time.Time
}

func (i *rawInfo) Name() string       { return i.name }
func (i *rawInfo) Size() int64        { return i.size }
func (i *rawInfo) Mode() fs.FileMode  { return i.mode }
func (i *rawInfo) ModTime() time.Time { return i.mod }
func (i *rawInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *rawInfo) Sys() any           { return nil }
