package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/policy"
)

// initDir creates a setup for acme in a new temporary directory.
func initDir(t *testing.T) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	c, err := config.Init(dir, "acme")
	require.NoError(t, err)
	return dir, c
}

func TestInitCreatesASetupThatLoads(t *testing.T) {
	dir, c := initDir(t)
	assert.Equal(t, dir, c.Dir())
	assert.True(t, config.Exists(dir))

	loaded, err := config.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, "acme", loaded.Domain)
	assert.Equal(t, dir, loaded.Dir())
	want := config.Default("acme")
	got := *loaded
	assert.Equal(t, want.Keys, got.Keys)
	assert.Equal(t, want.Grants, got.Grants)
	assert.Equal(t, want.Stream, got.Stream)

	rt, err := loaded.Open()
	require.NoError(t, err)

	// Each component key is trusted for its own role of acme, and no other.
	for role, kp := range map[identity.Role]nkeys.KeyPair{
		identity.RolePolicy: rt.PolicyKey, identity.RoleApproval: rt.ApprovalKey, identity.RoleIssuer: rt.IssuerKey,
	} {
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		got, ok := rt.Bundle.RoleOf("acme", pub)
		assert.True(t, ok, "%s key is in the bundle", role)
		assert.Equal(t, role, got)
	}
	xpub, err := rt.IssuerXKey.PublicKey()
	require.NoError(t, err)
	assert.True(t, nkeys.IsValidPublicCurveKey(xpub))

	// The account key file signs the bundle's only account.
	account, err := identity.LoadSeed(filepath.Join(dir, "keys", "account.nk"))
	require.NoError(t, err)
	accountPub, err := account.PublicKey()
	require.NoError(t, err)
	assert.Equal(t, []string{accountPub}, rt.Bundle.Domains["acme"].Accounts)

	// Every sample identity verifies against the bundle, with its groups.
	now := time.Now()
	for _, s := range config.SampleIdentities {
		id, err := identity.LoadCreds(filepath.Join(dir, "creds", s.Name+".creds"))
		require.NoError(t, err, s.Name)
		p, err := rt.Bundle.VerifyUser(id.JWT, now)
		require.NoError(t, err, s.Name)
		assert.Equal(t, "acme/"+s.Name, p.ID())
		assert.Equal(t, s.Groups, p.Groups)
		assert.True(t, p.Expires.After(now.Add(364*24*time.Hour)), "sample identities last a year")
	}

	// The sample policies and flows work together.
	carol, err := identity.LoadCreds(filepath.Join(dir, "creds", "carol.creds"))
	require.NoError(t, err)
	d := rt.Policies.Decide(policy.Input{Principal: carol.Principal, Action: "restart", Domain: "acme", Resource: "prod/db"})
	assert.Equal(t, policy.OutcomeReview, d.Outcome)
	flows, _, err := rt.Flows.Resolve(d.Flows, now)
	require.NoError(t, err)
	require.Len(t, flows, 1)
	assert.Equal(t, []string{"sre-leads"}, flows[0].Stages[0].Groups)
}

func TestInitFilePermissions(t *testing.T) {
	dir, _ := initDir(t)
	for _, p := range []string{"keys/account.nk", "keys/policy.nk", "keys/approval.nk", "keys/issuer.nk", "keys/issuer.xk", "creds/alice.creds"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		require.NoError(t, err, p)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s holds a secret", p)
	}
}

func TestInitWritesTheSamplePolicy(t *testing.T) {
	dir, _ := initDir(t)
	got, err := os.ReadFile(filepath.Join(dir, "policies", "main.cedar"))
	require.NoError(t, err)
	want, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "acme.cedar"))
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "policy/testdata/acme.cedar is the sample policy for acme")
	assert.NotContains(t, string(got), "{{domain}}")

	flows, err := os.ReadFile(filepath.Join(dir, "flows.json"))
	require.NoError(t, err)
	wantFlows, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "flows.json"))
	require.NoError(t, err)
	assert.Equal(t, string(wantFlows), string(flows))
}

