// Package redeem is what a target domain's service calls before it acts on
// a grant: it verifies the grant (signature by an issuer trusted for this
// domain, type, exact action, resource and parameters, validity window with
// a bounded clock-skew leeway), checks the holder's proof of possession
// (a fresh, signed, never-replayed challenge), refuses revoked grants
// (learnt by push from a KV watcher, never by polling), checks that the
// audit stream really holds the grant, consumes it exactly once with a
// create-only KV write, and records the outcome — redeemed or refused, with
// a reason — in the request's history.
//
// A Redeemer fails closed: until its revocation watcher is in sync, when
// JetStream cannot be reached, or when the stream does not hold the grant,
// Redeem refuses. Once a grant's jti is consumed, the grant is used up even
// if recording the redemption then fails; Redeem then returns
// ErrNotRecorded and the caller must not act.
//
// RedeemAsHolder is the same redemption for a caller that has checked the
// holder's possession of its key itself (package callout, where the NATS
// server's nonce signed by the connecting nkey is the proof): it redeems
// the grant's own scope, which the caller then enforces.
//
// The KV buckets it uses (created when missing):
//   - writ-grants-used: one entry per consumed grant, kept longer than any
//     grant lives (issuer.MaxTTL plus leeways), since a create-only write
//     succeeds again once an entry is gone;
//   - writ-redeem-nonces: one entry per holder proof presented, kept longer
//     than twice the proof window;
//   - writ-revocations: written by Revoke, watched by every Redeemer.
package redeem
