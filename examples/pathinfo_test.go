package examples_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/bridge"
	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

var update = flag.Bool("update", false, "record testdata/pathinfo from the real web servers (as root)")

// pathInfoURL is the request of the path-info matrix, sent with
// "Host: example.com"; every server must bring the bridge to the same route
// and the transform to the same X-Request-URL.
const (
	pathInfoURL  = "/app/a/b?q=1"
	pathInfoHost = "example.com"
)

// pathInfoServers is the matrix of docs/deploy.md ("What each server
// sends"): how each example splits /app/a/b into SCRIPT_NAME and PATH_INFO.
var pathInfoServers = []struct {
	name         string
	script, info string // info "" : no PATH_INFO at all
	group        string
	sock         func(t *testing.T) string
	start        func(t *testing.T, sock string) *peers.Server
}{
	{"nginx", "/app", "/a/b", "www-data", runDir, nginxStandalone},
	{"apache", "/app", "/a/b", "www-data", runDir, func(t *testing.T, sock string) *peers.Server {
		return apacheFromSource(t, sock, testenv.FreePort(t))
	}},
	{"caddy", "/app", "/a/b", "caddy", runDir, caddyStandalone},
	{"lighttpd", "/app/a", "/b", "www-data", runDir, lighttpdStandalone},
	{"haproxy", "/app/a/b", "", "haproxy", func(t *testing.T) string { _, s := haproxyChroot(t); return s }, haproxyStandalone},
}

// inProcessBridge serves examples/fcgi-bridge.toml (its transform run from
// the built binary) and remembers the params of each request.
type inProcessBridge struct {
	b      *bridge.Bridge
	mu     sync.Mutex
	params []map[string]string
}

func newInProcessBridge(t *testing.T) *inProcessBridge {
	t.Helper()
	text := strings.ReplaceAll(read(t, "fcgi-bridge.toml"), `"@self"`, strconv.Quote(bridgeBinary(t)))
	cfg, err := conf.Parse("fcgi-bridge.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(cfg, bridge.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return &inProcessBridge{b: b}
}

func (p *inProcessBridge) ServeFCGI(w fcgi.ResponseWriter, r *fcgi.Request) {
	p.mu.Lock()
	m := make(map[string]string, len(r.Params))
	for k, v := range r.Params {
		m[k] = v
	}
	p.params = append(p.params, m)
	p.mu.Unlock()
	p.b.ServeFCGI(w, r)
}

func (p *inProcessBridge) seen() []map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]string(nil), p.params...)
}

func pathInfoFile(name string) string {
	return filepath.Join("testdata", "pathinfo", name+".bin")
}

