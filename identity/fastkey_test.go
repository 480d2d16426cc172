package identity_test

import (
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
)

func TestFastKeySignsAsNkeysDoes(t *testing.T) {
	for name, create := range map[string]func() (nkeys.KeyPair, error){
		"user": nkeys.CreateUser, "server": nkeys.CreateServer, "account": nkeys.CreateAccount,
	} {
		kp, err := create()
		require.NoError(t, err)
		fast := identity.Fast(kp)
		require.NotSame(t, kp, fast, name)
		assert.Same(t, fast, identity.Fast(fast), "%s: wrapped once", name)
		want, _ := kp.PublicKey()
		got, err := fast.PublicKey()
		require.NoError(t, err)
		assert.Equal(t, want, got, name)
		msg := []byte("the same bytes, the same signature")
		sig, err := fast.Sign(msg)
		require.NoError(t, err)
		ref, _ := kp.Sign(msg)
		assert.Equal(t, ref, sig, name)
		assert.NoError(t, kp.Verify(msg, sig), name)
		seed, err := fast.Seed()
		require.NoError(t, err)
		assert.NotEmpty(t, seed, name)
	}
	// A curve key is not a signing key: unchanged.
	x, err := nkeys.CreateCurveKeys()
	require.NoError(t, err)
	assert.Same(t, x, identity.Fast(x))
	assert.Nil(t, identity.Fast(nil))

	// Wiped, it signs no more.
	kp, _ := nkeys.CreateUser()
	fast := identity.Fast(kp)
	pubKey, _ := fast.PublicKey()
	verifier, err := nkeys.FromPublicKey(pubKey)
	require.NoError(t, err)
	good, _ := fast.Sign([]byte("x"))
	require.NoError(t, verifier.Verify([]byte("x"), good))
	fast.Wipe()
	sig, _ := fast.Sign([]byte("x"))
	assert.Error(t, verifier.Verify([]byte("x"), sig), "the derived key is gone too")
}

// A key's tag key is the same whether it was wrapped by Fast or not, is
// its own, and exists only for a signing key with a seed.
func TestTagKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	plain, ok := identity.TagKey(kp)
	require.True(t, ok)
	fast, ok := identity.TagKey(identity.Fast(kp))
	require.True(t, ok)
	assert.Equal(t, plain, fast)

	other, err := nkeys.CreateUser()
	require.NoError(t, err)
	theirs, ok := identity.TagKey(other)
	require.True(t, ok)
	assert.NotEqual(t, plain, theirs)

	pub, err := kp.PublicKey()
	require.NoError(t, err)
	public, err := nkeys.FromPublicKey(pub)
	require.NoError(t, err)
	_, ok = identity.TagKey(public)
	assert.False(t, ok, "a public key makes no tags")
	curve, err := nkeys.CreateCurveKeys()
	require.NoError(t, err)
	_, ok = identity.TagKey(curve)
	assert.False(t, ok, "nor does a curve key")
	_, ok = identity.TagKey(nil)
	assert.False(t, ok)
}
