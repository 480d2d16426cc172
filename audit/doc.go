// Package audit makes the audit stream evidence: it hashes the stream's
// messages into an RFC 6962 Merkle tree whose signed heads (checkpoint
// events) pin what the stream held, and it verifies a stream, or a copy of
// one, end to end without trusting the broker — every signature against
// the key entitled to it, every request's chain, no gaps, every checkpoint
// against the recomputed tree, the request state machine's invariants, and
// each recorded policy decision re-computed from the recorded policy.
//
// Verification streams: it holds the tree's compact range, a window of
// recent leaves, and the open requests' folded state, never the stream.
//
// It also holds the auditor's request/reply protocol (ask.go): the
// subjects a domain's auditor answers on, for a checkpoint on demand and
// for an evidence bundle's attestation, and the client that asks them.
package audit
