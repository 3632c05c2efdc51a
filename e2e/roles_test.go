package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/fcgi-bridge/fcgi-bridge/internal/testenv"
)

// TestFilterRoleWithFcgiRequest: the FILTER role, which no web server
// sends, through the project's own client: `fcgi-request --data FILE`
// against the daemon; the data comes back through the upper transform.
func TestFilterRoleWithFcgiRequest(t *testing.T) {
	if requestBuildErr != nil {
		testenv.Missing(t, fmt.Sprintf("cmd/fcgi-request does not build: %v", requestBuildErr))
	}
	if requestBin == "" {
		testenv.Missing(t, "cmd/fcgi-request is not in the tree yet (the FastCGI client command)")
	}
	dataFile := filepath.Join(t.TempDir(), "data.txt")
	data := strings.Repeat("filter me, please. ", 4000) // 76 KB: more than a pipe buffer
	if err := os.WriteFile(dataFile, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startBridge(t, func(string) string {
		return `
[transform.upper]
command = ["@self", "transform", "upper"]

[[route]]
name = "filter"
role = "filter"
transform = ["upper"]
`
	})
	start := time.Now()
	out, err := exec.Command(requestBin, filterRequestArgs(d.socket, dataFile)...).CombinedOutput()
	t.Logf("fcgi-request --data (%d bytes): %v", len(data), time.Since(start))
	if err != nil {
		t.Fatalf("fcgi-request: %v\n%.2000s", err, out)
	}
	if !strings.Contains(string(out), strings.ToUpper(data)) {
		t.Fatalf("fcgi-request output lacks the upper-cased data:\n%.500s", out)
	}
	if strings.Contains(string(out), data[:40]) {
		t.Errorf("untransformed data in the output:\n%.500s", out)
	}
	if _, ok := d.log.WaitFor("role=FILTER", 5*time.Second); !ok {
		t.Errorf("no access line for a FILTER request")
	}
}

// filterRequestArgs is fcgi-request's command line for one FILTER request
// with data from file.
func filterRequestArgs(sock, file string) []string {
	return []string{"--fail", "--role", "filter", "--data", file, "unix:" + sock, "/page.txt"}
}

// TestApacheAuthorizer: Apache mod_authnz_fcgi asks the bridge in the
// AUTHORIZER role; a transform decides (allowed, wrong password, wrong
// user), and the allowed request is then proxied to the bridge's content.
func TestApacheAuthorizer(t *testing.T) {
	root := fileSite(t)
	port := testenv.FreePort(t)
	d := startBridge(t, func(string) string {
		return fmt.Sprintf(`
[[listen]]
addr = "tcp:127.0.0.1:%d"

[upstream.files]
kind = "file"
root = %q

[transform.upper]
command = ["@self", "transform", "upper"]

[transform.authz]
%s

[[route]]
name = "authz"
role = "authorizer"
transform = ["authz"]
pass_params = ["FCGI_APACHE_ROLE", "REMOTE_USER", "REMOTE_PASSWD"]

[[route]]
name = "files"
path = "/auth"
source = "files"
transform = ["upper"]
`, port, filepath.Dir(root), transformCommand(modeAuthz))
	})
	// The content lives under /auth: the same file site one level up.
	if err := os.Symlink("site", filepath.Join(filepath.Dir(root), "auth")); err != nil {
		t.Fatal(err)
	}
	ap := peers.StartApache(t, peers.ApacheConfig{
		FastCGI:    d.upstream(),
		Authorizer: peers.Upstream(net.JoinHostPort("127.0.0.1", fmt.Sprint(port))),
	})

	cases := []struct {
		name, user, pass string
		status           int
	}{
		{"allowed", "alice", "open-sesame", 200},
		{"wrong password", "alice", "guess", 401},
		// The bridge answers 403; Apache's "authnz" provider turns every
		// denial into 401 (checked on the bridge's side below).
		{"user not allowed", "bob", "open-sesame", 401},
		{"no credentials", "", "", 401},
	}
	for _, tc := range cases {
		h := map[string]string{}
		if tc.user != "" {
			h["Authorization"] = basicAuth(tc.user, tc.pass)
		}
		r := mustFetch(t, "GET", ap.URL("/auth/hello.txt"), h, nil)
		t.Logf("%s (%s): %d in %v", tc.name, tc.user, r.status, r.took)
		if r.status != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, r.status, r.body, tc.status)
		}
		if tc.status == 200 && r.body != "HELLO FROM A FILE\n" {
			t.Errorf("%s: body %q", tc.name, r.body)
		}
		if tc.status != 200 && strings.Contains(r.body, "HELLO") {
			t.Errorf("%s: content leaked: %q", tc.name, r.body)
		}
	}
	// Access lines follow their answers: wait for the three to come.
	testenv.Poll(10*time.Second, func() bool { return d.log.Count("role=AUTHORIZER") >= 3 })
	if n := d.log.Count("role=AUTHORIZER"); n < 3 {
		t.Errorf("the bridge logged %d AUTHORIZER requests, want 3", n)
	}
	if d.log.Count("role=AUTHORIZER method=GET uri=/auth/hello.txt status=403") != 1 ||
		d.log.Count("role=AUTHORIZER method=GET uri=/auth/hello.txt status=401") != 1 ||
		d.log.Count("role=AUTHORIZER method=GET uri=/auth/hello.txt status=200") != 1 {
		t.Errorf("want one AUTHORIZER answer each of 200 (alice), 401 (wrong password), 403 (bob)")
	}
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
