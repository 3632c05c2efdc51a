package fcgi

import "time"

// Limits bounds what one Server accepts. The zero value of every field means
// its default, chosen so that a server exposed to a misbehaving or hostile peer
// keeps bounded memory, file descriptors and time. A negative timeout disables
// that timeout; a negative count is replaced by its default.
type Limits struct {
	// MaxConns is the number of connections served at once. Default 1024: under
	// a typical 4096 open-file limit it leaves room for transform pipes. At
	// the limit a new connection makes room by closing the connection stalled
	// longest before the end of its params (or first record), else the one
	// idle longest between requests; when every connection serves a request
	// the new one is accepted and closed at once, so the web server fails
	// fast (nginx tries its next upstream) instead of waiting in the kernel's
	// accept queue. Reported as FCGI_MAX_CONNS.
	MaxConns int

	// MaxReqsPerConn is the number of requests active at once on one connection.
	// Default 128. Reported as FCGI_MAX_REQS, which HAProxy uses as its per
	// connection stream limit. 1 turns multiplexing off: FCGI_MPXS_CONNS=0 and a
	// second request gets FCGI_CANT_MPX_CONN.
	MaxReqsPerConn int

	// MaxReqs is the number of requests active at once on the whole server.
	// Default 1024: with the default InputBuffer that caps buffered request
	// input at 128 MiB.
	MaxReqs int

	// MaxParamsBytes bounds the bytes of one request's PARAMS stream. Default
	// 256 KiB: well above nginx's and Apache's own header limits (about 32 KiB
	// and 800 KiB worst case, but Apache's typical 8 KiB per field).
	MaxParamsBytes int

	// MaxParamsPairs bounds the number of params of one request. Default 1000
	// (web servers send ~20 plus one per HTTP header; Apache allows 100 headers).
	MaxParamsPairs int

	// MaxNameLen and MaxValueLen bound one param's name and value. Defaults 4 KiB
	// and 64 KiB: a Cookie header of 8 KiB is common, anything near 64 KiB is not.
	MaxNameLen  int
	MaxValueLen int

	// ParamsTimeout is how long a request may take from BEGIN_REQUEST to the end
	// of its PARAMS, and a new connection to its first record. Default 10 s: web
	// servers send params in one burst, so only a slowloris-style peer is slower.
	// On expiry the connection is closed.
	ParamsTimeout time.Duration

	// InputIdleTimeout is how long a request may wait for its next STDIN or DATA
	// record when its buffer has room. Default 60 s, nginx's own
	// client_body_timeout. On expiry that request's reader fails with
	// ErrInputTimeout; other requests are not affected.
	InputIdleTimeout time.Duration

	// WriteTimeout bounds each write to the connection. Default 60 s, nginx's
	// fastcgi_read_timeout: a peer that reads nothing for that long is gone. On
	// expiry the connection fails and all its requests are cancelled.
	WriteTimeout time.Duration

	// KeepAliveIdleTimeout closes a connection with no active request after this
	// long. Default 120 s, longer than nginx's upstream keepalive_timeout (60 s)
	// so that the web server, which knows when it will reuse a connection,
	// normally closes first and never races a request against our close.
	KeepAliveIdleTimeout time.Duration

	// LingerTimeout bounds how long a connection is drained after we shut its
	// write side, so that unread input does not turn our close into a reset
	// that could destroy the response in flight. Default 2 s.
	LingerTimeout time.Duration

	// InputBuffer is the bytes of STDIN or DATA buffered for one request that
	// its handler has not read yet. Default 128 KiB (two of nginx's 32 KiB
	// bursts plus a maximum record). See the package doc for what happens when
	// it is full.
	InputBuffer int

	// HandlerTimeout bounds how long one handler may run, from the end of
	// PARAMS: at expiry its context is cancelled with cause ErrHandlerTimeout
	// and the handler is expected to return. Default 10 min: a backstop
	// against leaked requests, far above any sane transform; routes that need
	// a tighter bound set their own.
	HandlerTimeout time.Duration

	// MaxStderr bounds the bytes one request may send on FCGI_STDERR; the rest
	// is dropped with a note. Default 64 KiB: peers copy it into their error log.
	MaxStderr int
}

func (l Limits) withDefaults() Limits {
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&l.MaxConns, 1024)
	setInt(&l.MaxReqsPerConn, 128)
	setInt(&l.MaxReqs, 1024)
	setInt(&l.MaxParamsBytes, 256<<10)
	setInt(&l.MaxParamsPairs, 1000)
	setInt(&l.MaxNameLen, 4<<10)
	setInt(&l.MaxValueLen, 64<<10)
	setDur(&l.ParamsTimeout, 10*time.Second)
	setDur(&l.InputIdleTimeout, 60*time.Second)
	setDur(&l.WriteTimeout, 60*time.Second)
	setDur(&l.KeepAliveIdleTimeout, 120*time.Second)
	setDur(&l.LingerTimeout, 2*time.Second)
	setInt(&l.InputBuffer, 128<<10)
	setInt(&l.MaxStderr, 64<<10)
	setDur(&l.HandlerTimeout, 10*time.Minute)
	if l.MaxReqsPerConn > 0xffff {
		l.MaxReqsPerConn = 0xffff
	}
	return l
}

func (l *Limits) pairLimits() pairLimits {
	return pairLimits{MaxName: l.MaxNameLen, MaxValue: l.MaxValueLen, MaxPairs: l.MaxParamsPairs}
}
