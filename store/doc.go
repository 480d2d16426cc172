// Package store reads and appends the audit stream for every part of Writ
// that needs to: a request's whole history in one batched direct get, and an
// append that succeeds only if the history has not moved on (optimistic
// concurrency on the request's subjects) and dedupes retries by message id.
package store
