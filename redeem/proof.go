package redeem

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/issuer"
)

// Want is what the target service is about to do, which the grant must
// allow exactly.
type Want struct {
	Action   string
	Resource string
	Params   map[string]string // nil is the same as none
}

// Digest binds the action, the resource and the parameters digest in one
// value, which a holder proof signs.
func (w Want) Digest() string {
	b, _ := json.Marshal(struct {
		Action       string `json:"action"`
		Resource     string `json:"resource"`
		ParamsDigest string `json:"params_digest"`
	}{w.Action, w.Resource, issuer.ParamsDigest(w.Params)})
	return events.Digest(b)
}

// Proof is a holder's proof of possession: a signature by the grant
// holder's user nkey over a fresh challenge binding the token, what is to
// be done, the time and a random nonce.
type Proof struct {
	Holder    string    // the holder's user public key
	Nonce     string    // 32 hex digits, random
	Time      time.Time // when the holder made the proof
	Signature string    // base64url Ed25519 over Message
}

// ProofVersion is the first field of an encoded proof.
const ProofVersion = "v1"

// ErrMalformedProof is returned for a proof that does not parse.
var ErrMalformedProof = errors.New("malformed holder proof")

const nonceBytes = 16

// Prove makes a proof of possession of token for want with the holder's
// user key, at now.
func Prove(holder nkeys.KeyPair, token string, want Want, now time.Time) (Proof, error) {
	pub, err := holder.PublicKey()
	if err != nil {
		return Proof{}, err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return Proof{}, fmt.Errorf("%w: the holder key must be a user nkey", ErrMalformedProof)
	}
	n := make([]byte, nonceBytes)
	if _, err := rand.Read(n); err != nil {
		return Proof{}, err
	}
	p := Proof{Holder: pub, Nonce: hex.EncodeToString(n), Time: time.Unix(0, now.UnixNano()).UTC()}
	sig, err := holder.Sign(p.Message(issuer.TokenHash(token), want))
	if err != nil {
		return Proof{}, fmt.Errorf("sign proof: %w", err)
	}
	p.Signature = base64.RawURLEncoding.EncodeToString(sig)
	return p, nil
}

// Message is the canonical byte string a proof signs.
func (p Proof) Message(tokenHash string, want Want) []byte {
	return []byte(strings.Join([]string{
		"writ redeem proof " + ProofVersion,
		p.Holder,
		tokenHash,
		want.Digest(),
		strconv.FormatInt(p.Time.UnixNano(), 10),
		p.Nonce,
	}, "\n"))
}

// verify checks the signature by holder over the proof's message.
func (p Proof) verify(holder, tokenHash string, want Want) error {
	if p.Holder == "" || p.Holder != holder {
		return fmt.Errorf("%w: made by %q, the grant is held by %s", ErrBadProof, p.Holder, holder)
	}
	if n, err := hex.DecodeString(p.Nonce); err != nil || len(n) != nonceBytes || strings.ToLower(p.Nonce) != p.Nonce {
		return fmt.Errorf("%w: nonce is not %d lower-case hex digits", ErrBadProof, 2*nonceBytes)
	}
	kp, err := nkeys.FromPublicKey(holder)
	if err != nil {
		return fmt.Errorf("%w: holder is not a public key", ErrBadProof)
	}
	sig, err := base64.RawURLEncoding.DecodeString(p.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64url", ErrBadProof)
	}
	if err := kp.Verify(p.Message(tokenHash, want), sig); err != nil {
		return fmt.Errorf("%w: signature is not the holder's over this token and action", ErrBadProof)
	}
	return nil
}

// Encode returns the proof as one string, for a header or a flag:
// v1.<holder>.<nonce>.<unix-nanoseconds>.<signature>.
func (p Proof) Encode() string {
	return strings.Join([]string{ProofVersion, p.Holder, p.Nonce, strconv.FormatInt(p.Time.UnixNano(), 10), p.Signature}, ".")
}

// ParseProof reads a proof written by Encode. It checks the form of every
// field, not the signature.
func ParseProof(s string) (Proof, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 5 {
		return Proof{}, fmt.Errorf("%w: want 5 dot-separated fields, got %d", ErrMalformedProof, len(parts))
	}
	if parts[0] != ProofVersion {
		return Proof{}, fmt.Errorf("%w: unknown version %.8q", ErrMalformedProof, parts[0])
	}
	holder, nonce, ts, sig := parts[1], parts[2], parts[3], parts[4]
	if !nkeys.IsValidPublicUserKey(holder) {
		return Proof{}, fmt.Errorf("%w: holder is not a user public key", ErrMalformedProof)
	}
	if n, err := hex.DecodeString(nonce); err != nil || len(n) != nonceBytes || strings.ToLower(nonce) != nonce {
		return Proof{}, fmt.Errorf("%w: nonce is not %d lower-case hex digits", ErrMalformedProof, 2*nonceBytes)
	}
	if len(ts) == 0 || len(ts) > 19 || strings.Trim(ts, "0123456789") != "" || (len(ts) > 1 && ts[0] == '0') {
		return Proof{}, fmt.Errorf("%w: time is not a count of nanoseconds", ErrMalformedProof)
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Proof{}, fmt.Errorf("%w: time is not a count of nanoseconds", ErrMalformedProof)
	}
	if raw, err := base64.RawURLEncoding.Strict().DecodeString(sig); err != nil || len(raw) != 64 {
		return Proof{}, fmt.Errorf("%w: signature is not 64 bytes of base64url", ErrMalformedProof)
	}
	return Proof{Holder: holder, Nonce: nonce, Time: time.Unix(0, ns).UTC(), Signature: sig}, nil
}
