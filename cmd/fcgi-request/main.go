// Command fcgi-request sends FastCGI requests from the shell: one request
// whose response it prints (like curl for FastCGI), or, with -n, -c or
// --duration, many requests as a load generator that reports throughput,
// latency percentiles and errors.
//
//	fcgi-request unix:/run/php/php-fpm.sock http://localhost/index.php?x=1 --docroot /var/www/html
//	fcgi-request tcp:127.0.0.1:9000 /upload --body file.bin -i
//	fcgi-request 127.0.0.1:9000 /page --role filter --data page.html
//	fcgi-request unix:/run/app.sock --get-values
//	fcgi-request unix:/run/app.sock /ping -n 100000 -c 32 --keep-conn --json
//
// Exit status: 0 on success, 1 when the request (or, in load mode, any
// request) failed at the connection or protocol level, 2 for usage errors,
// 22 with --fail when the response status is 400 or more.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitFail  = 22 // as curl --fail
)

// options are the parsed command line.
type options struct {
	address, url            string
	network, addr           string
	role                    fcgi.Role
	params, headers         []string
	method                  string
	body, data, contentType string
	docroot                 string
	getValues, stream       bool
	include, raw, verbose   bool
	fail                    bool
	timeout, connectTimeout time.Duration

	// load generation
	requests, concurrency int
	duration              time.Duration
	keepConn, multiplex   bool
	maxReqsPerConn        int
	maxConns              int
	json                  bool
}

func (o *options) loadMode() bool {
	return o.requests > 1 || o.concurrency > 1 || o.duration > 0
}

// parseArgs parses the command line. The usage goes to stdout when it was
// asked for (--help), to stderr when the command line was wrong.
func parseArgs(args []string, stdout, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("fcgi-request", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var help bool
	fs.BoolVarP(&help, "help", "h", false, "print this help and exit")
	fs.Usage = func() {
		out := stderr
		if help {
			out = stdout
		}
		fs.SetOutput(out)
		defer fs.SetOutput(stderr)
		fmt.Fprintf(out, `usage: fcgi-request [flags] ADDRESS [URL]

ADDRESS is tcp:HOST:PORT, unix:PATH, HOST:PORT or a socket path.
URL (http://host:port/path?query or /path?query) fills the CGI params
REQUEST_METHOD, SCRIPT_NAME, REQUEST_URI, QUERY_STRING, SERVER_NAME,
SERVER_PORT, SERVER_PROTOCOL, GATEWAY_INTERFACE, HTTP_HOST (and
CONTENT_LENGTH/CONTENT_TYPE with a body); --param overrides any of them.

flags:
`)
		fs.PrintDefaults()
	}
	var role string
	fs.StringVar(&role, "role", "", "responder, authorizer or filter (default responder; filter with --data)")
	fs.StringArrayVarP(&o.params, "param", "p", nil, "param NAME=VALUE, repeatable; replaces a default of that name")
	fs.StringArrayVarP(&o.headers, "header", "H", nil, `request header "Name: value", sent as HTTP_NAME`)
	fs.StringVarP(&o.method, "method", "X", "", "request method (default GET, POST with a body)")
	fs.StringVar(&o.body, "body", "", "request body from FILE, or - for standard input")
	fs.BoolVar(&o.stream, "stream", false, "stream a body of unknown length (a pipe) as it comes, with an empty CONTENT_LENGTH, instead of reading it first")
	fs.StringVar(&o.contentType, "content-type", "", "CONTENT_TYPE with a body (default application/octet-stream)")
	fs.StringVar(&o.data, "data", "", "FILTER data from FILE; sets FCGI_DATA_LENGTH and FCGI_DATA_LAST_MOD")
	fs.StringVar(&o.docroot, "docroot", "", "document root: sets DOCUMENT_ROOT and SCRIPT_FILENAME (php-fpm needs it)")
	fs.BoolVar(&o.getValues, "get-values", false, "ask FCGI_GET_VALUES (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS) and print the answer")
	fs.BoolVarP(&o.include, "include", "i", false, "print the response status line and headers")
	fs.BoolVar(&o.raw, "raw", false, "print the application's output as it came (CGI header block and body)")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "print the params sent and END_REQUEST status to standard error")
	fs.BoolVarP(&o.fail, "fail", "f", false, "exit 22 when the response status is 400 or more")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "time limit per request")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Second, "time limit to connect")
	fs.IntVarP(&o.requests, "requests", "n", 1, "load mode: number of requests (with --duration: at most)")
	fs.IntVarP(&o.concurrency, "concurrency", "c", 1, "load mode: requests in flight at once")
	fs.DurationVar(&o.duration, "duration", 0, "load mode: run for this long")
	fs.BoolVarP(&o.keepConn, "keep-conn", "k", false, "reuse connections (FCGI_KEEP_CONN)")
	fs.BoolVar(&o.multiplex, "multiplex", false, "several requests in flight per connection (implies --keep-conn)")
	fs.IntVar(&o.maxReqsPerConn, "max-reqs-per-conn", 0, "with --multiplex: requests in flight per connection (default 32)")
	fs.IntVar(&o.maxConns, "max-conns", 0, "connections open at once (0: no limit); with php-fpm and -k keep it at most pm.max_children")
	fs.BoolVar(&o.json, "json", false, "load mode: print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if help {
		fs.Usage()
		return nil, pflag.ErrHelp
	}
	rest := fs.Args()
	if len(rest) < 1 || len(rest) > 2 {
		fs.Usage()
		return nil, errors.New("want ADDRESS and an optional URL")
	}
	o.address = rest[0]
	if len(rest) == 2 {
		o.url = rest[1]
	}
	var err error
	if o.network, o.addr, err = splitAddress(o.address); err != nil {
		return nil, err
	}
	if o.role, err = parseRole(role, o.data != ""); err != nil {
		return nil, err
	}
	if o.data != "" && o.role != fcgi.RoleFilter {
		return nil, fmt.Errorf("--data is only sent in the FILTER role, not %v", o.role)
	}
	if o.requests < 1 || o.concurrency < 1 {
		return nil, errors.New("-n and -c must be at least 1")
	}
	if o.loadMode() && o.duration == 0 && o.requests < o.concurrency {
		o.concurrency = o.requests
	}
	return o, nil
}

