// Package issuer owns grants: it mints a short-lived JWT scoped to exactly
// one action on one resource for one holder, seals it to the holder's
// curve25519 key so that the stream never carries a usable token, and
// verifies a grant against the issuer keys trusted for its audience domain.
// It receives typed constraints and refuses any it cannot honour.
package issuer
