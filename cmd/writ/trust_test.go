package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
)

// initSetup runs 'writ init' for domain in a fresh directory under root.
func initSetup(t *testing.T, root, domain string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(root, domain)
	_, errOut, err := writ(t, append([]string{"init", "--dir", dir, "--domain", domain}, extra...)...)
	require.NoError(t, err, errOut)
	return dir
}

func loadBundle(t *testing.T, dir string) *identity.Bundle {
	t.Helper()
	b, err := identity.LoadBundle(filepath.Join(dir, "trust.json"))
	require.NoError(t, err)
	return b
}

func newPub(t *testing.T, create func() (nkeys.KeyPair, error)) string {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	p, err := kp.PublicKey()
	require.NoError(t, err)
	return p
}

func TestTrustAdd(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	acct1, acct2 := newPub(t, nkeys.CreateAccount), newPub(t, nkeys.CreateAccount)
	issuer, policy, redeemer := newPub(t, nkeys.CreateServer), newPub(t, nkeys.CreateServer), newPub(t, nkeys.CreateServer)
	tests := []struct {
		name  string
		args  []string
		out   string
		check func(t *testing.T, b *identity.Bundle)
	}{
		{
			name: "a new domain with an account and an issuer",
			args: []string{"gamma", "--account", acct1, "--issuer", issuer},
			out:  `Added domain "gamma"`,
			check: func(t *testing.T, b *identity.Bundle) {
				assert.Equal(t, []string{acct1}, b.Domains["gamma"].Accounts)
				assert.True(t, b.Entitled("gamma", identity.RoleIssuer, issuer))
			},
		},
		{
			name: "extends it: a second account, policy and redeemer keys",
			args: []string{"gamma", "--account", acct2, "--policy", policy, "--redeemer", redeemer},
			out:  "3 new keys",
			check: func(t *testing.T, b *identity.Bundle) {
				assert.Equal(t, []string{acct1, acct2}, b.Domains["gamma"].Accounts)
				assert.True(t, b.Entitled("gamma", identity.RolePolicy, policy))
				assert.True(t, b.Entitled("gamma", identity.RoleRedeemer, redeemer))
				assert.True(t, b.Entitled("gamma", identity.RoleIssuer, issuer), "earlier keys stay")
			},
		},
		{
			name: "the same keys again: nothing changes",
			args: []string{"gamma", "--account", acct1},
			out:  "already trusts these keys",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := writ(t, append([]string{"trust", "add", "--dir", a}, tt.args...)...)
			require.NoError(t, err, errOut)
			assert.Contains(t, out, tt.out)
			b := loadBundle(t, a)
			require.NotNil(t, b.Domains["alpha"], "this setup's own domain stays")
			if tt.check != nil {
				tt.check(t, b)
			}
		})
	}
	// The setup still loads the way serve loads it.
	cfg, err := config.Load(a)
	require.NoError(t, err)
	_, err = cfg.Open()
	require.NoError(t, err)
}

