package identity

import (
	"crypto/ed25519"
	"crypto/sha256"

	"github.com/nats-io/nkeys"
)

// Fast returns a signing key pair that derives its Ed25519 private key and
// public key once. nkeys derives both from the seed again on every Sign
// and PublicKey, which was most of the cost of sealing an event (Seal asks
// for the public key and signs twice). Signatures are the same: Ed25519 is
// deterministic. A key that is not an Ed25519 signing key (a curve key) or
// whose seed cannot be read is returned as it is.
func Fast(kp nkeys.KeyPair) nkeys.KeyPair {
	if kp == nil {
		return nil
	}
	if _, ok := kp.(*fastKey); ok {
		return kp
	}
	raw, ok := signingSeed(kp)
	if !ok {
		return kp
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return kp
	}
	return &fastKey{KeyPair: kp, pub: pub, priv: ed25519.NewKeyFromSeed(raw), tag: tagKey(raw)}
}

// signingSeed is kp's raw Ed25519 seed, when it is a signing key that has
// one.
func signingSeed(kp nkeys.KeyPair) ([]byte, bool) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, false
	}
	prefix, raw, err := nkeys.DecodeSeed(seed)
	if err != nil || prefix == nkeys.PrefixByteCurve || len(raw) != ed25519.SeedSize {
		return nil, false
	}
	return raw, true
}

// TagKey is the secret kp's keyed tags are made with: derived once for a
// key from Fast, else from its seed now (one hash, no key derivation).
// false: kp is no Ed25519 signing key with a seed.
func TagKey(kp nkeys.KeyPair) ([]byte, bool) {
	if k, ok := kp.(*fastKey); ok {
		return k.tag, true
	}
	if kp == nil {
		return nil, false
	}
	raw, ok := signingSeed(kp)
	if !ok {
		return nil, false
	}
	return tagKey(raw), true
}

// tagKey is the secret a key's keyed tags (events.KeyedTag) are made with,
// derived from its raw seed: only the key's holder can make them.
func tagKey(rawSeed []byte) []byte {
	h := sha256.New()
	h.Write([]byte("writ tag key v1\x00"))
	h.Write(rawSeed)
	return h.Sum(nil)
}

type fastKey struct {
	nkeys.KeyPair
	pub  string
	priv ed25519.PrivateKey
	tag  []byte
}

func (k *fastKey) PublicKey() (string, error)        { return k.pub, nil }
func (k *fastKey) Sign(input []byte) ([]byte, error) { return ed25519.Sign(k.priv, input), nil }

// TagKey is the secret of the key's keyed tags, derived once.

// Wipe clears the derived key as well as the seed.
func (k *fastKey) Wipe() {
	clear(k.priv)
	clear(k.tag)
	k.KeyPair.Wipe()
}