func TestInitRefuses(t *testing.T) {
	dir, _ := initDir(t)
	trust, err := os.ReadFile(filepath.Join(dir, "trust.json"))
	require.NoError(t, err)

	_, err = config.Init(dir, "acme")
	assert.ErrorIs(t, err, config.ErrExists)
	_, err = config.Init(dir, "other")
	assert.ErrorIs(t, err, config.ErrExists)
	after, err := os.ReadFile(filepath.Join(dir, "trust.json"))
	require.NoError(t, err)
	assert.Equal(t, trust, after, "a refused Init overwrites nothing")

	for _, domain := range []string{"", "Acme", "acme.corp", "-acme"} {
		empty := t.TempDir()
		_, err := config.Init(empty, domain)
		assert.Error(t, err, "%q", domain)
		assert.False(t, config.Exists(empty))
		entries, err := os.ReadDir(empty)
		require.NoError(t, err)
		assert.Empty(t, entries, "nothing written for an invalid domain")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *config.Config)
		want config.Setting // the setting at fault; "" means valid
	}{
		{"default", func(*config.Config) {}, ""},
		{"random port", func(c *config.Config) { c.Listen = "127.0.0.1:0" }, ""},
		{"IPv6 loopback", func(c *config.Config) { c.Listen = "[::1]:4222" }, ""},
		{"keep forever", func(c *config.Config) { c.Stream.MaxAge = 0 }, ""},
		{"five replicas", func(c *config.Config) { c.Stream.Replicas = 5 }, ""},
		{"grant bounds at their limits", func(c *config.Config) {
			c.Grants.DefaultTTL, c.Grants.MaxTTL = config.Duration(10*time.Second), config.Duration(24*time.Hour)
		}, ""},
		{"event limits at their limits", func(c *config.Config) { c.Limits.MaxEventBytes = 1 << 20 }, ""},
		{"no domain", func(c *config.Config) { c.Domain = "" }, "domain"},
		{"upper-case domain", func(c *config.Config) { c.Domain = "Acme" }, "domain"},
		{"listen without a port", func(c *config.Config) { c.Listen = "127.0.0.1" }, "listen"},
		{"listen without a host", func(c *config.Config) { c.Listen = ":4222" }, "listen"},
		{"listen on a named port", func(c *config.Config) { c.Listen = "127.0.0.1:nats" }, "listen"},
		{"listen on port 70000", func(c *config.Config) { c.Listen = "127.0.0.1:70000" }, "listen"},
		{"listen on a negative port", func(c *config.Config) { c.Listen = "127.0.0.1:-1" }, "listen"},
		{"listen beyond loopback", func(c *config.Config) { c.Listen = "0.0.0.0:4222" }, "listen"},
		{"no replicas", func(c *config.Config) { c.Stream.Replicas = 0 }, "stream.replicas"},
		{"six replicas", func(c *config.Config) { c.Stream.Replicas = 6 }, "stream.replicas"},
		{"duplicate window of 30s", func(c *config.Config) { c.Stream.Duplicates = config.Duration(30 * time.Second) }, "stream.duplicates"},
		{"negative max age", func(c *config.Config) { c.Stream.MaxAge = config.Duration(-time.Hour) }, "stream.max_age"},
		{"default TTL 5s", func(c *config.Config) { c.Grants.DefaultTTL = config.Duration(5 * time.Second) }, "grants"},
		{"max TTL 25h", func(c *config.Config) { c.Grants.MaxTTL = config.Duration(25 * time.Hour) }, "grants"},
		{"default above max", func(c *config.Config) {
			c.Grants.DefaultTTL, c.Grants.MaxTTL = config.Duration(2*time.Hour), config.Duration(time.Hour)
		}, "grants"},
		{"events of 512 bytes", func(c *config.Config) { c.Limits.MaxEventBytes = 512 }, "limits.max_event_bytes"},
		{"events of 2 MiB", func(c *config.Config) { c.Limits.MaxEventBytes = 2 << 20 }, "limits.max_event_bytes"},
		{"one worker", func(c *config.Config) { c.Limits.Workers = 1 }, ""},
		{"the most workers", func(c *config.Config) { c.Limits.Workers = config.MaxWorkers }, ""},
		{"no workers", func(c *config.Config) { c.Limits.Workers = 0 }, "limits.workers"},
		{"too many workers", func(c *config.Config) { c.Limits.Workers = config.MaxWorkers + 1 }, "limits.workers"},
		{"no policy key", func(c *config.Config) { c.Keys.Policy = "" }, "keys.policy"},
		{"no approval key", func(c *config.Config) { c.Keys.Approval = "" }, "keys.approval"},
		{"no issuer key", func(c *config.Config) { c.Keys.Issuer = "" }, "keys.issuer"},
		{"no issuer xkey", func(c *config.Config) { c.Keys.IssuerXKey = "" }, "keys.issuer_xkey"},
		{"no trust bundle", func(c *config.Config) { c.Trust = "" }, "trust"},
		{"no policies", func(c *config.Config) { c.Policies = "" }, "policies"},
		{"no flows", func(c *config.Config) { c.Flows = "" }, "flows"},
		{"no store", func(c *config.Config) { c.StoreDir = "" }, "store_dir"},
		{"a revoked user that is an account key", func(c *config.Config) {
			c.RevokedUsers = []string{"ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"}
		}, "revoked_users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default("acme")
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, config.ErrInvalid)
			assert.ErrorIs(t, err, tt.want)
			assert.ErrorContains(t, err, string(tt.want), "the message names the setting as the file spells it")
		})
	}

	t.Run("every error is reported", func(t *testing.T) {
		c := config.Default("")
		c.Stream.Replicas, c.Limits.MaxEventBytes, c.Flows = 0, 0, ""
		err := c.Validate()
		for _, s := range []config.Setting{"domain", "stream.replicas", "limits.max_event_bytes", "flows"} {
			assert.ErrorIs(t, err, s)
		}
		assert.NotErrorIs(t, err, config.Setting("grants"), "only the settings at fault")
	})
}

