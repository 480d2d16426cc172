package gen

import (
	"crypto/ed25519"
	"fmt"

	"github.com/nats-io/nkeys"
)

// fastKey is a signing key pair that derives its Ed25519 key once. nkeys
// derives it from the seed again on every Sign and PublicKey, which made
// up most of the cost of an event (Seal asks for both, twice signing).
// Signatures are the same: Ed25519 is deterministic.
type fastKey struct {
	nkeys.KeyPair
	pub  string
	priv ed25519.PrivateKey
}

func newFastKey(kp nkeys.KeyPair) (*fastKey, error) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, err
	}
	if len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("gen: not an Ed25519 seed")
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return &fastKey{KeyPair: kp, pub: pub, priv: ed25519.NewKeyFromSeed(raw)}, nil
}

func (k *fastKey) PublicKey() (string, error)        { return k.pub, nil }
func (k *fastKey) Sign(input []byte) ([]byte, error) { return ed25519.Sign(k.priv, input), nil }
