package issuer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// GrantType is the explicit type of a grant JWT.
const GrantType = "writ-grant"

// Claims are a grant's claims.
type Claims struct {
	ID           string    `json:"jti"` // unique per grant: jwt/v2's hash of the standard claims, whose name carries Nonce
	Issuer       string    `json:"iss"`
	Holder       string    `json:"sub"` // the requester's user public key
	Audience     string    `json:"aud"` // the target domain
	IssuedAt     time.Time `json:"iat"`
	NotBefore    time.Time `json:"nbf"`
	Expires      time.Time `json:"exp"`
	RequestID    string    `json:"request_id"`
	Action       string    `json:"action"`
	Resource     string    `json:"resource"`
	ParamsDigest string    `json:"params_digest"`
	Evidence     string    `json:"evidence"`
	BreakGlass   bool      `json:"break_glass,omitempty"`
	Nonce        string    `json:"nonce"`
}

// Constraints are what a grant may allow. Mint refuses any it cannot honour.
type Constraints struct {
	RequestID    string
	Holder       string // user public key
	Audience     string // target domain
	Action       string
	Resource     string
	ParamsDigest string
	Evidence     string // digest of the last event before the grant
	BreakGlass   bool
	NotBefore    time.Time
	TTL          time.Duration
}

// Limits on a grant's lifetime, Writ's one statement of them: Mint holds
// every grant to them, CheckLifetimes an installation's default and
// maximum, policy.Load a policy's @max_ttl, and the requested event's
// schema a requested ttl_seconds (a test checks that it says the same).
const (
	MinTTL = 10 * time.Second
	MaxTTL = 24 * time.Hour
)

// ErrConstraint is returned for constraints Mint cannot honour.
var ErrConstraint = errors.New("grant constraint not met")

// ErrLifetimes is returned by CheckLifetimes.
var ErrLifetimes = errors.New("grant lifetimes out of bounds")

// CheckLifetimes checks an installation's default and maximum grant
// lifetimes: MinTTL ≤ def ≤ max ≤ MaxTTL.
func CheckLifetimes(def, max time.Duration) error {
	if def < MinTTL || max > MaxTTL || def > max {
		return fmt.Errorf("%w: need %s <= default <= max <= %s, not default %s and max %s", ErrLifetimes, MinTTL, MaxTTL, def, max)
	}
	return nil
}

// Issuer mints and seals grants with its signing key and its curve key.
type Issuer struct {
	key  nkeys.KeyPair
	xkey nkeys.KeyPair
	xpub string
}

// New returns an issuer. key signs grants (a server nkey); xkey seals them.
func New(key, xkey nkeys.KeyPair) (*Issuer, error) {
	pub, err := key.PublicKey()
	if err != nil || !nkeys.IsValidPublicServerKey(pub) {
		return nil, fmt.Errorf("%w: signing key must be a server nkey", ErrConstraint)
	}
	xpub, err := xkey.PublicKey()
	if err != nil || !nkeys.IsValidPublicCurveKey(xpub) {
		return nil, fmt.Errorf("%w: sealing key must be a curve (x) key", ErrConstraint)
	}
	return &Issuer{key: key, xkey: xkey, xpub: xpub}, nil
}

// XKey returns the issuer's public curve key, which sealed grants name.
func (i *Issuer) XKey() string { return i.xpub }