// The optional sections report their problems under their settings, the
// notify section's own settings under notify too.
func TestValidateSections(t *testing.T) {
	hook := config.Webhook{URL: "https://hooks.example.com/x", Format: config.FormatJSON}
	tests := []struct {
		name string
		edit func(c *config.Config)
		want []config.Setting // the settings at fault; none means valid
	}{
		{"a hub", func(c *config.Config) {
			c.Federation = &config.Federation{Listen: "127.0.0.1:7422", Spokes: []string{"beta"}}
		}, nil},
		{"a hub without spokes", func(c *config.Config) { c.Federation = &config.Federation{Listen: "127.0.0.1:7422"} }, []config.Setting{"federation"}},
		{"a spoke listed twice", func(c *config.Config) {
			c.Federation = &config.Federation{Listen: "127.0.0.1:7422", Spokes: []string{"beta", "beta"}}
		}, []config.Setting{"federation"}},
		{"a spoke without creds", func(c *config.Config) {
			c.Federation = &config.Federation{Remotes: []string{"nats-leaf://127.0.0.1:7422"}}
		}, []config.Setting{"federation"}},
		{"checkpoints every 10ms", func(c *config.Config) {
			c.Audit.CheckpointInterval = config.Duration(10 * time.Millisecond)
		}, []config.Setting{"audit.checkpoint_interval"}},
		{"audit without its key", func(c *config.Config) { c.Keys.Auditor = "" }, []config.Setting{"keys.auditor"}},
		{"witness of itself", func(c *config.Config) { c.Audit.Witness = []string{"acme"} }, []config.Setting{"audit.witness"}},
		{"notify, valid", func(c *config.Config) {
			c.Notify = &config.Notify{SecretEnv: "S", Requesters: []config.Webhook{hook}}
		}, nil},
		{"notify json without a secret", func(c *config.Config) {
			c.Notify = &config.Notify{Requesters: []config.Webhook{hook}}
		}, []config.Setting{"notify", "secret_env"}},
		{"notify to a relative url", func(c *config.Config) {
			c.Notify = &config.Notify{Requesters: []config.Webhook{{URL: "/x", Format: config.FormatSlack}}}
		}, []config.Setting{"notify", "url"}},
		{"notify in xml", func(c *config.Config) {
			c.Notify = &config.Notify{Requesters: []config.Webhook{{URL: "https://h/x", Format: "xml"}}}
		}, []config.Setting{"notify", "format"}},
		{"notify a principal without a domain", func(c *config.Config) {
			c.Notify = &config.Notify{Principals: map[string][]config.Webhook{"alice": {{URL: "https://h/x", Format: config.FormatSlack}}}}
		}, []config.Setting{"notify", "principals"}},
		{"notify with a minute's timeout", func(c *config.Config) {
			c.Notify = &config.Notify{Timeout: config.Duration(time.Minute)}
		}, []config.Setting{"notify", "timeout"}},
		{"notify with negative retries", func(c *config.Config) { c.Notify = &config.Notify{Retries: -1} }, []config.Setting{"notify", "retries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default("acme")
			tt.edit(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, config.ErrInvalid)
			for _, s := range tt.want {
				assert.ErrorIs(t, err, s)
			}
			if c.Notify != nil {
				assert.ErrorIs(t, c.Notify.Validate(), tt.want[len(tt.want)-1], "the section alone")
			}
		})
	}
}

