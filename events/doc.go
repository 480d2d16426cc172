// Package events owns Writ's wire format: event kinds and their versioned
// CloudEvents types, subjects and message ids, the data of each kind, the
// producer signature over the exact body bytes, and Inspect, which turns a
// stored message into a Record that says whether it can be trusted and why
// not. It does no I/O.
package events
