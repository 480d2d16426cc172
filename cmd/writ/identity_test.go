package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
)

func TestIdentityIssue(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	b := initSetup(t, root, "beta")
	_, _, err := writ(t, "trust", "add", "--dir", b, "--from", a)
	require.NoError(t, err)
	out := filepath.Join(root, "elsewhere", "bot.creds")
	require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o700))

	tests := []struct {
		name   string
		args   []string
		path   string
		groups []string
		ttl    time.Duration // 0: the default, 720h
	}{
		{"default path and TTL", []string{"--name", "dana", "--group", "sre-leads", "--group", "oncall"}, filepath.Join(a, "creds", "dana.creds"), []string{"oncall", "sre-leads"}, 0},
		{"no groups, a TTL", []string{"--name", "erin", "--ttl", "1h"}, filepath.Join(a, "creds", "erin.creds"), nil, time.Hour},
		{"--out", []string{"--name", "ci-bot", "--out", out}, out, nil, 0},
		{"--force replaces", []string{"--name", "dana", "--force"}, filepath.Join(a, "creds", "dana.creds"), nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			stdout, stderr, err := writ(t, append([]string{"identity", "issue", "--dir", a, "--domain", "alpha"}, tt.args...)...)
			require.NoError(t, err, stderr)
			assert.Equal(t, tt.path+"\n", stdout, "stdout is where it wrote")
			assert.Contains(t, stderr, "Issued alpha/")

			st, err := os.Stat(tt.path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
			id, err := identity.LoadCreds(tt.path)
			require.NoError(t, err)
			ttl := tt.ttl
			if ttl == 0 {
				ttl = 720 * time.Hour
			}
			assert.Equal(t, tt.groups, id.Principal.Groups)
			assert.WithinDuration(t, start.Add(ttl), id.Principal.Expires, 2*time.Second)

			// Signed by alpha's account: alpha and beta (which imported
			// alpha) accept it.
			for _, dir := range []string{a, b} {
				p, err := loadBundle(t, dir).VerifyUser(id.JWT, time.Now())
				require.NoError(t, err, dir)
				assert.Equal(t, "alpha", p.Domain)
			}
		})
	}
}

