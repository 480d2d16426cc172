package identity_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
)

// FuzzLoadBundle feeds arbitrary trust bundle files to LoadBundle (writ
// trust add, --trust files from other domains). Whatever loads is valid,
// saves and loads back the same, and decides trust as its text says: a
// user of acme's account is verified exactly when acme lists that account
// and does not revoke it.
func FuzzLoadBundle(f *testing.F) {
	tr := newTrust(f)
	alice := issue(f, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}}).JWT
	acme := pub(f, tr.acme)
	good, err := json.Marshal(tr.bundle)
	require.NoError(f, err)
	f.Add(good)
	revoked := tr.bundle.Clone()
	revoked.Domains["acme"].Revoked = []string{acme}
	b, err := json.Marshal(revoked)
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`{"domains": {"acme": null}}`))
	f.Add([]byte(`{"domains": {"Acme": {"accounts": ["A"], "components": {"wizard": ["N"]}}}}`))
	f.Add([]byte(`{"domains": {}}`))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text []byte) {
		in, out := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
		require.NoError(t, os.WriteFile(in, text, 0o600))
		b, err := identity.LoadBundle(in)
		if err != nil {
			if b != nil {
				t.Fatal("a bundle with an error")
			}
			return
		}
		require.NoError(t, b.Validate())
		for name := range b.Domains {
			require.True(t, identity.ValidDomainName(name), "domain %q", name)
		}
		require.NoError(t, b.Save(out))
		again, err := identity.LoadBundle(out)
		require.NoError(t, err, "a loaded bundle saves as one that loads")
		x, _ := json.Marshal(b)
		y, _ := json.Marshal(again)
		require.JSONEq(t, string(x), string(y), "saved and loaded back")

		d := b.Domains["acme"]
		trusted := d != nil && slices.Contains(d.Accounts, acme) && !slices.Contains(d.Revoked, acme)
		_, err = b.VerifyUser(alice, t0)
		require.Equal(t, trusted, err == nil, "trusted %v, verified: %v", trusted, err)
	})
}

// FuzzLoadSeed feeds arbitrary key files to LoadSeed (component keys, the
// account key): whatever loads is a key pair whose seed loads back as the
// same key.
func FuzzLoadSeed(f *testing.F) {
	for _, create := range []func() (nkeys.KeyPair, error){nkeys.CreateUser, nkeys.CreateAccount, nkeys.CreateServer, nkeys.CreateCurveKeys} {
		s := seed(f, mustKey(f, create))
		f.Add(s)
		f.Add(append(append([]byte("\n  "), s...), "\r\n"...))
		f.Add(s[:len(s)-1])
	}
	f.Add([]byte("SX"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text []byte) {
		path := filepath.Join(dir, "key.nk")
		require.NoError(t, os.WriteFile(path, text, 0o600))
		kp, err := identity.LoadSeed(path)
		if err != nil {
			return
		}
		p, err := kp.PublicKey()
		require.NoError(t, err)
		s, err := kp.Seed()
		require.NoError(t, err)
		require.Equal(t, bytes.HasPrefix(bytes.TrimSpace(text), []byte("SX")), p[0] == 'X', "a curve key from %q", s[:2])
		require.NoError(t, os.WriteFile(path, s, 0o600))
		again, err := identity.LoadSeed(path)
		require.NoError(t, err)
		q, err := again.PublicKey()
		require.NoError(t, err)
		require.Equal(t, p, q)
	})
}
