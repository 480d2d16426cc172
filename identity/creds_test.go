package identity_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
)

func TestIssueUserParseCreds(t *testing.T) {
	tr := newTrust(t)
	creds, err := identity.IssueUser(tr.acme, identity.UserSpec{
		Domain: "acme", Name: "alice", Groups: []string{"sre-leads", "oncall"}, TTL: 24 * time.Hour, Now: t0,
	})
	require.NoError(t, err)
	assert.Contains(t, string(creds), "BEGIN NATS USER JWT")
	assert.Contains(t, string(creds), "BEGIN USER NKEY SEED")

	id, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	userPub := pub(t, id.Key)
	assert.True(t, nkeys.IsValidPublicUserKey(userPub))
	assert.Equal(t, identity.Principal{
		Domain: "acme", Name: "alice", Key: userPub, Account: pub(t, tr.acme),
		Groups: []string{"oncall", "sre-leads"}, Expires: t0.Add(24 * time.Hour),
	}, id.Principal)

	// The key signs what the bundle then attributes to alice.
	p, err := tr.bundle.VerifyUser(id.JWT, t0)
	require.NoError(t, err)
	assert.Equal(t, id.Principal, p)
	sig, err := id.Key.Sign([]byte("hello"))
	require.NoError(t, err)
	verifier, err := nkeys.FromPublicKey(p.Key)
	require.NoError(t, err)
	assert.NoError(t, verifier.Verify([]byte("hello"), sig))

	// LoadCreds reads the same from a file.
	path := filepath.Join(t.TempDir(), "alice.creds")
	require.NoError(t, os.WriteFile(path, creds, 0o600))
	fromFile, err := identity.LoadCreds(path)
	require.NoError(t, err)
	assert.Equal(t, id.JWT, fromFile.JWT)
	assert.Equal(t, id.Principal, fromFile.Principal)

	_, err = identity.LoadCreds(filepath.Join(t.TempDir(), "missing.creds"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestIssueUserEachCallIsANewKey(t *testing.T) {
	tr := newTrust(t)
	a := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice"})
	b := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice"})
	assert.NotEqual(t, a.Principal.Key, b.Principal.Key)
}

func TestIssueUserRefuses(t *testing.T) {
	tr := newTrust(t)
	tests := []struct {
		name    string
		account nkeys.KeyPair
		spec    identity.UserSpec
	}{
		{"no domain", tr.acme, identity.UserSpec{Name: "alice"}},
		{"invalid domain", tr.acme, identity.UserSpec{Domain: "Acme", Name: "alice"}},
		{"no name", tr.acme, identity.UserSpec{Domain: "acme"}},
		{"signed by a user key", mustKey(t, nkeys.CreateUser), identity.UserSpec{Domain: "acme", Name: "alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := identity.IssueUser(tt.account, tt.spec)
			assert.Error(t, err)
			assert.Nil(t, creds)
		})
	}
}

// JWT tags are lower-cased, so a mixed-case group would silently become
// another name: IssueUser refuses it instead.
func TestIssueUserRefusesGroupNamesTagsWouldChange(t *testing.T) {
	tr := newTrust(t)
	_, err := identity.IssueUser(tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"SRE-Leads"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `group "SRE-Leads"`)
	id := issue(t, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads", "on-call.eu"}})
	assert.Equal(t, []string{"on-call.eu", "sre-leads"}, id.Principal.Groups)
}

func TestParseCredsRefuses(t *testing.T) {
	tr := newTrust(t)
	alice, err := identity.IssueUser(tr.acme, identity.UserSpec{Domain: "acme", Name: "alice"})
	require.NoError(t, err)
	bob, err := identity.IssueUser(tr.acme, identity.UserSpec{Domain: "acme", Name: "bob"})
	require.NoError(t, err)
	aliceJWT, err := jwt.ParseDecoratedJWT(alice)
	require.NoError(t, err)
	bobSeed, err := jwt.ParseDecoratedUserNKey(bob)
	require.NoError(t, err)
	accountSeed := seed(t, tr.acme)

	format := func(token string, seed []byte) []byte {
		b, err := jwt.FormatUserConfig(token, seed)
		require.NoError(t, err)
		return b
	}
	nameless := mustKey(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(pub(t, nameless))
	uc.Tags.Add(identity.TagDomain + "acme")
	noName, err := uc.Encode(tr.acme)
	require.NoError(t, err)

	tests := []struct {
		name  string
		creds []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a creds file")},
		{"JWT of alice with the seed of bob", bytes.Replace(alice, findSeed(t, alice), seed(t, bobSeed), 1)},
		{"JWT without a seed", []byte("-----BEGIN NATS USER JWT-----\n" + aliceJWT + "\n------END NATS USER JWT------\n")},
		{"account seed instead of a user seed", bytes.Replace(alice, findSeed(t, alice), accountSeed, 1)},
		{"JWT without a name", format(noName, seed(t, nameless))},
		{"truncated", alice[:len(alice)/2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := identity.ParseCreds(tt.creds)
			assert.Error(t, err)
			assert.Nil(t, id)
		})
	}
}

// findSeed returns the seed line of a creds file.
func findSeed(t testing.TB, creds []byte) []byte {
	t.Helper()
	for _, line := range bytes.Split(creds, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("SU")) {
			return line
		}
	}
	t.Fatal("no user seed in creds")
	return nil
}

func TestLoadSeed(t *testing.T) {
	server := mustKey(t, nkeys.CreateServer)
	curve := mustKey(t, nkeys.CreateCurveKeys)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	tests := []struct {
		name string
		path string
		pub  string // "" means an error
	}{
		{"server seed with a newline", write("server.nk", append(seed(t, server), '\n')), pub(t, server)},
		{"server seed in whitespace", write("spaced.nk", []byte("  \n"+string(seed(t, server))+"\n\n")), pub(t, server)},
		{"curve seed", write("issuer.xk", seed(t, curve)), pub(t, curve)},
		{"public key", write("pub.nk", []byte(pub(t, server))), ""},
		{"garbage", write("bad.nk", []byte("hello")), ""},
		{"empty", write("empty.nk", nil), ""},
		{"missing", filepath.Join(dir, "missing.nk"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := identity.LoadSeed(tt.path)
			if tt.pub == "" {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.pub, pub(t, kp))
		})
	}
}

func TestClaimsDoesNotTrust(t *testing.T) {
	// Claims reads what a token says about itself, whoever signed it.
	stranger := mustKey(t, nkeys.CreateAccount)
	token := userJWT(t, stranger, func(uc *jwt.UserClaims) { uc.Name = "mallory" })
	_, p, err := identity.Claims(token)
	require.NoError(t, err)
	assert.Equal(t, "acme/mallory", p.ID())
	assert.Equal(t, pub(t, stranger), p.Account)

	_, err = newTrust(t).bundle.VerifyUser(token, t0)
	assert.ErrorIs(t, err, identity.ErrUntrustedKey, "but the bundle does not trust it")
}

// FuzzParseCreds checks that arbitrary creds never panic, and that whatever
// parses has a key matching the JWT's subject.
func FuzzParseCreds(f *testing.F) {
	acct := mustKey(f, nkeys.CreateAccount)
	creds, err := identity.IssueUser(acct, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}})
	require.NoError(f, err)
	f.Add(creds)
	f.Add([]byte(strings.Replace(string(creds), "SU", "SA", 1)))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.e30\n------END NATS USER JWT------\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := identity.ParseCreds(b)
		if err != nil {
			if id != nil {
				t.Fatal("an identity with an error")
			}
			return
		}
		p, err := id.Key.PublicKey()
		if err != nil || p != id.Principal.Key {
			t.Fatalf("key %s for a JWT of %s", p, id.Principal.Key)
		}
		if _, q, err := identity.Claims(id.JWT); err != nil || q.Key != p {
			t.Fatalf("the parsed JWT does not read back: %v", err)
		}
	})
}

// FuzzVerifyUser checks that arbitrary tokens never panic and never verify,
// except the one validly issued seed.
func FuzzVerifyUser(f *testing.F) {
	tr := newTrust(f)
	good := issue(f, tr.acme, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}}).JWT
	f.Add(good)
	f.Add(issue(f, tr.other, identity.UserSpec{Domain: "acme", Name: "alice"}).JWT)
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		p, err := tr.bundle.VerifyUser(token, t0)
		if err != nil {
			return
		}
		if token != good {
			// A JWT's base64 may carry ignorable bits; what counts is
			// that it names exactly what the good token names.
			_, want, _ := identity.Claims(good)
			if p.Key != want.Key || p.ID() != want.ID() {
				t.Fatalf("verified a forged token as %s", p.ID())
			}
		}
	})
}
