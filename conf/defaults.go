package conf

import "time"

// Every default lives in this file. Parse starts each table from these values
// and lets the TOML overwrite only the keys it sets, so a key that is absent
// always means exactly the value written here. docs/configuration.md repeats them for
// users; keep the two in step.

// DefaultListenAddr is used when a configuration declares no [[listen]]:
// loopback only, because an exposed FastCGI port lets anyone who reaches it
// make requests the web server would have refused.
const DefaultListenAddr = "tcp:127.0.0.1:9000"

func defaultListener() Listener {
	return Listener{
		// Owner and group read/write: the web server shares the group; other
		// local users cannot talk FastCGI to the bridge.
		Mode: "0660",
		// TCP clients from loopback only, unless the operator lists more:
		// safe even when addr binds every interface.
		Allow: []string{"127.0.0.0/8", "::1/128"},
	}
}

func defaultServer() Server {
	return Server{
		// Far above what one web server opens, low enough that a flood
		// cannot exhaust file descriptors (each request may hold pipes too).
		MaxConns: 1024,
		// HAProxy multiplexes; 128 in flight per connection is plenty and
		// bounds what one peer can ask for.
		MaxReqsPerConn: 128,
		// The total cap: requests beyond it are answered 503 at once rather
		// than queued without bound.
		MaxReqs: 1024,
		// nginx sends a few KiB; big cookies push it to tens of KiB. 256 KiB
		// is above what nginx and Apache forward at all and refuses
		// memory-exhaustion attempts.
		MaxParamsBytes: 256 << 10,
		// A real request has 20-60 params; 1000 leaves room for many headers
		// (Apache allows 100).
		MaxParamsPairs: 1000,
		// One param's name and value: an 8 KiB Cookie is common, anything
		// near 64 KiB is not.
		MaxNameLen:  4 << 10,
		MaxValueLen: 64 << 10,
		// Params arrive in one burst from every known peer; a slow trickle
		// is an attack on connection slots.
		ParamsTimeout: Duration(10 * time.Second),
		// A client uploading at all sends something within a minute.
		InputIdleTimeout: Duration(60 * time.Second),
		// A web server that stops reading for a minute has given up.
		WriteTimeout: Duration(60 * time.Second),
		// Longer than nginx's and Apache's own keep-alive idle times (60 s),
		// so the web server closes idle connections first and never writes
		// into one the bridge is closing.
		KeepAliveIdleTimeout: Duration(120 * time.Second),
		// After the bridge closes its side, unread input is drained this long
		// so the close does not become a reset that destroys the response.
		LingerTimeout: Duration(2 * time.Second),
		// Request input (STDIN/DATA) buffered per request ahead of the
		// handler: two of nginx's 32 KiB bursts plus a maximum record.
		InputBuffer: 128 << 10,
		// FCGI_STDERR bytes per request: web servers copy them into their
		// error log, which must not be flooded.
		MaxStderr: 64 << 10,
		// TERM waits this long for in-flight requests; longer than the
		// default transform timeout so a drain does not cut requests short.
		ShutdownTimeout: Duration(35 * time.Second),
		// Sent with 503 when a pool is saturated: long enough for a queue to
		// drain, short enough that a retrying client barely notices.
		RetryAfter: Duration(1 * time.Second),
		// Spooled request bodies go to $TMPDIR (else /tmp), as unlinked
		// files nobody else can open and that vanish with the process.
		SpoolDir: "",
		// A body up to 1 MiB stays in memory (nginx's own
		// client_max_body_size default; covers forms and JSON); larger ones
		// go to a temp file, so memory does not grow with body size.
		SpoolMemory: 1 << 20,
		// 1 GiB: uploads the web server lets through are accepted, while
		// one request cannot fill the disk; over it the client gets 413.
		MaxBody: 1 << 30,
		// Developer mode shows a failing transform's stderr in the error
		// answer: never by default, since that can leak paths and data.
		Debug: false,
	}
}

