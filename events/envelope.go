package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/writ-dev/writ/identity"
)

// Header names carried by every event message.
const (
	HeaderMsgID     = "Nats-Msg-Id"
	HeaderSigner    = "Writ-Signer"    // public nkey of the producer
	HeaderSignature = "Writ-Signature" // base64url Ed25519 signature over the body bytes
)

// SpecVersion and ContentType are fixed by CloudEvents structured mode.
const (
	SpecVersion = "1.0"
	ContentType = "application/json"
)

// Envelope is a CloudEvents 1.0 structured-mode event.
type Envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"` // the request id
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	// Data is the event's data as it is sent. A record read from the
	// stream holds it decoded instead (Record.Data), and this empty.
	Data json.RawMessage `json:"data"`
}

// Draft is an event about to be signed and published.
type Draft struct {
	Domain    string // target domain
	RequestID string
	Kind      Kind
	Ordinal   string // tells apart events of the same kind in one request
	Source    string // who produced it: ComponentSource, PrincipalSource, RedeemerSource
	Time      time.Time
	Data      any
}

// Outgoing is a signed event ready to publish.
type Outgoing struct {
	Subject   string
	MsgID     string
	Body      []byte
	Signer    string
	Signature string
}

// Header returns the message headers of the event.
func (o Outgoing) Header() map[string][]string {
	return map[string][]string{
		HeaderMsgID:     {o.MsgID},
		HeaderSigner:    {o.Signer},
		HeaderSignature: {o.Signature},
	}
}

// Seal encodes the draft as a CloudEvent and signs the body with kp.
func Seal(d Draft, kp nkeys.KeyPair) (Outgoing, error) {
	if d.Kind.Type() == "" {
		return Outgoing{}, fmt.Errorf("cannot seal kind %v", d.Kind)
	}
	data, err := json.Marshal(d.Data)
	if err != nil {
		return Outgoing{}, fmt.Errorf("encode data: %w", err)
	}
	// The message id is deterministic — the same producer sealing the same
	// data gets the same id, so its retries dedupe — and carries a tag only
	// the producer's key can make, so that nobody can squat the id of an
	// event a component is about to publish and have the real one dropped
	// as a duplicate.
	base := MsgID(d.RequestID, d.Kind, d.Ordinal)
	tag, err := KeyedTag(kp, base+"\x00"+Digest(data))
	if err != nil {
		return Outgoing{}, err
	}
	id := base + "." + tag
	body, err := json.Marshal(Envelope{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          d.Source,
		Type:            d.Kind.Type(),
		Subject:         d.RequestID,
		Time:            d.Time.UTC(),
		DataContentType: ContentType,
		Data:            data,
	})
	if err != nil {
		return Outgoing{}, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Outgoing{}, err
	}
	sig, err := kp.Sign(body)
	if err != nil {
		return Outgoing{}, fmt.Errorf("sign: %w", err)
	}
	return Outgoing{
		Subject:   Subject(d.Domain, d.RequestID, d.Kind),
		MsgID:     id,
		Body:      body,
		Signer:    pub,
		Signature: base64.RawURLEncoding.EncodeToString(sig),
	}, nil
}

// KeyedTag is a short tag over text that only kp can make, and that kp
// always makes the same: it keeps message ids deterministic for their
// producer and unforgeable by others. It is an HMAC-SHA256 under a key
// derived from kp's seed (identity.TagKey), which costs a microsecond where
// a signature cost tens.
func KeyedTag(kp nkeys.KeyPair, text string) (string, error) {
	key, ok := identity.TagKey(kp)
	if !ok {
		return "", errors.New("tag: not an Ed25519 signing key with a seed")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("writ msg-id\x00" + text))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(mac.Sum(nil)[:10])), nil
}

// Digest is the SHA-256 of an event body, as "sha256:<hex>". Chains, votes
// and grants refer to events by their digest.
func Digest(body []byte) string {
	h := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(h[:])
}

// VerifySignature checks a base64url Ed25519 signature by the public nkey
// signer over body.
func VerifySignature(signer, signature string, body []byte) error {
	if signer == "" || signature == "" {
		return ErrUnsigned
	}
	kp, err := nkeys.FromPublicKey(signer)
	if err != nil {
		return fmt.Errorf("%w: signer is not a public nkey", ErrBadSignature)
	}
	sig, err := base64.RawURLEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("%w: not base64url", ErrBadSignature)
	}
	if err := kp.Verify(body, sig); err != nil {
		return ErrBadSignature
	}
	return nil
}

// Errors that make a message untrustworthy. Code maps each to the short
// reason code recorded in rejected and refused events.
var (
	ErrOversized       = errors.New("body too large")
	ErrMalformed       = errors.New("body is not a JSON CloudEvent")
	ErrSchema          = errors.New("body does not match its schema")
	ErrTypeMismatch    = errors.New("event type or subject does not match the message subject")
	ErrUnsigned        = errors.New("message is not signed")
	ErrBadSignature    = errors.New("signature does not verify")
	ErrNotEntitled     = errors.New("signer is not entitled to emit this kind for this domain")
	ErrSignerMismatch  = errors.New("signer is not the principal named by the identity")
	ErrClaimedIdentity = errors.New("claimed principal differs from the identity")
	ErrWrongDomain     = errors.New("signed for another domain than its subject's")
	ErrBadHolderKey    = errors.New("bad holder key")
)