// Mint signs a grant for the constraints.
func (i *Issuer) Mint(c Constraints) (string, Claims, error) {
	var errs []error
	if !nkeys.IsValidPublicUserKey(c.Holder) {
		errs = append(errs, errors.New("holder is not a user public key"))
	}
	if !identity.ValidDomainName(c.Audience) {
		errs = append(errs, errors.New("audience is not a domain name"))
	}
	if c.Action == "" || c.Resource == "" || c.RequestID == "" {
		errs = append(errs, errors.New("request id, action and resource are required"))
	}
	if c.TTL < MinTTL || c.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("lifetime %s outside [%s, %s]", c.TTL, MinTTL, MaxTTL))
	}
	if c.NotBefore.IsZero() {
		errs = append(errs, errors.New("not-before is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return "", Claims{}, fmt.Errorf("%w: %w", ErrConstraint, err)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", Claims{}, err
	}
	gc := jwt.NewGenericClaims(c.Holder)
	gc.Audience = c.Audience
	gc.NotBefore = c.NotBefore.Unix()
	gc.Expires = c.NotBefore.Add(c.TTL).Unix()
	// jwt/v2 sets the jti to a hash of the standard claims alone: putting
	// the nonce among them (as the name) makes that hash unique and
	// unpredictable, where otherwise two grants for one holder, action and
	// resource within a second would share it.
	gc.Name = "writ-grant-" + hex.EncodeToString(nonce)
	gc.Data["type"] = GrantType
	gc.Data["request_id"] = c.RequestID
	gc.Data["action"] = c.Action
	gc.Data["resource"] = c.Resource
	gc.Data["params_digest"] = c.ParamsDigest
	gc.Data["evidence"] = c.Evidence
	gc.Data["break_glass"] = c.BreakGlass
	gc.Data["nonce"] = hex.EncodeToString(nonce)
	token, err := gc.Encode(i.key)
	if err != nil {
		return "", Claims{}, fmt.Errorf("sign grant: %w", err)
	}
	// Encode filled in the issuer, id and issue time: the claims are read
	// from what was signed, not from a decoding (and a second signature
	// check) of the token.
	cl, err := claimsFrom(gc)
	if err != nil {
		return "", Claims{}, err
	}
	return token, cl, nil
}

// Seal encrypts a token to the holder's curve key.
func (i *Issuer) Seal(token, holderXKey string) (string, error) {
	if !nkeys.IsValidPublicCurveKey(holderXKey) {
		return "", fmt.Errorf("%w: holder xkey is not a curve public key", ErrConstraint)
	}
	ct, err := i.xkey.Seal([]byte(token), holderXKey)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// Open decrypts a sealed grant with the holder's curve key.
func Open(sealed, issuerXKey string, holder nkeys.KeyPair) (string, error) {
	if !nkeys.IsValidPublicCurveKey(issuerXKey) {
		return "", fmt.Errorf("sealed_by %q is not a curve public key", issuerXKey)
	}
	ct, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", fmt.Errorf("sealed grant is not base64: %w", err)
	}
	pt, err := holder.Open(ct, issuerXKey)
	if err != nil {
		return "", fmt.Errorf("open sealed grant: %w", err)
	}
	return string(pt), nil
}

// HolderXKey derives the curve key a request's grant is sealed to from the
// requester's user key and the request id, so that whoever holds the .creds
// can open the grant later, and no two requests share a sealing key.
func HolderXKey(user nkeys.KeyPair, requestID string) (nkeys.KeyPair, error) {
	seed, err := user.Seed()
	if err != nil {
		return nil, err
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte("writ holder xkey v1\x00" + requestID))
	xseed, err := nkeys.EncodeSeed(nkeys.PrefixByteCurve, mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return nkeys.FromCurveSeed(xseed)
}

// TokenHash is how a grant is named in events and logs: never the token itself.
func TokenHash(token string) string { return events.Digest([]byte(token)) }

// ParamsDigest is the digest of a request's parameters (canonical JSON, sorted keys).
func ParamsDigest(params map[string]string) string {
	if params == nil {
		params = map[string]string{}
	}
	b, _ := json.Marshal(params)
	return events.Digest(b)
}

func claimsOf(token string) (Claims, error) {
	gc, err := jwt.DecodeGeneric(token)
	if err != nil {
		return Claims{}, ErrMalformed // the JWT library's text (a JSON parser's) tells a holder nothing more
	}
	return claimsFrom(gc)
}

func claimsFrom(gc *jwt.GenericClaims) (Claims, error) {
	str := func(k string) string { s, _ := gc.Data[k].(string); return s }
	bg, _ := gc.Data["break_glass"].(bool)
	if str("type") != GrantType {
		return Claims{}, fmt.Errorf("%w: type %q", ErrWrongType, str("type"))
	}
	return Claims{
		ID: gc.ID, Issuer: gc.Issuer, Holder: gc.Subject, Audience: gc.Audience,
		IssuedAt:     time.Unix(gc.IssuedAt, 0).UTC(),
		NotBefore:    time.Unix(gc.NotBefore, 0).UTC(),
		Expires:      time.Unix(gc.Expires, 0).UTC(),
		RequestID:    str("request_id"),
		Action:       str("action"),
		Resource:     str("resource"),
		ParamsDigest: str("params_digest"),
		Evidence:     str("evidence"),
		BreakGlass:   bg,
		Nonce:        str("nonce"),
	}, nil
}
