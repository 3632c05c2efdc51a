// Package filter owns the transforms a response passes through: the
// HTTP-framed pipe protocol spoken with long-lived transform processes
// (compatible with subprocess_middleware and the npm package
// subprocess-middleware), one-shot commands run per request, chains of
// both, and the failure policy. It knows nothing of FastCGI or config: a
// Message comes in, a Message goes out, and errors say what the client
// should get.
//
// # The pipe protocol
//
// For each exchange the bridge writes one message to the transform's stdin:
//
//	HTTP/1.1 200 OK\r\n
//	Content-Type: application/json\r\n          the message's headers, in order, duplicates kept
//	Set-Cookie: a=1\r\n
//	X-Request-URL: http://example.org/p?q=1\r\n  RequestInfo, see below
//	X-Bridge-Method: GET\r\n
//	Content-Length: 17\r\n                       or Transfer-Encoding: chunked
//	\r\n
//	{"some": "json"}\n
//
// A body of known length is framed by Content-Length; one of unknown length
// is chunked. An empty body, also that of a 204 or 304, is sent chunked with
// only the last chunk ("0\r\n\r\n"), because the npm subprocess-middleware
// parser completes a "Content-Length: 0" message only when the next one
// arrives. Chunk sizes are minimal hex, no extensions, no trailers.
// Framing headers (Content-Length, Transfer-Encoding, Connection,
// Keep-Alive) and reserved headers (X-Request-URL and the X-Bridge- prefix)
// found in the source's message are dropped and replaced by the bridge's
// own, so that an upstream cannot spoof them.
//
// The transform answers on stdout with a status line, headers, a blank line
// and a body framed by Content-Length, chunked (which wins when both are
// present) or, after "Connection: close", by the end of its output; a
// process that says Connection: close is retired after that reply. 204 and
// 304 replies have no body. Anything else is a protocol error naming the
// line and what was expected there (see ProtocolError); the head is bounded
// by MaxHeadBytes and MaxHeaderFields. Framing headers and reserved headers
// are removed from the reply; the returned Message's Length is the
// Content-Length when there was one, else -1, and the reply's framing is
// the bridge's business from there on.
//
// # Flow
//
// A pooled exchange (NewPooled) leases a process, then writes the message
// on a writer goroutine while the caller's goroutine reads the reply, so
// neither side can fill a pipe and wait for the other: cat is an identity
// transform for bodies of any size. Small messages (head and body under 16
// KiB, which an empty pipe takes whole) are written inline without that
// goroutine. Apply returns once the reply head has arrived; the Body then
// streams the reply. Buffers are fixed (a 256 KiB write buffer and a 32 KiB
// read buffer per exchange, both pooled), so memory does not grow with body
// size. Where a side is a pipe and at least 32 KiB remain, bytes move with
// splice(2): a file or socket input into the transform's stdin, one stage's
// stdout into the next stage's stdin in a Chain, a reply into a file or
// pipe (Body's WriteTo).
//
// Closing the Body ends the exchange: the process goes back to the pool
// only if its reply was read to the end and framed, nothing more was
// written, the whole message was consumed and the reply did not say
// Connection: close; otherwise it is killed (its whole process group) and
// replaced. Close returns at once either way: a process that takes its
// time to exit is the pool's to reap, off the request's path.
//
// A one-shot transform (NewOneShot) starts a process per request, as the
// pool starts its own (own process group, Pdeathsig on a thread held until
// the reap, stderr drained into the log), from an argv template whose
// placeholders are filled only by query values that fully match their
// regexp, never through a shell; the raw body goes to stdin and stdout
// streams back as the body.
//
// # Failures
//
// Every failure is an *Error with a Kind and the Status the client should
// get: Saturated, Start and Closed are 503, Timeout 504, Crash, Protocol and
// Input 502, BadRequest 400, Canceled 499 (nothing is sent). It names the
// transform and the pid, and carries the last lines of the process's
// stderr. A timeout counts while the exchange is active, from the lease
// until the reply has been read, and kills the process group; so does a
// canceled context. Either fails the exchange when it happens, without
// waiting for the process to die, and whatever the kill causes (the end of
// the output, an exit by signal) is reported as the timeout or the
// cancellation, not as a crash. A process whose output ends while it runs
// on (it closed its stdout) fails the exchange at once with a 502: its
// reply cannot come. One whose output ends because it exits is waited for,
// so that the error says how it ended and quotes all of its stderr.
//
// An error from Apply means no output began. Run then applies a Policy:
// fail closed (return the *Error for the caller to answer 502, 503 or 504),
// retry once on another process after a crash or protocol error, or fail
// open (return the input untransformed) — both only while the input is
// still whole: Run keeps up to Policy.KeepInput bytes of it in memory while
// it streams to the transform, and an input read past that can be neither
// replayed nor served. Once output began, a failure surfaces as an error
// from a Read of the Body: the caller ends the request with an error and
// makes nothing up. Run logs one line per failure with the transform, pid,
// kind, status, action and stderr tail.
package filter