// The demo flow: two setups side by side trust each other.
func TestTrustAddFrom(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha", "--port", "14301")
	b := initSetup(t, root, "beta", "--port", "14302")
	betaOwn := loadBundle(t, b).Domains["beta"]

	out, errOut, err := writ(t, "trust", "add", "--dir", a, "--from", filepath.Join(b, "trust.json"))
	require.NoError(t, err, errOut)
	assert.Contains(t, out, `Imported domain "beta": 6 new keys.`)
	got := loadBundle(t, a)
	assert.Equal(t, betaOwn, got.Domains["beta"], "beta's entry, as beta lists it")
	require.NotNil(t, got.Domains["alpha"])

	// The other way round, naming the directory rather than the file: a's
	// bundle now lists beta too, which b skips as its own.
	out, errOut, err = writ(t, "trust", "add", "--dir", b, "--from", a)
	require.NoError(t, err, errOut)
	assert.Contains(t, out, `Imported domain "alpha": 6 new keys.`)
	assert.Contains(t, out, `Skipped "beta": this setup's own domain.`)
	assert.Equal(t, betaOwn, loadBundle(t, b).Domains["beta"], "b's own entry is not touched by an import")

	out, _, err = writ(t, "trust", "add", "--dir", a, "--from", b)
	require.NoError(t, err)
	assert.Contains(t, out, "Nothing new")

	// --domain picks one domain of a bundle that lists several.
	c := initSetup(t, root, "gamma")
	out, errOut, err = writ(t, "trust", "add", "--dir", c, "--from", a, "--domain", "beta")
	require.NoError(t, err, errOut)
	assert.Contains(t, out, `Imported domain "beta"`)
	assert.NotContains(t, loadBundle(t, c).Domains, "alpha")

	// Each setup still loads, and a principal of one is accepted by the other.
	for _, dir := range []string{a, b, c} {
		cfg, err := config.Load(dir)
		require.NoError(t, err)
		_, err = cfg.Open()
		require.NoError(t, err, dir)
	}
	out, _, err = writ(t, "identity", "show", "--dir", a, "--creds", filepath.Join(b, "creds", "alice.creds"))
	require.NoError(t, err)
	assert.Contains(t, out, "accepted by")
}

