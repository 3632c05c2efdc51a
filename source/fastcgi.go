package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
	"github.com/fcgi-bridge/fcgi-bridge/internal/httpmsg"
)

// fastcgiSource forwards the request to a FastCGI responder (php-fpm and
// friends): the params and body go through as they came, the CGI response
// comes back as the message.
type fastcgiSource struct {
	name            string
	client          *fcgi.Client
	params          map[string]string
	responseTimeout time.Duration
}

// NewFastCGI builds a FastCGI upstream. Connections are kept open between
// requests (FCGI_KEEP_CONN) unless keepalive is off, which is what makes
// php-fpm fast behind a proxy.
func NewFastCGI(u *conf.Upstream) (Source, error) {
	network, address, err := conf.ParseAddr(u.Address)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	return &fastcgiSource{
		name: u.Name,
		client: &fcgi.Client{
			Network:      network,
			Address:      address,
			DialTimeout:  u.ConnectTimeout.Std(),
			KeepConn:     u.KeepAlive,
			MaxIdleConns: u.MaxIdleConns,
			IdleTimeout:  u.IdleConnTimeout.Std(),
		},
		params:          u.Params,
		responseTimeout: u.ResponseTimeout.Std(),
	}, nil
}

func (s *fastcgiSource) Name() string { return s.name }
func (s *fastcgiSource) Close() error { return s.client.Close() }

// forwardParams lists the params sent upstream: the request's own (sorted,
// so the upstream sees a stable order), with the configured overrides, and
// without what must not cross: HTTP_PROXY (httpoxy), the FILTER role's
// FCGI_DATA_* (the upstream is asked as a RESPONDER), and Accept-Encoding
// when a transform needs the body uncompressed.
func (s *fastcgiSource) forwardParams(p map[string]string, identity bool) []fcgi.Pair {
	names := make([]string, 0, len(p)+len(s.params))
	for k := range p {
		if k == "HTTP_PROXY" || strings.HasPrefix(k, "FCGI_DATA_") || (identity && k == "HTTP_ACCEPT_ENCODING") {
			continue
		}
		if _, over := s.params[k]; !over {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	out := make([]fcgi.Pair, 0, len(names)+len(s.params))
	for _, k := range names {
		out = append(out, fcgi.Pair{Name: k, Value: p[k]})
	}
	over := make([]string, 0, len(s.params))
	for k := range s.params {
		over = append(over, k)
	}
	sort.Strings(over)
	for _, k := range over {
		out = append(out, fcgi.Pair{Name: k, Value: s.params[k]})
	}
	return out
}

func (s *fastcgiSource) Fetch(ctx context.Context, r *Request) (*httpmsg.Message, error) {
	ctx, cancel := context.WithCancel(ctx)
	var timedOut atomic.Bool
	var timer *time.Timer
	if s.responseTimeout > 0 {
		// Until the CGI header block is in: php-fpm may take long to
		// stream a body, but not to start answering.
		timer = time.AfterFunc(s.responseTimeout, func() {
			timedOut.Store(true)
			cancel()
		})
	}
	fail := func(op string, err error) (*httpmsg.Message, error) {
		if timer != nil {
			timer.Stop()
		}
		defer cancel()
		if timedOut.Load() {
			return nil, &Error{Source: s.name, Op: op, Status: http.StatusGatewayTimeout,
				Err: fmt.Errorf("no response within %v: %w", s.responseTimeout, err)}
		}
		// Classified before cancel, so only the caller's own cancellation
		// reads as "client gone".
		return nil, classify(ctx, s.name, op, err)
	}
	stdin := r.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	params := s.forwardParams(r.Params, r.Identity)
	if r.Spooled {
		// The body's true length, also for a chunked request the web
		// server sent without one: PHP reads no POST body without it.
		params = setParam(params, "CONTENT_LENGTH", strconv.FormatInt(r.ContentLength, 10))
	}
	resp, err := s.client.Do(ctx, &fcgi.ClientRequest{Role: fcgi.RoleResponder, Params: params, Stdin: stdin})
	if err != nil {
		return fail("request", err)
	}
	cgi, err := fcgi.ReadCGIResponse(resp.Stdout)
	if err != nil {
		resp.Stdout.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("the application ended without a CGI header block: %w", err)
		}
		return fail("response", err)
	}
	if timer != nil && !timer.Stop() && timedOut.Load() {
		resp.Stdout.Close()
		return fail("response", context.DeadlineExceeded)
	}

	m := &httpmsg.Message{Status: cgi.Status, Reason: cgi.Reason, Length: cgi.Length}
	for _, p := range cgi.Header {
		if notForwarded(p.Name) || httpmsg.EqualFold(p.Name, "Content-Length") {
			continue
		}
		m.Header = append(m.Header, httpmsg.Field{Name: p.Name, Value: p.Value})
	}
	if r.target().Method == http.MethodHead || !httpmsg.BodyAllowed(m.Status) {
		resp.Stdout.Close()
		cancel()
		if !httpmsg.BodyAllowed(m.Status) {
			m.Length = -1
		}
		return m, nil
	}
	m.Body = &fastcgiBody{
		upstreamBody: upstreamBody{ReadCloser: io.NopCloser(cgi.Body), ctx: ctx, name: s.name},
		stdout:       resp.Stdout,
		cancel:       cancel,
	}
	return m, nil
}

// setParam replaces the value of name in params, or appends it.
func setParam(params []fcgi.Pair, name, value string) []fcgi.Pair {
	for i := range params {
		if params[i].Name == name {
			params[i].Value = value
			return params
		}
	}
	return append(params, fcgi.Pair{Name: name, Value: value})
}

// fastcgiBody reads the CGI body; Close releases the FastCGI request
// (aborting it when the body was not read to its end).
type fastcgiBody struct {
	upstreamBody
	stdout io.Closer
	cancel context.CancelFunc
}

func (b *fastcgiBody) Close() error {
	err := b.stdout.Close()
	b.cancel()
	return err
}
