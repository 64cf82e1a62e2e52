// Package fsm holds Slipway's replicated state: the records one region's Raft
// log describes (apps, releases, config vars, formation, domains, app
// features, users and token hashes, slugs, node records, ...), the versioned
// commands that change them, and the deterministic state machine that applies
// those commands.
//
// Every write is a Command: a small JSON value {type, v, id, at, by, data}.
// The proposer (the API node) fills in ids and timestamps, so Apply never
// reads a clock, generates randomness or does I/O: every node that applies the
// same log ends in the same state. Apply validates each command against the
// current state and either changes it completely or not at all, returning a
// Result that carries the affected record or a Heroku-style error. The
// command id doubles as an idempotency key: a command re-submitted after a
// leader change (same id) returns the first result instead of applying twice.
//
// State is kept in hashicorp/go-memdb tables. Readers take a Snap (a
// consistent, immutable view) and may watch tables for changes, which is how
// the router, scheduler and supervisor react without polling. Snapshots are
// streamed as JSON lines ({"t": table, "o": record}), versioned, and restore
// ignores tables and fields it does not know, so an old snapshot restores on
// a newer binary and vice versa.
package fsm