func TestLoad(t *testing.T) {
	write := func(t *testing.T, body string) string {
		t.Helper()
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, config.FileName), []byte(body), 0o644))
		return dir
	}
	t.Run("defaults fill what the file omits", func(t *testing.T) {
		c, err := config.Load(write(t, `{"domain": "acme", "grants": {"default_ttl": "5m"}}`))
		require.NoError(t, err)
		want := config.Default("acme")
		assert.Equal(t, config.Duration(5*time.Minute), c.Grants.DefaultTTL)
		assert.Equal(t, want.Grants.MaxTTL, c.Grants.MaxTTL)
		assert.Equal(t, want.Listen, c.Listen)
		assert.Equal(t, want.Limits, c.Limits)
	})
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", `{"domain":`},
		{"duration as a number", `{"domain": "acme", "stream": {"duplicates": 60000000000}}`},
		{"duration in words", `{"domain": "acme", "grants": {"max_ttl": "an hour"}}`},
		{"no domain", `{}`},
		{"invalid value", `{"domain": "acme", "stream": {"replicas": 9}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := write(t, tt.body)
			c, err := config.Load(dir)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorContains(t, err, filepath.Join(dir, config.FileName), "the error names the file")
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := config.Load(t.TempDir())
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}

// A federation shares no secret: a hub's spokes are names, and a spoke
// presents the leaf creds its hub issued. A file that still holds a
// secret (as setups federated before leaf creds did) is refused, and the
// error says how the hub issues the creds, without repeating the secret.
func TestFederationSharesNoSecret(t *testing.T) {
	load := func(t *testing.T, domain, federation string) (*config.Config, error) {
		t.Helper()
		dir := t.TempDir()
		body := `{"domain": "` + domain + `", "federation": ` + federation + `}`
		require.NoError(t, os.WriteFile(filepath.Join(dir, config.FileName), []byte(body), 0o600))
		return config.Load(dir)
	}
	refused := func(t *testing.T, err error, says ...string) {
		t.Helper()
		require.ErrorIs(t, err, config.ErrInvalid)
		assert.ErrorIs(t, err, config.Setting("federation"))
		assert.NotContains(t, err.Error(), "s3cret", "the error repeats no secret")
		for _, s := range says {
			assert.ErrorContains(t, err, s)
		}
	}
	t.Run("a hub with a spoke's secret", func(t *testing.T) {
		_, err := load(t, "beta", `{"listen": "127.0.0.1:7422", "spokes": {"alpha": "s3cret", "gamma": ""}}`)
		refused(t, err, `spoke "alpha" has a shared secret`, "--domain beta --role leaf --name alpha")
		assert.NotContains(t, err.Error(), `spoke "gamma" has`, "only the spoke with a secret")
	})
	t.Run("a spoke whose remote holds a user and secret", func(t *testing.T) {
		_, err := load(t, "alpha", `{"remotes": ["nats-leaf://writ-leaf-alpha:s3cret@127.0.0.1:7422"], "creds": "leaf-beta.creds"}`)
		refused(t, err, "drop them from the URL", "--role leaf --name alpha")
	})
	t.Run("a spoke without creds", func(t *testing.T) {
		_, err := load(t, "alpha", `{"remotes": ["nats-leaf://127.0.0.1:7422"]}`)
		refused(t, err, "--role leaf --name alpha")
	})
	t.Run("spokes neither a list nor names", func(t *testing.T) {
		_, err := load(t, "beta", `{"listen": "127.0.0.1:7422", "spokes": "alpha"}`)
		refused(t, err, "a list of the spoke domains")
	})
	t.Run("the old object without secrets reads as its names", func(t *testing.T) {
		c, err := load(t, "beta", `{"listen": "127.0.0.1:7422", "spokes": {"gamma": "", "alpha": ""}}`)
		require.NoError(t, err)
		assert.Equal(t, []string{"alpha", "gamma"}, c.Federation.Spokes)
		out := t.TempDir()
		require.NoError(t, c.Save(out))
		b, err := os.ReadFile(filepath.Join(out, config.FileName))
		require.NoError(t, err)
		assert.Contains(t, string(b), `"spokes": [`, "saved as a list")
	})
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := config.Default("acme")
	c.Listen = "127.0.0.1:0"
	c.SyncAlways = true
	c.Stream.MaxAge = config.Duration(90 * 24 * time.Hour)
	c.Grants.DefaultTTL = config.Duration(90 * time.Second)
	c.Components = []string{"policy", "issuer"}
	c.Creds = "/etc/writ/nats.creds"
	require.NoError(t, c.Save(dir))
	assert.Equal(t, dir, c.Dir())

	got, err := config.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, c, *got)

	b, err := os.ReadFile(filepath.Join(dir, config.FileName))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"default_ttl": "1m30s"`, "durations are written as Go durations")
}

