package identity

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/internal/fifo"
)

// Errors returned when an identity is refused. Each is a distinct reason.
var (
	ErrIdentityMalformed = errors.New("malformed user JWT")
	ErrNoDomain          = errors.New("user JWT names no domain")
	ErrUnknownDomain     = errors.New("unknown domain")
	ErrUntrustedKey      = errors.New("signed by a key not trusted for its domain")
	ErrKeyRevoked        = errors.New("signed by a key revoked for its domain")
	ErrIdentityExpired   = errors.New("user JWT expired")
	ErrNotYetValid       = errors.New("user JWT not yet valid")
)

// Tag prefixes carried in a user JWT.
const (
	TagDomain = "domain:"
	TagGroup  = "group:"
)

// Principal is a verified (or, from Claims, a self-described) identity.
type Principal struct {
	Domain  string    `json:"domain"`
	Name    string    `json:"name"`
	Key     string    `json:"key"`
	Account string    `json:"account,omitempty"`
	Groups  []string  `json:"groups,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// ID is the principal's name qualified by its domain: "domain/name".
func (p Principal) ID() string { return p.Domain + "/" + p.Name }

// InGroup reports whether the principal belongs to group.
func (p Principal) InGroup(group string) bool { return slices.Contains(p.Groups, group) }

// Claims reads a user JWT without trusting it: the signature is checked
// against the issuer named inside the token, nothing more.
func Claims(token string) (*jwt.UserClaims, Principal, error) {
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, Principal{}, fmt.Errorf("%w: %v", ErrIdentityMalformed, err)
	}
	p := Principal{Name: uc.Name, Key: uc.Subject, Account: uc.Issuer}
	if uc.Expires > 0 {
		p.Expires = time.Unix(uc.Expires, 0).UTC()
	}
	for _, t := range uc.Tags {
		switch {
		case strings.HasPrefix(t, TagDomain):
			if p.Domain != "" && p.Domain != t[len(TagDomain):] {
				return nil, Principal{}, fmt.Errorf("%w: two domain tags", ErrIdentityMalformed)
			}
			p.Domain = t[len(TagDomain):]
		case strings.HasPrefix(t, TagGroup):
			p.Groups = append(p.Groups, t[len(TagGroup):])
		}
	}
	slices.Sort(p.Groups)
	if p.Name == "" || !nkeys.IsValidPublicUserKey(p.Key) {
		return nil, Principal{}, fmt.Errorf("%w: no name or no user key", ErrIdentityMalformed)
	}
	return uc, p, nil
}

// VerifyUser checks a user JWT against the bundle: the domain it claims must
// be trusted, the JWT must be signed by one of that domain's own account
// keys, not revoked for it, and be valid at now. Each refusal wraps its own
// error: ErrUnknownDomain, ErrKeyRevoked, ErrUntrustedKey, ErrIdentityExpired…
func (b *Bundle) VerifyUser(token string, now time.Time) (Principal, error) {
	uc, p, err := cachedClaims(token)
	if err != nil {
		return Principal{}, err
	}
	if p.Domain == "" {
		return Principal{}, ErrNoDomain
	}
	d := b.Domains[p.Domain]
	if d == nil {
		return Principal{}, fmt.Errorf("%w %q", ErrUnknownDomain, p.Domain)
	}
	// A revoked key is refused as such even while still listed, so that the
	// reason recorded says what happened.
	for _, k := range []string{uc.Issuer, uc.IssuerAccount} {
		if k != "" && d.IsRevoked(k) {
			return Principal{}, fmt.Errorf("%w: %s is revoked for %q", ErrKeyRevoked, k, p.Domain)
		}
	}
	// A signing key would put the account in IssuerAccount; Writ only trusts
	// the account keys listed for the domain, so the issuer must be one of them.
	if uc.IssuerAccount != "" || !slices.Contains(d.Accounts, uc.Issuer) {
		return Principal{}, fmt.Errorf("%w: %s is not an account key of %q", ErrUntrustedKey, uc.Issuer, p.Domain)
	}
	if uc.Expires > 0 && now.Unix() >= uc.Expires {
		return Principal{}, fmt.Errorf("%w at %s", ErrIdentityExpired, p.Expires.Format(time.RFC3339))
	}
	if uc.NotBefore > 0 && now.Unix() < uc.NotBefore {
		return Principal{}, ErrNotYetValid
	}
	return p, nil
}

// decoded holds the user JWTs whose signature was checked lately: one
// requester's token arrives with each of its requests and votes, and every
// component reads it again in each history. What the bundle says of it
// (trusted, revoked, expired) is decided again on each call.
var decoded = fifo.New[string, claimed](4096)

type claimed struct {
	uc *jwt.UserClaims
	p  Principal
}

// cachedClaims is Claims, remembering tokens that passed. The claims are
// shared: callers read them, and get their own copy of the groups.
func cachedClaims(token string) (*jwt.UserClaims, Principal, error) {
	if c, ok := decoded.Get(token); ok {
		p := c.p
		p.Groups = slices.Clone(p.Groups)
		return c.uc, p, nil
	}
	uc, p, err := Claims(token)
	if err != nil {
		return nil, Principal{}, err
	}
	decoded.Put(token, claimed{uc: uc, p: p})
	p.Groups = slices.Clone(p.Groups)
	return uc, p, nil
}