// splitAddress accepts tcp:HOST:PORT, unix:PATH, HOST:PORT and /path.
func splitAddress(a string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(a, "unix:"):
		network, address = "unix", strings.TrimPrefix(a, "unix:")
	case strings.HasPrefix(a, "tcp:"):
		network, address = "tcp", strings.TrimPrefix(a, "tcp:")
	case strings.HasPrefix(a, "/") || strings.HasPrefix(a, "./"):
		network, address = "unix", a
	default:
		network, address = "tcp", a
	}
	if address == "" {
		return "", "", fmt.Errorf("address %q: empty", a)
	}
	if network == "tcp" && !strings.Contains(address, ":") {
		return "", "", fmt.Errorf("address %q: want tcp:HOST:PORT, unix:PATH or HOST:PORT", a)
	}
	return network, address, nil
}

func parseRole(s string, haveData bool) (fcgi.Role, error) {
	switch strings.ToLower(s) {
	case "":
		if haveData {
			return fcgi.RoleFilter, nil
		}
		return fcgi.RoleResponder, nil
	case "responder", "1":
		return fcgi.RoleResponder, nil
	case "authorizer", "2":
		return fcgi.RoleAuthorizer, nil
	case "filter", "3":
		return fcgi.RoleFilter, nil
	}
	if n, err := strconv.ParseUint(s, 10, 16); err == nil && n > 0 {
		// Any other number: useful to test how an application refuses a role.
		return fcgi.Role(n), nil
	}
	return 0, fmt.Errorf("--role %q: want responder, authorizer, filter or a number", s)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stdout, stderr)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "fcgi-request: %v\n", err)
		return exitUsage
	}
	client := &fcgi.Client{
		Network: o.network, Address: o.addr, DialTimeout: o.connectTimeout,
		KeepConn: o.keepConn || o.multiplex, Multiplex: o.multiplex, MaxReqsPerConn: o.maxReqsPerConn,
		MaxConns:     o.maxConns,
		MaxIdleConns: max(o.concurrency, 2),
	}
	defer client.Close()

	if o.getValues {
		return getValues(ctx, client, o, stdout, stderr)
	}
	req, err := buildRequest(o, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-request: %v\n", err)
		return exitUsage
	}
	defer req.close()
	if o.verbose {
		fmt.Fprintf(stderr, "> %v request to %s %s\n", o.role, o.network, o.addr)
		for _, p := range req.params {
			fmt.Fprintf(stderr, "> %s=%s\n", p.Name, p.Value)
		}
	}
	if o.loadMode() {
		return runLoad(ctx, client, o, req, stdout, stderr)
	}
	return runOne(ctx, client, o, req, stdout, stderr)
}

func getValues(ctx context.Context, client *fcgi.Client, o *options, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	vals, err := client.GetValues(ctx, fcgi.ValueMaxConns, fcgi.ValueMaxReqs, fcgi.ValueMpxsConns)
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-request: %v\n", err)
		return exitError
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(stdout, "%s=%s\n", k, vals[k])
	}
	return exitOK
}

// runOne sends one request and prints the response.
func runOne(ctx context.Context, client *fcgi.Client, o *options, req *requestTemplate, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cr := req.newRequest()
	cr.Stderr = stderr
	resp, err := client.Do(ctx, cr)
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-request: %v\n", err)
		return exitError
	}
	defer resp.Stdout.Close()
	status := 0
	if o.raw {
		_, err = io.Copy(stdout, resp.Stdout)
	} else {
		var cgi *fcgi.CGIResponse
		cgi, err = fcgi.ReadCGIResponse(resp.Stdout)
		if err == nil {
			status = cgi.Status
			if o.include {
				fmt.Fprintf(stdout, "Status: %d %s\r\n", cgi.Status, cgi.Reason)
				for _, h := range cgi.Header {
					fmt.Fprintf(stdout, "%s: %s\r\n", h.Name, h.Value)
				}
				fmt.Fprint(stdout, "\r\n")
			}
			_, err = io.Copy(stdout, cgi.Body)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "fcgi-request: %v\n", err)
		return exitError
	}
	if o.verbose {
		fmt.Fprintf(stderr, "< END_REQUEST appStatus=%d protocolStatus=%d\n", resp.AppStatus, resp.ProtocolStatus)
	}
	if o.fail && status >= 400 {
		return exitFail
	}
	return exitOK
}