func TestTrustList(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	b := initSetup(t, root, "beta")
	_, _, err := writ(t, "trust", "add", "--dir", a, "--from", b)
	require.NoError(t, err)
	beta := loadBundle(t, b).Domains["beta"]
	_, _, err = writ(t, "trust", "revoke", "--dir", a, "beta", beta.Accounts[0])
	require.NoError(t, err)

	out, _, err := writ(t, "trust", "list", "--dir", a)
	require.NoError(t, err)
	assert.Contains(t, out, "alpha (this setup)")
	assert.Contains(t, out, "\nbeta\n")
	assert.Contains(t, out, "account   "+beta.Accounts[0]+"  (revoked)")
	assert.Contains(t, out, "revoked   "+beta.Accounts[0])
	for _, r := range identity.Roles {
		assert.Contains(t, out, string(r)+strings.Repeat(" ", 10-len(r))+beta.Components[r][0])
	}
	assert.Less(t, strings.Index(out, "alpha"), strings.Index(out, "\nbeta"), "sorted")

	out, _, err = writ(t, "trust", "list", "--dir", a, "--json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var got []listedDomain
	for _, l := range lines {
		var d listedDomain
		require.NoError(t, json.Unmarshal([]byte(l), &d), l)
		got = append(got, d)
	}
	assert.Equal(t, "alpha", got[0].Domain)
	assert.True(t, got[0].ThisSetup)
	assert.Equal(t, []string{}, got[0].Revoked)
	assert.Equal(t, listedDomain{Domain: "beta", Accounts: beta.Accounts, Components: beta.Components, Revoked: beta.Accounts}, got[1])
}

func TestTrustRemoveAndRevoke(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	b := initSetup(t, root, "beta")
	_, _, err := writ(t, "trust", "add", "--dir", a, "--from", b)
	require.NoError(t, err)
	beta := loadBundle(t, b).Domains["beta"]
	extra := newPub(t, nkeys.CreateAccount)
	_, _, err = writ(t, "trust", "add", "--dir", a, "beta", "--account", extra)
	require.NoError(t, err)

	tests := []struct {
		name  string
		args  []string
		out   string
		check func(t *testing.T, bn *identity.Bundle)
	}{
		{
			name: "remove one key", args: []string{"remove", "beta", "--key", extra}, out: "Removed key",
			check: func(t *testing.T, bn *identity.Bundle) { assert.Equal(t, beta.Accounts, bn.Domains["beta"].Accounts) },
		},
		{
			name: "remove a component key", args: []string{"remove", "beta", "--key", beta.Components[identity.RoleIssuer][0]}, out: "Removed key",
			check: func(t *testing.T, bn *identity.Bundle) {
				assert.False(t, bn.Entitled("beta", identity.RoleIssuer, beta.Components[identity.RoleIssuer][0]))
			},
		},
		{
			name: "revoke beta's policy key", args: []string{"revoke", "beta", beta.Components[identity.RolePolicy][0]}, out: "Revoked key",
			check: func(t *testing.T, bn *identity.Bundle) {
				assert.Equal(t, []string{beta.Components[identity.RolePolicy][0]}, bn.Domains["beta"].Revoked)
				assert.False(t, bn.Entitled("beta", identity.RolePolicy, beta.Components[identity.RolePolicy][0]))
			},
		},
		{
			name: "revoke it again", args: []string{"revoke", "beta", beta.Components[identity.RolePolicy][0]}, out: "already revoked",
			check: func(t *testing.T, bn *identity.Bundle) { assert.Len(t, bn.Domains["beta"].Revoked, 1) },
		},
		{
			name: "revoke a key nobody listed yet", args: []string{"revoke", "beta", extra}, out: "Revoked key",
			check: func(t *testing.T, bn *identity.Bundle) { assert.Contains(t, bn.Domains["beta"].Revoked, extra) },
		},
		{
			name: "remove a whole domain", args: []string{"remove", "beta"}, out: `Removed domain "beta"`,
			check: func(t *testing.T, bn *identity.Bundle) {
				assert.NotContains(t, bn.Domains, "beta")
				assert.Contains(t, bn.Domains, "alpha")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := writ(t, append([]string{"trust"}, append(tt.args, "--dir", a)...)...)
			require.NoError(t, err, errOut)
			assert.Contains(t, out, tt.out)
			tt.check(t, loadBundle(t, a))
		})
	}
}

// A principal whose domain's account key is revoked is refused with its own
// reason, and the other refusals stay distinct.
func TestTrustRevokeRefusesIdentities(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	b := initSetup(t, root, "beta")
	c := initSetup(t, root, "gamma")
	alice := filepath.Join(b, "creds", "alice.creds")
	// show describes alice as alpha's bundle sees her; a refusal exits 1.
	show := func(accepted bool) string {
		t.Helper()
		out, _, err := writ(t, "identity", "show", "--dir", a, "--creds", alice)
		if accepted {
			require.NoError(t, err)
		} else {
			require.Error(t, err)
			assert.Equal(t, 1, exitCode(err))
		}
		return out
	}
	assert.Contains(t, show(false), "unknown-domain")
	_, _, err := writ(t, "trust", "add", "--dir", a, "--from", b)
	require.NoError(t, err)
	assert.Contains(t, show(true), "accepted by")
	_, _, err = writ(t, "trust", "revoke", "beta", loadBundle(t, b).Domains["beta"].Accounts[0], "--dir", a)
	require.NoError(t, err)
	assert.Contains(t, show(false), "key-revoked")

	// beta's principal claiming gamma: a key not gamma's.
	_, _, err = writ(t, "trust", "add", "--dir", a, "--from", c)
	require.NoError(t, err)
	acct, err := identity.LoadSeed(filepath.Join(b, "keys", "account.nk"))
	require.NoError(t, err)
	creds, err := identity.IssueUser(acct, identity.UserSpec{Domain: "gamma", Name: "mallory"})
	require.NoError(t, err)
	mallory := filepath.Join(root, "mallory.creds")
	require.NoError(t, os.WriteFile(mallory, creds, 0o600))
	out, _, err := writ(t, "identity", "show", "--dir", a, "--creds", mallory)
	require.Error(t, err, "refused")
	assert.Contains(t, out, "untrusted-key")
}

func TestTrustRefusals(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	b := initSetup(t, root, "beta")
	_, _, err := writ(t, "trust", "add", "--dir", a, "--from", b)
	require.NoError(t, err)
	alphaAcct := loadBundle(t, a).Domains["alpha"].Accounts[0]
	alphaPolicy := loadBundle(t, a).Domains["alpha"].Components[identity.RolePolicy][0]
	betaAcct := loadBundle(t, b).Domains["beta"].Accounts[0]
	betaIssuer := loadBundle(t, b).Domains["beta"].Components[identity.RoleIssuer][0]
	fresh := newPub(t, nkeys.CreateAccount)
	user := newPub(t, nkeys.CreateUser)
	bogus := filepath.Join(root, "bogus.json")
	require.NoError(t, os.WriteFile(bogus, []byte(`{"domains":{"BAD":{}}}`), 0o644))
	clash := filepath.Join(root, "clash.json")
	require.NoError(t, (&identity.Bundle{Domains: map[string]*identity.Domain{
		"gamma": {Accounts: []string{fresh}},
		"delta": {Accounts: []string{betaAcct}},
	}}).Save(clash))

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"trust"}, exitUsage, "usage: writ trust add"},
		{"unknown subcommand", []string{"trust", "grant"}, exitUsage, `unknown trust command "grant"`},
		{"add without a domain", []string{"trust", "add", "--account", fresh}, exitUsage, "one domain name"},
		{"add without keys", []string{"trust", "add", "gamma"}, exitUsage, "at least one key"},
		{"add with a bad domain name", []string{"trust", "add", "Gamma", "--account", fresh}, exitUsage, "invalid domain name"},
		{"add a user key as account", []string{"trust", "add", "gamma", "--account", user}, exitUsage, "not an account public key"},
		{"add an account key as issuer", []string{"trust", "add", "gamma", "--issuer", fresh}, exitUsage, "not a server public key"},
		{"add beta's account key to gamma", []string{"trust", "add", "gamma", "--account", betaAcct}, 1, `already trusted for domain "beta"`},
		{"add alpha's own key to beta", []string{"trust", "add", "beta", "--account", alphaAcct}, 1, `already trusted for domain "alpha"`},
		{"add beta's issuer key as gamma's", []string{"trust", "add", "gamma", "--issuer", betaIssuer}, 1, "a key belongs to one domain only"},
		{"add beta's issuer as its policy key", []string{"trust", "add", "beta", "--policy", betaIssuer}, 1, "issuer key, not its policy key"},
		{"add with keys and --from", []string{"trust", "add", "--from", b, "--account", fresh}, exitUsage, "give no keys"},
		{"add --domain without --from", []string{"trust", "add", "gamma", "--domain", "gamma", "--account", fresh}, exitUsage, "--domain goes with --from"},
		{"import this setup's own domain", []string{"trust", "add", "--from", b, "--domain", "alpha"}, 1, "this setup's own domain"},
		{"import a domain the file lacks", []string{"trust", "add", "--from", b, "--domain", "zeta"}, 1, `lists no domain "zeta"`},
		{"import an invalid bundle", []string{"trust", "add", "--from", bogus}, 1, "invalid name"},
		{"import a missing file", []string{"trust", "add", "--from", filepath.Join(root, "nope.json")}, 1, "no such file"},
		{"import a bundle reusing beta's key: nothing imported", []string{"trust", "add", "--from", clash}, 1, "(nothing imported)"},
		{"list with an argument", []string{"trust", "list", "beta"}, exitUsage, "no arguments"},
		{"remove this setup's own domain", []string{"trust", "remove", "alpha"}, 1, "this setup's own domain"},
		{"remove this setup's own signing key", []string{"trust", "remove", "alpha", "--key", alphaPolicy}, 1, "this setup signs with it"},
		{"remove an unknown domain", []string{"trust", "remove", "zeta"}, 1, "unknown domain"},
		{"remove a key another domain lists", []string{"trust", "remove", "beta", "--key", alphaAcct}, 1, "not a key of"},
		{"remove without a domain", []string{"trust", "remove"}, exitUsage, "one domain name"},
		{"revoke without a key", []string{"trust", "revoke", "beta"}, exitUsage, "a domain and a key"},
		{"revoke a user key", []string{"trust", "revoke", "beta", user}, exitUsage, "not an account"},
		{"revoke for an unknown domain", []string{"trust", "revoke", "zeta", fresh}, 1, "unknown domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := os.ReadFile(filepath.Join(a, "trust.json"))
			require.NoError(t, err)
			args := tt.args
			if len(args) > 1 {
				args = append(args, "--dir", a)
			}
			_, errOut, err := writ(t, args...)
			require.Error(t, err)
			assert.Equal(t, tt.code, exitCode(err), "%v", err)
			assert.Contains(t, err.Error()+errOut, tt.want)
			after, err := os.ReadFile(filepath.Join(a, "trust.json"))
			require.NoError(t, err)
			assert.Equal(t, string(before), string(after), "a refusal leaves the bundle as it was")
		})
	}

	t.Run("no Writ setup in the directory", func(t *testing.T) {
		_, _, err := writ(t, "trust", "list", "--dir", filepath.Join(root, "none"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no Writ setup in")
		assert.Contains(t, err.Error(), "writ init")
	})
}

// Writes go through a temporary file and a rename: the bundle is valid after
// each one and nothing is left beside it.
func TestTrustWritesAreAtomic(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	for i := range 5 {
		_, errOut, err := writ(t, "trust", "add", "--dir", a, "d"+strconv.Itoa(i), "--account", newPub(t, nkeys.CreateAccount))
		require.NoError(t, err, errOut)
		assert.Len(t, loadBundle(t, a).Domains, i+2)
	}
	entries, err := os.ReadDir(a)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), ".tmp", "a temporary file was left behind")
	}
}

