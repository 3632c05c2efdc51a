package fcgi_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/peers"
	"github.com/stretchr/testify/require"
)

// The client against php-fpm, the FastCGI application it will front.

var phpScripts = map[string]string{
	"echo.php": `<?php
header('Content-Type: text/plain');
header('X-Pid: ' . getmypid());
$in = file_get_contents('php://input');
echo "method=", $_SERVER['REQUEST_METHOD'], "\n";
echo "len=", strlen($in), "\n";
echo "md5=", md5($in), "\n";
echo "q=", $_SERVER['QUERY_STRING'] ?? '', "\n";
if (isset($_GET['big'])) { echo str_repeat('x', (int)$_GET['big']); }
`,
	"missing.php":  `<?php http_response_code(404); echo "not here\n";`,
	"slow.php":     `<?php sleep(3); echo "late\n";`,
	"redirect.php": `<?php header('Location: /elsewhere');`,
}

func phpRequest(fpm *peers.PHPFPM, script, query, method string, body io.Reader, length int) *fcgi.ClientRequest {
	ps := []fcgi.Pair{
		{Name: "GATEWAY_INTERFACE", Value: "CGI/1.1"},
		{Name: "REQUEST_METHOD", Value: method},
		{Name: "SCRIPT_FILENAME", Value: fpm.DocRoot + "/" + script},
		{Name: "SCRIPT_NAME", Value: "/" + script},
		{Name: "REQUEST_URI", Value: "/" + script + "?" + query},
		{Name: "QUERY_STRING", Value: query},
		{Name: "SERVER_NAME", Value: "localhost"},
		{Name: "SERVER_PORT", Value: "80"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
	}
	if body != nil {
		ps = append(ps, fcgi.Pair{Name: "CONTENT_LENGTH", Value: fmt.Sprint(length)},
			fcgi.Pair{Name: "CONTENT_TYPE", Value: "application/octet-stream"})
	}
	return &fcgi.ClientRequest{Params: ps, Stdin: body}
}

func phpDo(t *testing.T, c *fcgi.Client, req *fcgi.ClientRequest) (*fcgi.CGIResponse, string, *fcgi.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, req)
	require.NoError(t, err)
	defer resp.Stdout.Close()
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	require.NoError(t, err)
	b, err := io.ReadAll(cgi.Body)
	require.NoError(t, err)
	return cgi, string(b), resp
}

func TestInteropClientPHPFPM(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			fpm := peers.StartPHPFPM(t, peers.PHPFPMConfig{Network: network, Scripts: phpScripts})
			net, addr := fpm.FastCGI.Split()
			c := &fcgi.Client{Network: net, Address: addr, KeepConn: true}
			defer c.Close()

			cgi, body, resp := phpDo(t, c, phpRequest(fpm, "echo.php", "a=1", "GET", nil, 0))
			require.Equal(t, 200, cgi.Status)
			require.Contains(t, cgi.Get("Content-Type"), "text/plain")
			require.Contains(t, body, "method=GET\nlen=0\n")
			require.Contains(t, body, "q=a=1\n")
			require.Equal(t, uint8(fcgi.StatusRequestComplete), resp.ProtocolStatus)

			// Kept connection: the same php-fpm child answers every time.
			pid := cgi.Get("X-Pid")
			for i := 0; i < 10; i++ {
				cgi, _, _ := phpDo(t, c, phpRequest(fpm, "echo.php", "", "GET", nil, 0))
				require.Equal(t, pid, cgi.Get("X-Pid"), "request %d on another child: connection not reused", i)
			}

			// 1 MB up (streamed, not inline) and 1 MB down.
			up := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
			cgi, body, _ = phpDo(t, c, phpRequest(fpm, "echo.php", "big=1048576", "POST", io.MultiReader(bytes.NewReader(up)), len(up)))
			require.Equal(t, 200, cgi.Status)
			require.Contains(t, body, fmt.Sprintf("len=%d\nmd5=%x\n", len(up), md5.Sum(up)))
			require.Equal(t, 1<<20, strings.Count(body, "x"))

			cgi, body, _ = phpDo(t, c, phpRequest(fpm, "missing.php", "", "GET", nil, 0))
			require.Equal(t, 404, cgi.Status)
			require.Equal(t, "not here\n", body)

			cgi, _, _ = phpDo(t, c, phpRequest(fpm, "redirect.php", "", "GET", nil, 0))
			require.Equal(t, 302, cgi.Status)
			require.Equal(t, "/elsewhere", cgi.Get("Location"))

			vals, err := c.GetValues(context.Background(), fcgi.ValueMaxConns, fcgi.ValueMaxReqs, fcgi.ValueMpxsConns)
			require.NoError(t, err)
			t.Logf("php-fpm GET_VALUES: %v", vals)
			require.Equal(t, "0", vals[fcgi.ValueMpxsConns])

			// A cancelled request comes back at once; php-fpm ignores the
			// abort while the script sleeps, and the client gives the
			// connection up after AbortTimeout rather than reuse it.
			c.AbortTimeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			start := time.Now()
			_, err = c.Do(ctx, phpRequest(fpm, "slow.php", "", "GET", nil, 0))
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Less(t, time.Since(start), 2*time.Second)
			cgi, _, _ = phpDo(t, c, phpRequest(fpm, "echo.php", "", "GET", nil, 0))
			require.Equal(t, 200, cgi.Status)
		})
	}
}

// php-fpm children that exit after pm.max_requests close their kept
// connection; the client must notice and carry on without failing a request.
func TestInteropClientPHPFPMRecycledChildren(t *testing.T) {
	fpm := peers.StartPHPFPM(t, peers.PHPFPMConfig{Scripts: phpScripts, Children: 1, MaxRequests: 3})
	net, addr := fpm.FastCGI.Split()
	c := &fcgi.Client{Network: net, Address: addr, KeepConn: true}
	defer c.Close()
	pids := map[string]bool{}
	for i := 0; i < 12; i++ {
		cgi, body, _ := phpDo(t, c, phpRequest(fpm, "echo.php", "", "GET", nil, 0))
		require.Equal(t, 200, cgi.Status, body)
		pids[cgi.Get("X-Pid")] = true
		// No pause: the next GET often goes out on the connection the
		// exiting child is closing, and must be sent again, not failed.
	}
	require.GreaterOrEqual(t, len(pids), 3, "children recycled")
}

// Concurrent requests over a small pool of kept connections.
func TestInteropClientPHPFPMConcurrent(t *testing.T) {
	fpm := peers.StartPHPFPM(t, peers.PHPFPMConfig{Scripts: phpScripts, Children: 4})
	net, addr := fpm.FastCGI.Split()
	// At most one connection per php-fpm child, or kept connections
	// starve the ones queued behind them.
	c := &fcgi.Client{Network: net, Address: addr, KeepConn: true, MaxIdleConns: 4, MaxConns: 4}
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp, err := c.Do(ctx, phpRequest(fpm, "echo.php", fmt.Sprintf("i=%d", i), "GET", nil, 0))
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Stdout)
			resp.Stdout.Close()
			if err != nil {
				errs <- err
				return
			}
			if !strings.Contains(string(b), fmt.Sprintf("q=i=%d\n", i)) {
				errs <- fmt.Errorf("request %d: wrong answer %q", i, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
