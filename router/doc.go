// Package router is Slipway's HTTP routing mesh: every node runs one, and
// it routes any app's requests, whichever node they hit, to one of the
// app's up web dynos anywhere in the region, with Heroku's semantics
// (H codes, error pages, headers, timeouts, log lines).
//
// The route table (table.go) is an immutable value built from the
// replicated state and gossip by a pure function, and swapped atomically:
// a request keeps the table and backend it started with, so table changes
// never cut in-flight requests, streams or WebSockets. Per-dyno state that
// must outlive tables (in-flight counts, quarantine, the keep-alive pool)
// lives in a registry the builder reuses across tables.
//
// Balancing is power of two choices on in-flight requests counted by this
// router, ties going to the local zone. A connect error quarantines the
// dyno (and, when the host itself is unreachable, every dyno of its node)
// for a few seconds and the request is retried on another dyno; requests
// are never retried once body or response bytes have passed.
//
// Plain HTTP is served by the router's own HTTP/1.1 server (h1.go): it
// parses request heads in place and relays bodies with their framing,
// with one allocation per request (the log line). HTTPS, with HTTP/1.1
// and HTTP/2 and certificates chosen by SNI, is served by net/http
// (std.go). Both share the routing, balancing, retry and logging core
// (core.go), and talk HTTP/1.1 to dynos over pooled keep-alive
// connections (backend.go, wire.go). bench/router measures the result
// against nginx.
package router
