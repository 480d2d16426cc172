package redeem

import (
	"errors"

	"github.com/writ-dev/writ/issuer"
)

// Refusals of Redeem, one per reason, besides the issuer's verification
// errors (issuer.ErrMalformed, ErrWrongType, ErrUntrustedIssuer,
// ErrWrongAudience, ErrWrongAction, ErrWrongResource, ErrWrongHolder,
// ErrWrongParams, ErrNotYetValid, ErrExpired), which Redeem returns wrapped
// as they are.
var (
	ErrNotReady      = errors.New("not in sync with the revocation list yet")
	ErrNoScope       = errors.New("the action and resource being redeemed for are required")
	ErrBadProof      = errors.New("holder proof does not verify")
	ErrStaleProof    = errors.New("holder proof is outside its time window")
	ErrReplayedProof = errors.New("holder proof was presented before")
	ErrRevoked       = errors.New("grant revoked")
	ErrLocked        = errors.New("the holder, its key or its domain is locked")
	ErrAlreadyUsed   = errors.New("grant already used")
	ErrNotGranted    = errors.New("the audit stream holds no such grant")
	ErrTooLong       = errors.New("grant lives longer than its single-use record would")
	ErrUnavailable   = errors.New("JetStream unavailable")
	// ErrNotRecorded means the grant was consumed but its redemption could
	// not be recorded in the audit stream: the grant is used up, and the
	// caller must not act on it.
	ErrNotRecorded = errors.New("redemption not recorded in the audit stream; the grant is used up")
	// ErrNotAccepted is a refusal by the accept function of RedeemAsHolder.
	ErrNotAccepted = errors.New("refused by the redeeming service")
)

// ErrBucketTooShort is Run's (and Revoke's) error for a redemption bucket
// that exists but forgets its entries sooner than single use needs (made
// by hand, or weakened): an operator must make it again.
var ErrBucketTooShort = errors.New("a redemption bucket keeps its entries too briefly")

// Error is a refusal: a reason code (as recorded in the refused redeemed
// event), the request and token hash when known, and the cause, which
// errors.Is matches against the sentinels above and the issuer's.
type Error struct {
	Code      string
	RequestID string // "" when the token did not say
	TokenHash string
	Err       error
}

func (e *Error) Error() string { return "grant refused (" + e.Code + "): " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

var codes = []struct {
	err  error
	code string
}{
	{ErrNotReady, "not-ready"},
	{ErrNoScope, "no-scope"},
	{ErrMalformedProof, "malformed-proof"},
	{ErrBadProof, "bad-proof"},
	{ErrStaleProof, "stale-proof"},
	{ErrReplayedProof, "replayed-proof"},
	{ErrRevoked, "revoked"},
	{ErrLocked, "locked"},
	{ErrAlreadyUsed, "already-used"},
	{ErrNotGranted, "not-granted"},
	{ErrTooLong, "too-long"},
	{ErrNotRecorded, "not-recorded"},
	{ErrUnavailable, "unavailable"},
	{issuer.ErrMalformed, "malformed"},
	{issuer.ErrWrongType, "wrong-type"},
	{issuer.ErrUntrustedIssuer, "untrusted-issuer"},
	{issuer.ErrWrongAudience, "wrong-audience"},
	{issuer.ErrNoAudience, "no-audience"},
	{issuer.ErrWrongAction, "wrong-action"},
	{issuer.ErrWrongResource, "wrong-resource"},
	{issuer.ErrWrongHolder, "wrong-holder"},
	{issuer.ErrWrongParams, "wrong-params"},
	{issuer.ErrNotYetValid, "not-yet-valid"},
	{issuer.ErrExpired, "expired"},
	// Last: a refusal by the caller keeps the code of a known cause it wraps.
	{ErrNotAccepted, "not-accepted"},
}

// Code returns the reason code of a refusal, "internal" for an error that
// is none of the known ones.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}
