// Package fcgi speaks FastCGI 1.0: the record layer, a server that plays all
// three roles (RESPONDER, AUTHORIZER, FILTER) with multiplexing, and a client.
// It owns framing, name-value pairs, request lifecycle, back-pressure and
// limits; it knows nothing of transforms or configuration.
//
// # How data enters and leaves
//
// A web server's bytes enter through one read loop per connection
// (conn.serve), which parses records (record.go) and dispatches them:
// BEGIN_REQUEST registers a request, PARAMS are decoded into Request.Params
// under the limits, and at the end of PARAMS the Handler starts in its own
// goroutine with STDIN (then, for FILTER, DATA) streamed to it through a
// bounded buffer per request (input.go). The handler's output leaves through
// its ResponseWriter (response.go): a CGI header block with an explicit
// "Status: NNN reason" line, then the body, coalesced into STDOUT records of
// up to 65535 bytes. When the handler returns, the rest of STDOUT, the empty
// STDOUT record, an empty STDERR record if any stderr was sent, and exactly
// one END_REQUEST go out, normally in a single write. Management records
// (id 0) are answered by the read loop: GET_VALUES with exactly the known
// names asked (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS), unknown types
// with UNKNOWN_TYPE. The server never sends a management record on its own.
//
// # Goroutines and ownership
//
//   - Serve's goroutine accepts; each connection has one read loop, which
//     owns the record reader and every request's parsing state (phase,
//     params decoder, input idle clock) and is the only writer of the
//     connection's request table (under conn.mu; handlers only remove).
//     When no STDIN or DATA is expected and no whole record is buffered, the
//     loop gives its read buffer back to a pool and hands the wait for the
//     peer's next bytes to a new goroutine with a small stack; once bytes
//     arrive, that goroutine passes the loop on to a kept worker (below) and
//     ends: a kept connection between requests holds no buffer and no grown
//     stack. Read buffers start at 4 KiB and become 64 KiB only once more
//     than that has arrived.
//   - Each request whose PARAMS ended has one handler goroutine. The read loop
//     never waits for it, except for flow control when it is the only request
//     (below).
//   - Read loops and handlers run on goroutines the server keeps once they
//     have finished one (workers.go), at most 4 per CPU (8 at least) waiting,
//     so each runs on a stack that has already grown to what a request needs
//     instead of growing a new one, copy by copy, every time.
//   - Writes come from handlers, the read loop (management replies, refusals)
//     and Shutdown; conn.write holds a mutex for each single Write call of
//     whole records, with the write deadline set, so records never interleave.
//   - A response's state is guarded by its own mutex, taken by the handler's
//     calls and by whoever ends the request.
//
// # Input back-pressure
//
// Each request buffers at most Limits.InputBuffer bytes of STDIN or DATA that
// its handler has not read. When the buffer is full:
//
//   - if the request is the only active one on its connection (always the case
//     with nginx, Apache and lighttpd, which use id 1), the read loop waits for
//     the handler to read: this is plain flow control and stalls nothing else.
//     The wait ends when the handler reads or returns (its context ends on
//     HandlerTimeout and Shutdown's deadline), when the connection is closed
//     (Close, a write failure), or when the peer is seen to leave: every
//     100 ms the read loop pulls what has arrived into the free part of its
//     read buffer without consuming it and looks there for
//     an ABORT_REQUEST for the request (it is aborted) or EOF/reset (all
//     requests of the connection are cancelled); with that buffer full it
//     peeks at the socket (MSG_PEEK) for a close or reset. Limit: an abort or
//     close queued behind more unread input than that buffer holds is only
//     seen once the handler reads on or returns.
//   - if other requests are active on the connection (HAProxy multiplexing),
//     the full request fails instead: its reader returns the buffered bytes and
//     then ErrInputOverflow, and the rest of its input is discarded. The other
//     requests are never stalled. Give multiplexing peers a larger InputBuffer
//     if handlers consume input slowly.
//
// A handler that returns without reading its input is fine: the rest is read
// and discarded, so the peer never sees a reset.
//
// # Stream lengths
//
// CONTENT_LENGTH (STDIN) and FCGI_DATA_LENGTH (DATA) are checked against the
// bytes received. A stream shorter than declared ends with a *LengthError
// instead of io.EOF; a longer one delivers the declared bytes, then the
// *LengthError, and the excess is dropped. Without a valid declared length
// (chunked bodies: nginx sends CONTENT_LENGTH="", Apache none) the stream is
// read to its empty record with no check. AUTHORIZER requests have no STDIN
// (Apache's mod_authnz_fcgi sends none): Stdin is at EOF at once. An empty
// DATA stream on other roles is tolerated and ignored; DATA before the end of
// STDIN on a FILTER request is a protocol error. FILTER output (and stderr)
// is held until STDIN has ended, as the specification requires; a FILTER
// handler that must send a record before then (a full record, Flush, or its
// return) gives up the STDIN it has not read, so that neither side waits for
// the other.
//
// # Roles
//
// A BEGIN_REQUEST for a role other than RESPONDER, AUTHORIZER and FILTER is
// answered with END_REQUEST{FCGI_UNKNOWN_ROLE}. So is one for a role the
// Handler declines: a Handler that also implements RoleServer is asked
// ServesRole(role) at BEGIN_REQUEST and, when it says false, is never called
// for that request. The refusal is the specification's answer and lets the
// web server report a configuration mistake (Apache's mod_authnz_fcgi pointed
// at an application with no authorizer route) instead of receiving a made-up
// response. Late records of the refused request are ignored.
//
// # Ending a request with an error
//
// A handler whose output breaks after it began (a transform that crashes
// halfway) must not let the web server present a truncated body as complete,
// and nothing may be made up to complete it. It calls Abort (Aborter, on the
// server's ResponseWriter): unsent STDOUT is dropped and one sanitized line
// naming the error goes to FCGI_STDERR, which nginx ("FastCGI sent in
// stderr") and Apache (AH01071) log. Then:
//
//   - if the connection has only ever carried this one request at a time
//     (nginx, Apache, lighttpd: id 1), the server sends a record header of
//     version 0 and closes its side, without the empty STDOUT record and
//     without END_REQUEST. Measured with nginx 1.22 and Apache 2.4: both stop
//     at that record ("upstream sent unsupported FastCGI protocol version: 0",
//     AH01068 "Got bogus version 0"), send no final chunk and close the
//     client connection, so the client sees a failed transfer (curl exit 18)
//     for chunked and for Content-Length responses; nginx closes at once,
//     Apache after its KeepAliveTimeout (5 s by default). HAProxy (whose
//     first request on a connection has id 1) fails the transfer the same
//     way. lighttpd 1.4 fails a Content-Length response, but a body of
//     unknown length, which it buffers, it sends with a Content-Length of
//     what it received: that client cannot tell. A plain close is
//     not enough: nginx without fastcgi_keep_conn (its default) takes the
//     application's close as the normal end of the response, finishes a
//     chunked body and keeps the client waiting for missing Content-Length
//     bytes; and a well-formed END_REQUEST, whatever its appStatus, makes
//     nginx and Apache present the truncated body as complete.
//   - on a multiplexed connection (HAProxy), closing or breaking the framing
//     would kill the other requests, so the request ends well-formed: empty
//     STDERR and STDOUT records and END_REQUEST{REQUEST_COMPLETE, appStatus
//     1}. What the client then sees is up to the peer.
//
// Limit: a multiplexing peer is only known once it has used an id other than
// 1 or two requests at once, so HAProxy's first request on a fresh
// connection gets the id-1 treatment; a BEGIN_REQUEST it sends at that very
// moment is ignored while the connection drains, and fails with it.
//
// # Overload
//
// At MaxConns a new connection is still served when another can make room:
// the connection that has waited longest for the rest of a request's params
// or of its first record (a slow or hostile client) is closed at once, else
// the one idle longest between requests is closed cleanly. Only when every
// connection serves a request is the new one accepted and closed at once, so
// the web server fails over instead of waiting in the accept queue.
// Connections closed to make room count against a hard bound of twice
// MaxConns until they are gone.
//
// Over MaxReqsPerConn or MaxReqs a request is refused at BEGIN_REQUEST: a peer that multiplexes (it used an id other
// than 1 or two requests at once; in practice HAProxy, the only one that
// understands the status) gets END_REQUEST{FCGI_OVERLOADED}; an id-1 peer gets
// a real "Status: 503 Service Unavailable" response with Retry-After: 1,
// because nginx turns FCGI_OVERLOADED into a 502, Apache into an empty 200
// and lighttpd into a 500. With MaxReqsPerConn 1 the server advertises
// FCGI_MPXS_CONNS=0 and answers a second request with FCGI_CANT_MPX_CONN.
//
// # Malformed input
//
// A malformed or hostile connection (version other than 1, BEGIN_REQUEST on id
// 0 or for an active id, a BEGIN body that is not 8 bytes, STDIN or DATA
// before the end of PARAMS, application-to-server record types, params over
// their limits or not complete within ParamsTimeout, a truncated record) is
// logged in one line with its remote address and closed; its requests are
// cancelled. Nothing else is affected and nothing panics. Records for ids
// that are not active (late STDIN after the request ended, ABORT for a
// finished request) are ignored.
//
// # Limits
//
// Every Limits field defaults when zero; see Limits for the reasons.
//
//	field                 default   on excess
//	MaxConns              1024      a stalled or idle connection closed, else the new one
//	MaxReqsPerConn        128       FCGI_OVERLOADED (multiplexing peer) or 503
//	MaxReqs               1024      FCGI_OVERLOADED (multiplexing peer) or 503
//	MaxParamsBytes        256 KiB   connection closed
//	MaxParamsPairs        1000      connection closed
//	MaxNameLen            4 KiB     connection closed (checked before allocating)
//	MaxValueLen           64 KiB    connection closed (checked before allocating)
//	ParamsTimeout         10 s      connection closed (slowloris)
//	InputIdleTimeout      60 s      that request's input fails: ErrInputTimeout
//	WriteTimeout          60 s      connection closed, its requests cancelled
//	KeepAliveIdleTimeout  120 s     idle connection closed
//	LingerTimeout         2 s       drain after our close ends
//	InputBuffer           128 KiB   flow control or ErrInputOverflow (above)
//	MaxStderr             64 KiB    rest of the request's stderr dropped
//	HandlerTimeout        10 min    request context cancelled: ErrHandlerTimeout
//
// # Connection end
//
// A request with KEEP_CONN=0 makes the connection close once no request is
// active: right after the last END_REQUEST the write side is shut (the peer
// sees EOF at once; nginx otherwise waits) and input is drained for up to
// LingerTimeout. With KEEP_CONN=1 the server closes only after
// KeepAliveIdleTimeout without a request, on error, on Shutdown/Close, or to
// make room at MaxConns. A peer closing the connection cancels all its
// requests (cause ErrAborted).
//
// Shutdown closes a connection with no request only when nothing has
// arrived on it, and serves requests that arrive on open connections while
// it waits, closing each connection right after the response that leaves it
// without a request: a request the web server sent on a kept connection just
// before it could see the close is answered, not lost.
package fcgi
