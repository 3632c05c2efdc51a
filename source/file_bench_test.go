package source

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
)

// BenchmarkFileFetch measures serving a small JSON file, as the file
// upstream does for every rendered request: open, stat, read, close.
func BenchmarkFileFetch(b *testing.B) {
	for _, mode := range []string{"openat2", "os.Root"} {
		b.Run(mode, func(b *testing.B) {
			root := b.TempDir()
			if err := os.WriteFile(filepath.Join(root, "page.json"), []byte(`{"title":"page","items":[1,2,3]}`), 0o644); err != nil {
				b.Fatal(err)
			}
			src, err := NewFile(&conf.Upstream{Name: "static", Kind: conf.UpstreamFile, Root: root})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			if fs := src.(*fileSource); mode == "os.Root" && fs.fast != nil {
				fs.fast.close()
				fs.fast = nil
			} else if mode == "openat2" && fs.fast == nil {
				b.Skip("openat2 is not available here")
			}
			params := map[string]string{"REQUEST_METHOD": "GET", "DOCUMENT_URI": "/page.json"}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				m, err := src.Fetch(ctx, &Request{Params: params})
				if err != nil || m.Status != 200 {
					b.Fatal(err, m.Status)
				}
				io.Copy(io.Discard, m.Body)
				m.Body.Close()
			}
		})
	}
}
