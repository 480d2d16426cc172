package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/schemas"
)

// DefaultMaxBody is the largest event body a checker accepts by default.
const DefaultMaxBody = 64 << 10

// Message is a message as stored in the stream.
type Message struct {
	Subject string
	Seq     uint64
	Time    time.Time // when the stream stored it
	Header  map[string][]string
	Body    []byte
}

func (m Message) header(k string) string {
	if v := m.Header[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Record is a stored message with everything Inspect learned about it. Err
// is nil only when the message is a well-formed event, signed by a key
// entitled to emit its kind for its domain.
type Record struct {
	Message
	Domain    string
	RequestID string
	Kind      Kind
	Digest    string
	Envelope  Envelope
	Data      any // *Requested, *Evaluated, … matching Kind
	Signer    string
	Role      identity.Role       // for component events
	Principal *identity.Principal // for principal events, verified
	Err       error
}

// Valid reports whether the record can be trusted.
func (r Record) Valid() bool { return r.Err == nil }

// Checker inspects stored messages against a trust bundle.
type Checker struct {
	Bundle  *identity.Bundle
	MaxBody int // 0 means DefaultMaxBody
	// Cache, when set, keeps what Inspect concluded about stored messages
	// (those with a stored time), so that one read again is not verified
	// again. Share one among the checkers of a process.
	Cache *InspectCache
}

// Inspect checks, in order: subject, size, JSON (no key twice in one
// object: the schema and the decoding would read it differently), type
// against subject, schema, signature, and the signer's entitlement (a
// component key of the subject's domain for component kinds; the
// identity's own key, chained to its domain's account key, for requests
// and votes). The first failure is recorded in Err; the fields learnt
// before it stay set.
//
// An identity must be valid when the stream stored the message (m.Time), so
// that a history stays valid after its signers' JWTs expire; now is used
// only for a message that has no stored time.
func (c Checker) Inspect(m Message, now time.Time) Record {
	d := Digest(m.Body)
	if c.Cache == nil {
		return c.inspect(m, d, now)
	}
	if r, ok := c.Cache.get(m, d, c.Bundle, c.MaxBody); ok {
		if !r.remembered() {
			return r
		}
		// Remembered as sealed here, read back for the first time.
		if r, ok = c.recall(r, m); ok {
			c.Cache.put(r, c.Bundle, c.MaxBody)
			return r
		}
	}
	r := c.inspect(m, d, now)
	// A principal's event is judged at its stored time: one not yet stored
	// (a notice) is judged at now, which is no verdict to keep.
	if !m.Time.IsZero() || r.Kind != KindNone && !r.Kind.FromPrincipal() {
		c.Cache.put(r, c.Bundle, c.MaxBody)
	}
	return r
}

func (c Checker) inspect(m Message, digest string, now time.Time) Record {
	if !m.Time.IsZero() {
		now = m.Time
	}
	r := Record{Message: m, Digest: digest, Signer: m.header(HeaderSigner)}
	var err error
	r.Domain, r.RequestID, r.Kind, err = ParseSubject(m.Subject)
	if err != nil {
		r.Err = err
		return r
	}
	limit := c.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	if len(m.Body) > limit {
		r.Err = fmt.Errorf("%w: %d bytes, limit %d", ErrOversized, len(m.Body), limit)
		return r
	}
	// One pass decodes the envelope and its data, into the kind's type
	// (Unmarshal checks the whole body is JSON before it decodes any of
	// it). A body that does not decode so is decoded again step by step,
	// for the error each step gives.
	data, once := decodeOnce(r.Kind, m.Body, &r.Envelope)
	if !once {
		if err := json.Unmarshal(m.Body, &r.Envelope); err != nil {
			var syntax *json.SyntaxError
			if errors.As(err, &syntax) {
				r.Err = ErrMalformed // not JSON at all: the parser's words help nobody
			} else {
				r.Err = fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return r
		}
	}
	// (What one pass decoded from a body with a key twice merged both: it
	// goes with the record refused here.)
	if k, dup := duplicateKey(m.Body); dup {
		r.Err = fmt.Errorf("%w: the key %q appears twice in one object", ErrMalformed, k)
		return r
	}
	if !r.Kind.Accepts(r.Envelope.Type) {
		r.Err = fmt.Errorf("%w: type %q on a %s subject", ErrTypeMismatch, r.Envelope.Type, r.Kind)
		return r
	}
	if err := schemas.Validate(r.Envelope.Type, m.Body); err != nil {
		r.Err = fmt.Errorf("%w: %v", ErrSchema, err)
		return r
	}
	if r.Envelope.Subject != r.RequestID {
		r.Err = fmt.Errorf("%w: event subject %q", ErrTypeMismatch, r.Envelope.Subject)
		return r
	}
	if r.Data = data; !once {
		if r.Data, err = decodeData(r.Kind, r.Envelope.Data); err != nil {
			r.Err = fmt.Errorf("%w: %v", ErrSchema, err)
			return r
		}
	}
	if err := VerifySignature(r.Signer, m.header(HeaderSignature), m.Body); err != nil {
		r.Err = err
		return r
	}
	if r.Kind.FromPrincipal() {
		r.Err = c.checkPrincipal(&r, now)
		return r
	}
	r.Role, r.Err = c.entitledRole(r)
	return r
}

// entitledRole is the role a component event's signer holds for it in its
// domain: the role that owns the kind, or for a refusal any of the
// domain's components.
func (c Checker) entitledRole(r Record) (identity.Role, error) {
	role := RoleFor(r.Kind)
	if r.Kind.fromAnyComponent() {
		role, _ = c.Bundle.RoleOf(r.Domain, r.Signer)
	}
	if role == "" || !c.Bundle.Entitled(r.Domain, role, r.Signer) {
		return "", fmt.Errorf("%w: %s for %q", ErrNotEntitled, r.Kind, r.Domain)
	}
	return role, nil
}

func (c Checker) checkPrincipal(r *Record, now time.Time) error {
	a, ok := r.Data.(ask)
	if !ok {
		return fmt.Errorf("%w: %s names no signer", ErrMalformed, r.Kind) // see ask
	}
	token, claimed, domain := a.asker()
	if d, ok := r.Data.(*Requested); ok && !nkeys.IsValidPublicCurveKey(d.HolderXKey) {
		return fmt.Errorf("%w: holder_xkey is not a curve public key", ErrBadHolderKey)
	}
	// The signature covers the body, not the subject: the body names the
	// domain, so a signed request or vote cannot be replayed into another.
	if domain != r.Domain {
		return fmt.Errorf("%w: signed for domain %q, published to %q", ErrWrongDomain, domain, r.Domain)
	}
	p, err := c.Bundle.VerifyUser(token, now)
	if err != nil {
		return err
	}
	if p.Key != r.Signer {
		return ErrSignerMismatch
	}
	if p.Domain != claimed.Domain || p.Name != claimed.Name {
		return fmt.Errorf("%w: claims %s, identity is %s", ErrClaimedIdentity, claimed.ID(), p.ID())
	}
	r.Principal = &p
	return nil
}

// decodeOnce decodes an event body's envelope into env and its data into
// a new value of k's type, in one pass; ok is false when it cannot, and
// env is then to be decoded again. On success env.Data is left empty: the
// data is the value returned.
func decodeOnce(k Kind, body []byte, env *Envelope) (data any, ok bool) {
	into := struct {
		Envelope
		Data any `json:"data"` // shadows Envelope.Data
	}{Data: NewData(k)}
	if into.Data == nil || json.Unmarshal(body, &into) != nil || into.Data == nil {
		return nil, false
	}
	*env = into.Envelope
	return into.Data, true
}

func decodeData(k Kind, raw json.RawMessage) (any, error) {
	v := NewData(k)
	if v == nil {
		return nil, fmt.Errorf("no data type for %v", k)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, err
	}
	return v, nil
}

// Code returns the short, stable reason code for an error from Inspect or
// from identity verification. It is what rejected and refused events carry.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "invalid"
}

var codes = []struct {
	err  error
	code string
}{
	{ErrSubject, "bad-subject"},
	{ErrOversized, "oversized"},
	{ErrMalformed, "malformed"},
	{ErrSchema, "schema"},
	{ErrTypeMismatch, "type-mismatch"},
	{ErrUnsigned, "unsigned"},
	{ErrBadSignature, "bad-signature"},
	{ErrNotEntitled, "signer-not-entitled"},
	{ErrSignerMismatch, "signer-mismatch"},
	{ErrClaimedIdentity, "identity-mismatch"},
	{ErrWrongDomain, "wrong-domain"},
	{ErrBadHolderKey, "bad-holder-key"},
	{identity.ErrIdentityMalformed, "identity-malformed"},
	{identity.ErrNoDomain, "identity-no-domain"},
	{identity.ErrUnknownDomain, "unknown-domain"},
	{identity.ErrUntrustedKey, "untrusted-key"},
	{identity.ErrKeyRevoked, "key-revoked"},
	{identity.ErrIdentityExpired, "identity-expired"},
	{identity.ErrNotYetValid, "identity-not-yet-valid"},
}
