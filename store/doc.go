// Package store reads and appends the audit stream for every part of Writ
// that needs to: a request's whole history in one batched direct get, a
// whole stream scanned in batches of them (no consumer: a reader needs no
// right to create or change one), and an append that succeeds only if the
// history has not moved on (optimistic concurrency on the request's
// subjects). The server checks that before the message id, so a retried
// append reports a conflict and the writer, which re-reads, finds its own
// effect there.
package store