func TestIdentityIssueRefusals(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	initSetup(t, root, "beta")
	lone := filepath.Join(t.TempDir(), "lone")
	_, _, err := writ(t, "init", "--dir", lone, "--domain", "lone")
	require.NoError(t, err)
	revoked := initSetup(t, t.TempDir(), "gone")
	acct := loadBundle(t, revoked).Domains["gone"].Accounts[0]
	_, _, err = writ(t, "trust", "revoke", "--dir", revoked, "gone", acct)
	require.NoError(t, err)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"identity"}, exitUsage, "usage: writ identity issue"},
		{"unknown subcommand", []string{"identity", "mint"}, exitUsage, `unknown identity command "mint"`},
		{"no name", []string{"identity", "issue", "--dir", a, "--domain", "alpha"}, exitUsage, "--domain and --name"},
		{"no domain", []string{"identity", "issue", "--dir", a, "--name", "x"}, exitUsage, "--domain and --name"},
		{"a name that is a path", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--name", "../x"}, exitUsage, "invalid name"},
		{"a bad group", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--name", "x", "--group", "SRE Leads"}, exitUsage, "invalid group"},
		{"a bad domain", []string{"identity", "issue", "--dir", a, "--domain", "Alpha", "--name", "x"}, exitUsage, "invalid domain name"},
		{"zero TTL", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--name", "x", "--ttl", "0"}, exitUsage, "--ttl must be positive"},
		{"an argument", []string{"identity", "issue", "x", "--dir", a, "--domain", "alpha", "--name", "x"}, exitUsage, "no arguments"},
		{"existing file", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--name", "alice"}, 1, "exists: use --force"},
		{
			"another domain, found beside", []string{"identity", "issue", "--dir", a, "--domain", "beta", "--name", "x"}, 1,
			`domain "beta" is not this setup's: ` + a + ` holds domain "alpha"`,
		},
		{
			"another domain, found beside: the hint", []string{"identity", "issue", "--dir", a, "--domain", "beta", "--name", "x"}, 1,
			"writ identity issue --dir " + filepath.Join(root, "beta") + " --domain beta",
		},
		{"another domain, nowhere near", []string{"identity", "issue", "--dir", lone, "--domain", "alpha", "--name", "x"}, 1, `--dir set to the Writ directory of "alpha"`},
		{"no setup", []string{"identity", "issue", "--dir", filepath.Join(root, "none"), "--domain", "alpha", "--name", "x"}, 1, "no Writ setup in"},
		{"a revoked account key", []string{"identity", "issue", "--dir", revoked, "--domain", "gone", "--name", "x"}, 1, "is revoked for \"gone\""},
		{"--spokes without --role leaf", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--name", "x", "--spokes", "gamma"}, exitUsage, "--spokes is for --role leaf"},
		{"--spokes, a bad domain", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--role", "leaf", "--name", "x", "--spokes", "gamma,Delta"}, exitUsage, `--spokes: invalid domain name "Delta"`},
		{"--spokes, the link's own", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--role", "leaf", "--name", "x", "--spokes", "x"}, exitUsage, "not a spoke behind x"},
		{"--spokes, the hub's own", []string{"identity", "issue", "--dir", a, "--domain", "alpha", "--role", "leaf", "--name", "x", "--spokes", "alpha"}, exitUsage, "not a spoke behind x"},
		{"show without --creds", []string{"identity", "show"}, exitUsage, "--creds FILE"},
		{"show a missing file", []string{"identity", "show", "--creds", filepath.Join(root, "none.creds")}, 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := os.ReadFile(filepath.Join(a, "creds", "alice.creds"))
			require.NoError(t, err)
			_, errOut, err := writ(t, tt.args...)
			require.Error(t, err)
			assert.Equal(t, tt.code, exitCode(err), "%v", err)
			assert.Contains(t, err.Error()+errOut, tt.want)
			after, err := os.ReadFile(filepath.Join(a, "creds", "alice.creds"))
			require.NoError(t, err)
			assert.Equal(t, before, after, "alice's creds are untouched")
			_, err = os.Stat(filepath.Join(a, "creds", "x.creds"))
			assert.ErrorIs(t, err, os.ErrNotExist, "nothing was written")
		})
	}
}

func TestIdentityShow(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	path, _, err := writ(t, "identity", "issue", "--dir", a, "--domain", "alpha", "--name", "dana", "--group", "sre-leads", "--ttl", "2h")
	require.NoError(t, err)
	path = strings.TrimSpace(path)
	id, err := identity.LoadCreds(path)
	require.NoError(t, err)
	seed, err := id.Key.Seed()
	require.NoError(t, err)

	out, _, err := writ(t, "identity", "show", "--creds", path, "--dir", a)
	require.NoError(t, err)
	for _, want := range []string{
		"domain   alpha\n", "name     dana\n", "groups   sre-leads\n", "key      " + id.Principal.Key + "\n",
		"account  " + id.Principal.Account + "\n", "expires  " + id.Principal.Expires.Format(time.RFC3339), "trust    accepted by",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, string(seed), "no secret")
	assert.NotContains(t, out, id.JWT)

	out, _, err = writ(t, "identity", "show", "--creds", path, "--dir", a, "--json")
	require.NoError(t, err)
	assert.NotContains(t, out, string(seed))
	var got struct {
		identity.Principal
		Trust string `json:"trust"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, id.Principal, got.Principal)
	assert.Contains(t, got.Trust, "accepted by")

	// Without a setup to check against, it still describes the principal.
	out, _, err = writ(t, "identity", "show", "--creds", path, "--dir", filepath.Join(root, "none"))
	require.NoError(t, err)
	assert.Contains(t, out, "name     dana")
	assert.NotContains(t, out, "trust")
}

// A hub's leaf creds for another hub (a hub of hubs) carry the other hub's
// spokes: their events and replies cross the link, another domain's do not.
func TestIdentityIssueLeafOfHub(t *testing.T) {
	a := initSetup(t, t.TempDir(), "alpha")
	path, errOut, err := writ(t, "identity", "issue", "--dir", a, "--domain", "alpha", "--role", "leaf", "--name", "beta", "--spokes", "gamma, delta")
	require.NoError(t, err, errOut)
	assert.Contains(t, errOut, "Its link carries the events and replies of beta and of its spokes gamma, delta.")
	id, err := identity.LoadCreds(strings.TrimSpace(path))
	require.NoError(t, err)
	uc, err := natsjwt.DecodeUserClaims(id.JWT)
	require.NoError(t, err)
	const ev = ".0195a7a0-0000-7000-8000-000000000000.granted"
	for _, d := range []string{"beta", "gamma", "delta"} {
		assert.True(t, access.Allows(uc.Pub, "writ."+d+ev), d)
		assert.True(t, access.Allows(uc.Sub, "_INBOX."+d+".UX.1"), d)
	}
	assert.False(t, access.Allows(uc.Pub, "writ.epsilon"+ev))
	assert.False(t, access.Allows(uc.Sub, "_INBOX.epsilon.UX.1"))
	assert.Equal(t, natsjwt.StringList{natsjwt.ConnectionTypeLeafnode}, uc.AllowedConnectionTypes)
}

// writ identity revoke has the domain's NATS server refuse an identity's
// creds from its next start: a spoke's leaf link, a principal's.
func TestIdentityRevoke(t *testing.T) {
	root := t.TempDir()
	a := initSetup(t, root, "alpha")
	b := initSetup(t, root, "beta")
	leaf := filepath.Join(a, "leaf-beta.creds")
	_, errOut, err := writ(t, "identity", "issue", "--dir", b, "--domain", "beta", "--role", "leaf", "--name", "alpha", "--out", leaf)
	require.NoError(t, err, errOut)
	userOf := func(path string) string {
		id, err := identity.LoadCreds(path)
		require.NoError(t, err)
		return id.Principal.Key
	}
	carol := filepath.Join(b, "creds", "carol.creds")

	out, errOut, err := writ(t, "identity", "revoke", "--dir", b, "--creds", leaf)
	require.NoError(t, err, errOut)
	assert.Contains(t, out, "Revoked "+userOf(leaf)+" (alpha, leaf)")
	assert.Contains(t, out, "Restart a running 'writ serve --dir "+b+"'")
	out, errOut, err = writ(t, "identity", "revoke", "--dir", b, "--key", userOf(carol))
	require.NoError(t, err, errOut)
	assert.Contains(t, out, "Revoked "+userOf(carol))
	cfg, err := config.Load(b)
	require.NoError(t, err)
	assert.Equal(t, []string{userOf(leaf), userOf(carol)}, cfg.RevokedUsers)
	before, err := os.ReadFile(filepath.Join(b, config.FileName))
	require.NoError(t, err)
	out, _, err = writ(t, "identity", "revoke", "--dir", b, "--creds", carol)
	require.NoError(t, err)
	assert.Contains(t, out, "already revoked")
	after, err := os.ReadFile(filepath.Join(b, config.FileName))
	require.NoError(t, err)
	assert.Equal(t, before, after, "revoking again changes nothing")

	// The server refuses carol, and still lets alice in.
	auth, err := cfg.ServerAuth()
	require.NoError(t, err)
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir(), Auth: auth})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	_, err = nats.Connect(srv.ClientURL(), nats.UserCredentials(carol), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization, "carol's creds are revoked")
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(filepath.Join(b, "creds", "alice.creds")), nats.MaxReconnects(0))
	require.NoError(t, err, "alice's are not")
	nc.Close()

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"neither", []string{"--dir", b}, exitUsage, "--creds FILE or --key U..."},
		{"both", []string{"--dir", b, "--creds", carol, "--key", userOf(carol)}, exitUsage, "one of them"},
		{"not a user key", []string{"--dir", b, "--key", "ABCD"}, exitUsage, "not a user public key"},
		{"another domain's creds", []string{"--dir", b, "--creds", filepath.Join(a, "creds", "alice.creds")}, 1, "revoke it in the setup of the domain that issued it"},
		{"not creds", []string{"--dir", b, "--creds", filepath.Join(b, config.FileName)}, 1, "is not a .creds file"},
		{"no setup", []string{"--dir", filepath.Join(root, "none"), "--key", userOf(carol)}, 1, "no Writ setup in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, err := writ(t, append([]string{"identity", "revoke"}, tt.args...)...)
			require.Error(t, err)
			assert.Equal(t, tt.code, exitCode(err), "%v", err)
			assert.Contains(t, err.Error()+errOut, tt.want)
			now, err := os.ReadFile(filepath.Join(b, config.FileName))
			require.NoError(t, err)
			assert.Equal(t, before, now, "nothing was written")
		})
	}
}
