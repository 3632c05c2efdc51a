//go:build !linux

package source

import (
	"io"
	"io/fs"
	"os"
)

// beneath is Linux's openat2 path (file_linux.go); elsewhere os.Root serves.
type beneath struct{}

func newBeneath(*os.Root) *beneath { return nil }

func (*beneath) open(string) (io.ReadCloser, fs.FileInfo, error) { panic("unreachable") }
func (*beneath) close() error                                    { return nil }