func TestInitSideBySide(t *testing.T) {
	root := t.TempDir()
	ports := []int{freePort(t), freePort(t)}
	dirs := []string{}
	for i, domain := range []string{"alpha", "beta"} {
		dir := filepath.Join(root, domain)
		out, errOut, err := writ(t, "init", "--dir", dir, "--domain", domain, "--port", strconv.Itoa(ports[i]))
		require.NoError(t, err, errOut)
		assert.Contains(t, out, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
		cfg, err := config.Load(dir)
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1:"+strconv.Itoa(ports[i]), cfg.Listen)
		assert.Equal(t, domain, cfg.Domain)
		dirs = append(dirs, dir)
	}
	d := filepath.Join(root, "default")
	_, _, err := writ(t, "init", "--dir", d)
	require.NoError(t, err)
	cfg, err := config.Load(d)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:4222", cfg.Listen, "the default port")

	for _, bad := range []string{"0", "-1", "65536", "x"} {
		_, _, err := writ(t, "init", "--dir", filepath.Join(root, "bad"), "--port", bad)
		assert.Equal(t, exitUsage, exitCode(err), bad)
		assert.False(t, config.Exists(filepath.Join(root, "bad")), "nothing is created on a bad --port")
	}

	// Both serve at once, each on its own port.
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		err error
		out *syncBuffer
	}
	done := make(chan result, 2)
	outs := []*syncBuffer{{}, {}}
	for i, dir := range dirs {
		go func() {
			var errOut syncBuffer
			err := run(ctx, []string{"serve", "--dir", dir, "--log-level", "warn"}, outs[i], &errOut)
			done <- result{err, outs[i]}
		}()
	}
	for i := range dirs {
		require.Eventually(t, func() bool { return strings.Contains(outs[i].String(), "Ctrl-C stops") }, 20*time.Second, 20*time.Millisecond)
		assert.Contains(t, outs[i].String(), "127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	cancel()
	for range dirs {
		r := <-done
		assert.NoError(t, r.err, r.out.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
