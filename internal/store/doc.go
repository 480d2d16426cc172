// Package store reads and appends the audit stream for every part of Writ
// that needs to: a request's whole history in one batched direct get, a
// whole stream scanned in batches of them (no consumer: a reader needs no
// right to create or change one), and an append that succeeds only if the
// history has not moved on (optimistic concurrency on the request's
// subjects). The server checks that before the message id, so a retried
// append reports a conflict and the writer, which re-reads, finds its own
// effect there.
//
// Retry is Writ's one rule for waiting through what a NATS cluster does
// in passing — a leader election, a server rejoining, an answer lost with
// a server going down, a replica milliseconds behind: every read and
// append here goes through it, bounded by the caller's context, and tells
// a Waiter in that context that it waits.
package store