// TestPathInfoMatrix replays what each web server, running its example,
// sent for /app/a/b?q=1 (recorded with -update): the server's own split of
// SCRIPT_NAME and PATH_INFO is as documented, and the bridge answers every
// one with the same route and the same X-Request-URL for the transform.
func TestPathInfoMatrix(t *testing.T) {
	if *update {
		recordPathInfo(t)
	}
	want := "Rendered by fcgi-bridge for <code>http://" + pathInfoHost + pathInfoURL + "</code>"
	for _, srv := range pathInfoServers {
		t.Run(srv.name, func(t *testing.T) {
			conns, err := peers.ReadTranscript(pathInfoFile(srv.name))
			if err != nil {
				t.Fatalf("%v (record it with: go test ./examples/ -run TestPathInfoMatrix -update, as root)", err)
			}
			p := newInProcessBridge(t)
			var pages []string
			for _, c := range conns {
				pages = append(pages, replay(t, p, c)...)
			}
			seen := p.seen()
			if len(seen) != 1 || len(pages) != 1 {
				t.Fatalf("%d requests and %d responses in the transcript, want 1", len(seen), len(pages))
			}
			params := seen[0]
			if params["REQUEST_URI"] != pathInfoURL {
				t.Errorf("REQUEST_URI = %q, want %q", params["REQUEST_URI"], pathInfoURL)
			}
			info, hasInfo := params["PATH_INFO"]
			if params["SCRIPT_NAME"] != srv.script || info != srv.info || (srv.info == "" && hasInfo) {
				t.Errorf("SCRIPT_NAME=%q PATH_INFO=%q (sent: %v), docs/deploy.md says %q %q",
					params["SCRIPT_NAME"], info, hasInfo, srv.script, srv.info)
			}
			resp, err := fcgi.ReadCGIResponse(strings.NewReader(pages[0]))
			if err != nil {
				t.Fatalf("the bridge's answer: %v\n%s", err, pages[0])
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.Status != 200 || !bytes.Contains(body, []byte(want)) || !bytes.Contains(body, []byte("<dt>name</dt>")) {
				t.Errorf("the bridge answered %d, want 200 and the page rendered by route \"app\" saying %q:\n%s", resp.Status, want, body)
			}
		})
	}
}

// replay feeds one recorded connection to a FastCGI server over a pipe and
// returns the STDOUT of each request that ended.
func replay(t *testing.T, h fcgi.Handler, transcript []byte) []string {
	t.Helper()
	srv := &fcgi.Server{Handler: h, Logger: slog.New(slog.DiscardHandler)}
	client, server := net.Pipe()
	served := make(chan struct{})
	go func() { defer close(served); srv.ServeConn(server) }()
	go client.Write(transcript) // returns when read, or with an error when the server closed

	var pages []string
	stdout := map[uint16]*bytes.Buffer{}
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			if len(pages) == 0 {
				t.Errorf("reading the reply: %v", err)
			}
			break
		}
		id := uint16(hdr[2])<<8 | uint16(hdr[3])
		content := make([]byte, int(hdr[4])<<8|int(hdr[5])+int(hdr[6]))
		if _, err := io.ReadFull(client, content); err != nil {
			t.Fatalf("reading the reply: %v", err)
		}
		content = content[:int(hdr[4])<<8|int(hdr[5])]
		switch hdr[1] {
		case 6: // FCGI_STDOUT
			if stdout[id] == nil {
				stdout[id] = &bytes.Buffer{}
			}
			stdout[id].Write(content)
		case 3: // FCGI_END_REQUEST
			pages = append(pages, stdout[id].String())
			delete(stdout, id)
		}
		if hdr[1] == 3 && len(pages) == 1 {
			break // the peer would now send the next request, or close
		}
	}
	client.Close()
	<-served
	return pages
}

// recordPathInfo runs each example on its own in front of a recording
// socket (0660, in the group docs/deploy.md gives for that server) served by
// the bridge in this process, asks for /app/a/b?q=1, and writes what the
// server sent to testdata/pathinfo.
func recordPathInfo(t *testing.T) {
	requireRoot(t, serversAsRoot)
	if err := os.MkdirAll(filepath.Join("testdata", "pathinfo"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, srv := range pathInfoServers {
		t.Run("record-"+srv.name, func(t *testing.T) {
			sock := srv.sock(t)
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			g, err := user.LookupGroup(srv.group)
			if err != nil {
				t.Fatal(err)
			}
			gid, _ := strconv.Atoi(g.Gid)
			if err := os.Chown(sock, -1, gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sock, 0o660); err != nil {
				t.Fatal(err)
			}
			rec := peers.NewRecorder(l)
			p := newInProcessBridge(t)
			fs := &fcgi.Server{Handler: p}
			go fs.Serve(rec)
			t.Cleanup(func() { l.Close() })

			s := srv.start(t, sock)
			req, err := http.NewRequest("POST", s.URL(pathInfoURL), strings.NewReader(appJSON))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = pathInfoHost
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/html")
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d\n%s", srv.name, resp.StatusCode, body)
			}
			if err := peers.WriteTranscript(pathInfoFile(srv.name), rec.Transcript()); err != nil {
				t.Fatal(err)
			}
			// A readable copy of the params, for review.
			var b strings.Builder
			for _, params := range p.seen() {
				keys := make([]string, 0, len(params))
				for k := range params {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(&b, "%s=%q\n", k, params[k])
				}
			}
			if err := os.WriteFile(strings.TrimSuffix(pathInfoFile(srv.name), ".bin")+".txt", []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