func TestDuration(t *testing.T) {
	var d config.Duration
	require.NoError(t, json.Unmarshal([]byte(`"1h30m"`), &d))
	assert.Equal(t, config.Duration(90*time.Minute), d)
	b, err := json.Marshal(config.Duration(15 * time.Minute))
	require.NoError(t, err)
	assert.Equal(t, `"15m0s"`, string(b))

	for _, bad := range []string{`900`, `"15 minutes"`, `""`, `true`, `"1d"`} {
		var d config.Duration
		assert.Error(t, json.Unmarshal([]byte(bad), &d), bad)
	}
}

func TestPath(t *testing.T) {
	dir, c := initDir(t)
	assert.Equal(t, filepath.Join(dir, "trust.json"), c.Path("trust.json"))
	assert.Equal(t, filepath.Join(dir, "keys", "policy.nk"), c.Path("keys/policy.nk"))
	abs := filepath.Join(string(filepath.Separator), "etc", "writ", "trust.json")
	assert.Equal(t, abs, c.Path(abs))
	assert.Equal(t, "", c.Path(""))
	assert.False(t, config.Exists(t.TempDir()))
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"bundle without this domain", func(t *testing.T, dir string) {
			acct, err := nkeys.CreateAccount()
			require.NoError(t, err)
			pub, _ := acct.PublicKey()
			b := &identity.Bundle{Domains: map[string]*identity.Domain{"other": {Accounts: []string{pub}}}}
			require.NoError(t, b.Save(filepath.Join(dir, "trust.json")))
		}, `does not list this domain, "acme"`},
		{"invalid bundle", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "trust.json"), []byte(`{"domains": {}}`), 0o644))
		}, "no domains"},
		{"missing key", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "keys", "approval.nk")))
		}, "approval.nk"},
		{"broken key", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "keys", "issuer.xk"), []byte("SXNOTASEED"), 0o600))
		}, "issuer.xk"},
		{"no policies", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "policies", "main.cedar")))
		}, "no .cedar files"},
		{"bad policy", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "policies", "main.cedar"), []byte(`@max_ttl("1s") permit (principal, action, resource);`), 0o644))
		}, "@max_ttl"},
		{"policy needing an undefined flow", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "policies", "extra.cedar"), []byte(`@flow("security") permit (principal, action, resource);`), 0o644))
		}, `flow "security"`},
		{"bad flows", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "flows.json"), []byte(`{"flows": {"two-sre-leads": {"stages": []}}}`), 0o644))
		}, "no stages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := initDir(t)
			tt.edit(t, dir)
			c, err := config.Load(dir)
			require.NoError(t, err)
			rt, err := c.Open()
			require.Error(t, err)
			assert.Nil(t, rt)
			assert.ErrorContains(t, err, tt.want)
			if strings.Contains(tt.name, "polic") || strings.Contains(tt.name, "flow") {
				assert.ErrorIs(t, err, policy.ErrLoad)
			}
		})
	}
}