func defaultLog() Log {
	return Log{
		Level:  "info", // start-up, failures and access lines; debug is for development
		Format: "text", // readable in a terminal and in journald; json for collectors
		Access: true,   // one line per request is what people look for first
		File:   "",     // stderr: systemd/journald collects it without setup
		// No slow-request log until an operator says what slow means for
		// the site: a renderer and an image converter differ by 100x.
		Slow: 0,
	}
}

func defaultTransform() Transform {
	return Transform{
		Kind: KindPooled, // long-lived processes are the reason the bridge exists
		// 30 s per exchange: renderers answer in milliseconds; a stuck one
		// must not hold a process and a client forever.
		Timeout: Duration(30 * time.Second),
		// One warm process: the first request does not pay start-up, and an
		// idle bridge costs one process per transform.
		Min: 1,
		// Four processes: matches small machines (2-4 cores); transforms are
		// usually CPU-bound, so more than the cores only adds queueing.
		Max: 4,
		// Up to 64 requests wait for a free process before 503: absorbs a
		// burst without hiding an overload behind an unbounded queue.
		Queue: 64,
		// A request waits at most 5 s for a process, then 503 + Retry-After.
		QueueTimeout: Duration(5 * time.Second),
		// node and JVM renderers take seconds to start; 10 s tolerates a
		// cold cache while still catching a binary that hangs at start.
		StartTimeout: Duration(10 * time.Second),
		// Never recycle by count, lifetime or size by default: well-behaved
		// transforms need no recycling, and recycling costs warm-up. Set
		// these for transforms that leak.
		MaxRequests: 0,
		MaxLifetime: 0,
		MaxRSS:      0,
		// Extra processes above min retire after 5 minutes without work.
		IdleTimeout: Duration(5 * time.Minute),
		// After SIGTERM a process gets 5 s to exit before SIGKILL.
		KillGrace: Duration(5 * time.Second),
		// Empty keeps the input's Content-Type: right for commands that
		// rewrite content of one kind; a converter (JPEG in, PNG out) names
		// its output type.
		ContentType: "",
	}
}

func defaultUpstream() Upstream {
	return Upstream{
		// A local or LAN upstream accepts within milliseconds; 5 s means it
		// is down, and the client gets 502 instead of hanging.
		ConnectTimeout: Duration(5 * time.Second),
		// Time to the upstream's response headers; 60 s matches nginx's
		// proxy_read_timeout, so the bridge is not the first to give up.
		ResponseTimeout: Duration(60 * time.Second),
		// Reusing connections saves a handshake per request, which matters
		// for pass-through throughput.
		KeepAlive:       true,
		MaxIdleConns:    32,
		IdleConnTimeout: Duration(90 * time.Second),
		// nginx is half duplex towards FastCGI: once the response has
		// begun it sends no more of the request body, so a transform or
		// upstream that answers while it still reads would wait forever.
		// Reading the whole body first (as php-fpm does) avoids that and
		// makes the input replayable; false streams, for full-duplex web
		// servers (Apache, lighttpd) and clients.
		RequestBuffering: true,
		// Directory paths get index.html, the usual convention.
		Index: "index.html",
		// When the request body has no Content-Type, say nothing specific.
		ContentType: "application/octet-stream",
	}
}

func defaultRoute() Route {
	return Route{
		// Mainstream web servers only send RESPONDER; a route without a role
		// is meant for them.
		Role: RoleResponder,
		// The safe failure: a broken transform yields 502, never content
		// the site did not mean to serve.
		Fail: FailClosed,
		// Retrying costs a second run and kept input; opt in per route.
		Retry: false,
		// Input kept in memory for fail = "open" and retry (unused
		// otherwise): 1 MiB covers typical pages; larger bodies simply
		// cannot be replayed.
		KeepInput: 1 << 20,
		// 0 means each transform's own timeout applies.
		Timeout: 0,
		// Renderers built for subprocess_middleware read X-Request-URL.
		SendRequestHeaders: true,
		// nil: the route takes server.debug.
		Debug: nil,
	}
}

// defaultSource is the source of a route that names none: the content each
// role naturally carries.
func defaultSource(role string) string {
	switch role {
	case RoleFilter:
		return SourceData
	case RoleAuthorizer:
		return SourceRequest
	}
	return SourceBody
}
