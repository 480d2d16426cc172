package issuer

import (
	"errors"
	"fmt"
	"time"

	"github.com/writ-dev/writ/identity"
)

// Verification errors, one per reason a grant is refused.
var (
	ErrMalformed       = errors.New("not a grant token: it does not decode, or its signature does not verify")
	ErrWrongType       = errors.New("not a Writ grant")
	ErrUntrustedIssuer = errors.New("the grant's issuer is not trusted for its domain")
	ErrWrongAudience   = errors.New("the grant is for another domain")
	ErrNoAudience      = errors.New("the verifier must name its domain (VerifyOptions.Audience)")
	ErrWrongAction     = errors.New("the grant is for another action")
	ErrWrongResource   = errors.New("the grant is for another resource")
	ErrWrongHolder     = errors.New("the grant is held by another key")
	ErrWrongParams     = errors.New("the grant binds other parameters")
	ErrNotYetValid     = errors.New("the grant is not valid yet")
	ErrExpired         = errors.New("the grant has expired")
)

// DefaultLeeway is the clock skew tolerated on nbf and exp.
const DefaultLeeway = 30 * time.Second

// MaxLeeway bounds the configurable leeway.
const MaxLeeway = 5 * time.Minute

// VerifyOptions say what a grant must be valid for.
type VerifyOptions struct {
	Bundle   *identity.Bundle
	Audience string            // required domain; "" accepts any domain the bundle trusts
	Action   string            // "" skips the check
	Resource string            // "" skips the check
	Holder   string            // the holder's user public key; "" skips the check
	Params   map[string]string // checked against the grant's digest when non-nil
	Now      time.Time
	Leeway   time.Duration // 0 means DefaultLeeway
}

// Verify checks a grant's signature, type, issuer (trusted for its audience
// domain), scope and validity window. It does not consume the grant.
func Verify(token string, o VerifyOptions) (Claims, error) {
	if o.Audience == "" {
		return Claims{}, ErrNoAudience
	}
	c, err := claimsOf(token)
	if err != nil {
		return Claims{}, err
	}
	if c.Audience != o.Audience {
		return c, fmt.Errorf("%w: %q", ErrWrongAudience, c.Audience)
	}
	if o.Bundle == nil || !o.Bundle.Entitled(c.Audience, identity.RoleIssuer, c.Issuer) {
		return c, fmt.Errorf("%w: %s for %q", ErrUntrustedIssuer, c.Issuer, c.Audience)
	}
	if o.Action != "" && c.Action != o.Action {
		return c, fmt.Errorf("%w: %q", ErrWrongAction, c.Action)
	}
	if o.Resource != "" && c.Resource != o.Resource {
		return c, fmt.Errorf("%w: %q", ErrWrongResource, c.Resource)
	}
	if o.Holder != "" && c.Holder != o.Holder {
		return c, ErrWrongHolder
	}
	if o.Params != nil && c.ParamsDigest != ParamsDigest(o.Params) {
		return c, ErrWrongParams
	}
	leeway := o.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	leeway = min(max(leeway, 0), MaxLeeway)
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if now.Add(leeway).Before(c.NotBefore) {
		return c, fmt.Errorf("%w until %s", ErrNotYetValid, c.NotBefore.Format(time.RFC3339))
	}
	if !now.Add(-leeway).Before(c.Expires) {
		return c, fmt.Errorf("%w at %s", ErrExpired, c.Expires.Format(time.RFC3339))
	}
	return c, nil
}
