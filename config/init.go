package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/policy"
)

// ErrExists is returned by Init when the directory already holds a setup.
var ErrExists = errors.New("a Writ setup already exists here")

// SampleIdentity is a principal Init creates.
type SampleIdentity struct {
	Name   string
	Groups []string
}

// SampleIdentities are the principals of a new setup: two SRE leads (the
// approvers of the sample flow), a developer and a deploy bot.
var SampleIdentities = []SampleIdentity{
	{Name: "alice", Groups: []string{"sre-leads"}},
	{Name: "bob", Groups: []string{"sre-leads"}},
	{Name: "carol", Groups: []string{"developers"}},
	{Name: "deploy-bot", Groups: []string{"bots"}},
}

// Init creates a complete local setup for domain in dir and returns its
// configuration. It refuses to overwrite an existing one.
func Init(dir, domain string) (*Config, error) {
	if !identity.ValidDomainName(domain) {
		return nil, fmt.Errorf("invalid domain name %q: lower case letters, digits and dashes", domain)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	for _, sub := range []string{KeysDir, CredsDir, "policies"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	c := Default(domain)
	c.dir = dir
	c.Creds = ComponentsCreds // what 'writ serve --server' connects with

	account, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	if err := writeSeed(c.Path(AccountSeed), account); err != nil {
		return nil, err
	}
	accountPub, _ := account.PublicKey()
	d := &identity.Domain{Accounts: []string{accountPub}, Components: map[identity.Role][]string{}}
	for role, path := range map[identity.Role]string{
		identity.RolePolicy: c.Keys.Policy, identity.RoleApproval: c.Keys.Approval, identity.RoleIssuer: c.Keys.Issuer,
		identity.RoleRedeemer: c.Keys.Redeemer, identity.RoleAuditor: c.Keys.Auditor,
	} {
		kp, err := nkeys.CreateServer()
		if err != nil {
			return nil, err
		}
		if err := writeSeed(c.Path(path), kp); err != nil {
			return nil, err
		}
		pub, _ := kp.PublicKey()
		d.Components[role] = []string{pub}
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, err
	}
	if err := writeSeed(c.Path(c.Keys.IssuerXKey), xkey); err != nil {
		return nil, err
	}
	bundle := &identity.Bundle{Domains: map[string]*identity.Domain{domain: d}}
	if err := bundle.Save(c.Path(c.Trust)); err != nil {
		return nil, err
	}
	if err := writeServerKeys(dir); err != nil {
		return nil, err
	}
	if err := c.writeRoleCreds(account, time.Now()); err != nil {
		return nil, err
	}
	policyText := strings.ReplaceAll(samplePolicy, "{{domain}}", domain)
	if err := os.WriteFile(filepath.Join(dir, "policies", "main.cedar"), []byte(policyText), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.Path(c.Flows), []byte(sampleFlows), 0o644); err != nil {
		return nil, err
	}
	if err := c.Save(dir); err != nil {
		return nil, err
	}
	// What Init wrote must load: check it the way serve will.
	if _, err := c.Open(); err != nil {
		return nil, fmt.Errorf("the new setup does not load: %w", err)
	}
	return &c, nil
}

// writeRoleCreds issues a new setup's creds: the sample principals, a
// reader (what audit commands use by default), the redeemer, and the
// operator's, kept with the keys.
func (c *Config) writeRoleCreds(account nkeys.KeyPair, now time.Time) error {
	var files []roleFile
	for _, s := range SampleIdentities {
		files = append(files, roleFile{PrincipalCreds(s.Name),
			RoleSpec{Roles: []access.Role{access.Principal}, Name: s.Name, Groups: s.Groups, TTL: credsTTL}})
	}
	_, err := c.writeCreds(account, now, append(files, serviceCreds...))
	return err
}

// credsTTL is how long the creds a setup makes for itself are valid.
const credsTTL = 365 * 24 * time.Hour

// roleFile is creds to write, at a path relative to the setup.
type roleFile struct {
	path string
	spec RoleSpec
}

// serviceCreds are the creds every setup has besides its principals'.
var serviceCreds = []roleFile{
	{ReaderCreds, RoleSpec{Roles: []access.Role{access.Reader}, Name: "reader", TTL: credsTTL}},
	{RedeemerCreds, RoleSpec{Roles: []access.Role{access.Redeemer}, Name: "redeemer", TTL: credsTTL}},
	{OperatorCreds, RoleSpec{Roles: []access.Role{access.Operator}, Name: "operator", TTL: credsTTL}},
	{ComponentsCreds, RoleSpec{Roles: access.Components, Name: "writ-serve", TTL: credsTTL}},
}

// writeCreds issues files with the account key, as of now, and returns
// the paths written.
func (c *Config) writeCreds(account nkeys.KeyPair, now time.Time, files []roleFile) ([]string, error) {
	var done []string
	for _, f := range files {
		f.spec.Now = now
		creds, err := c.IssueRole(account, f.spec)
		if err != nil {
			return done, err
		}
		if err := writeFileAtomic(c.Path(f.path), creds, 0o600); err != nil {
			return done, err
		}
		done = append(done, c.Path(f.path))
	}
	return done, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeSeed(path string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(seed, '\n'), 0o600)
}

// Runtime is a configuration with everything it names loaded and checked.
type Runtime struct {
	Config      *Config
	Bundle      *identity.Bundle
	PolicyKey   nkeys.KeyPair
	ApprovalKey nkeys.KeyPair
	IssuerKey   nkeys.KeyPair
	IssuerXKey  nkeys.KeyPair
	RedeemerKey nkeys.KeyPair // nil when the configuration names none
	AuditorKey  nkeys.KeyPair // nil when the configuration has no audit section
	Policies    *policy.Set
	Flows       *policy.Flows
}

// Open loads the keys, trust bundle, policies and flows the configuration names.
func (c *Config) Open() (*Runtime, error) {
	r := &Runtime{Config: c}
	var errs []error
	var err error
	if r.Bundle, err = identity.LoadBundle(c.Path(c.Trust)); err != nil {
		errs = append(errs, err)
	} else if r.Bundle.Domains[c.Domain] == nil {
		errs = append(errs, fmt.Errorf("the trust bundle does not list this domain, %q", c.Domain))
	}
	for _, k := range []struct {
		path string
		dst  *nkeys.KeyPair
	}{{c.Keys.Policy, &r.PolicyKey}, {c.Keys.Approval, &r.ApprovalKey}, {c.Keys.Issuer, &r.IssuerKey}, {c.Keys.IssuerXKey, &r.IssuerXKey}} {
		if *k.dst, err = identity.LoadSeed(c.Path(k.path)); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Keys.Redeemer != "" {
		if r.RedeemerKey, err = identity.LoadSeed(c.Path(c.Keys.Redeemer)); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Audit != nil {
		if r.AuditorKey, err = identity.LoadSeed(c.Path(c.Keys.Auditor)); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Policies, err = policy.LoadDir(c.Path(c.Policies)); err != nil {
		errs = append(errs, err)
	}
	if r.Flows, err = policy.LoadFlowsFile(c.Path(c.Flows)); err != nil {
		errs = append(errs, err)
	}
	if r.Policies != nil && r.Flows != nil {
		if err := r.Flows.Check(r.Policies); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Exists reports whether dir holds a configuration.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, FileName))
	return !errors.Is(err, fs.ErrNotExist)
}

const samplePolicy = `// Sample policies for domain {{domain}}, written by 'writ init'.
// Principals are User::"<domain>/<name>" in Group::"<domain>/<group>";
// resources are Resource::"<domain>/<path>" with attributes domain, path and
// state (the resource's entry in the writ-resource-state bucket), and
// Resource::"<domain>" (path "") is the domain itself.
// Context: urgency, reason, ticket, origin, ttl_seconds, params, now, hour_utc,
// domain_state (the domain's own entry in that bucket).
// A permit with @flow("name") needs that approval flow; @max_ttl caps the grant.

// Deploy bots ship to staging at once, for ten minutes at most.
@id("bots-deploy-staging")
@max_ttl("10m")
permit (principal in Group::"{{domain}}/bots", action == Action::"deploy", resource)
when { resource.path like "staging/*" };

// Developers may do anything to dev resources.
@id("developers-own-dev")
permit (principal in Group::"{{domain}}/developers", action, resource)
when { resource.path like "dev/*" };

// Developers may restart production services once two SRE leads agree.
@id("developers-restart-prod")
@flow("two-sre-leads")
@max_ttl("30m")
permit (principal in Group::"{{domain}}/developers", action == Action::"restart", resource)
when { resource.path like "prod/*" };

// SRE leads may read production logs at once.
@id("sre-leads-read-prod-logs")
permit (principal in Group::"{{domain}}/sre-leads", action == Action::"read-logs", resource)
when { resource.path like "prod/*" };

// The on-call SRE lead restarts their production service at once while
// the domain has an active incident ('writ state set' asks for both facts).
@id("on-call-during-incident")
@max_ttl("30m")
permit (principal in Group::"{{domain}}/sre-leads", action == Action::"restart", resource)
when {
  resource.path like "prod/*" &&
  resource.state has on_call && resource.state.on_call == principal.name &&
  context.domain_state has incident_active && context.domain_state.incident_active == "true"
};

// Who may answer a stage: its groups say who is asked; this says who may
// answer at all (Action::"approve" on Request::"<domain>/<id>", with the
// request's requester, action, resource, urgency, flow and stage). Here:
// anyone asked, except that nobody approves a request from outside the
// domain for prod without being an SRE lead.
@id("approvers-may-approve")
permit (principal, action == Action::"approve", resource);

@id("outside-prod-needs-leads")
forbid (principal, action == Action::"approve", resource)
when { resource.requester_domain != resource.domain && resource.resource like "prod/*" }
unless { principal in Group::"{{domain}}/sre-leads" };

// SRE leads may revoke any request or grant; requesters may always
// withdraw their own, whatever the policies say.
@id("sre-leads-revoke")
permit (principal in Group::"{{domain}}/sre-leads", action == Action::"revoke", resource);

// SRE leads may lock (and unlock) principals, keys and domains.
@id("sre-leads-lock")
permit (principal in Group::"{{domain}}/sre-leads", action == Action::"lock", resource);

// Resource state ('writ state set|delete') is what policies such as
// on-call-during-incident read, so only the resources' owners and on-call
// tooling set it: SRE leads, who own production, and the bots group (the
// paging and incident tooling), on any resource and on the domain's own
// entry, Resource::"{{domain}}". Developers own dev/* (developers-own-dev)
// and may set state there only: carol cannot say who is on call for
// prod/db, nor declare an incident. A change is Action::"set-state";
// context.params holds the attributes it sets (none for a deletion).
@id("owners-and-tooling-set-state")
permit (principal, action == Action::"set-state", resource)
when { principal in Group::"{{domain}}/sre-leads" || principal in Group::"{{domain}}/bots" };

// Nobody puts themselves on call: with on-call-during-incident, that would
// let an SRE lead grant themselves a production restart.
@id("nobody-sets-themselves-on-call")
forbid (principal, action == Action::"set-state", resource)
when { context.params has on_call && context.params.on_call == principal.name };

// Nobody drops a production database through Writ, whatever else says.
@id("no-prod-database-drop")
forbid (principal, action == Action::"drop-database", resource)
when { resource.path like "prod/*" };
`

const sampleFlows = `{
  "flows": {
    "two-sre-leads": {
      "description": "Two distinct SRE leads approve; any one of them can deny.",
      "stages": [
        {"name": "leads", "groups": ["sre-leads"], "required": 2, "deadline": "30m"}
      ]
    }
  }
}
`

// Leaf is the leafnode configuration of the embedded server, or nil when
// the domain does not federate. A spoke never forwards the component
// events of the other domains it trusts, but for those of its own spokes
// when it is a hub too (a hub of hubs): their decisions reach requesters
// beyond its hub through it.
func (r *Runtime) Leaf() (*embedded.Leaf, error) {
	f := r.Config.Federation
	if f == nil {
		return nil, nil
	}
	var others []string
	for d := range r.Bundle.Domains {
		if d != r.Config.Domain && !slices.Contains(f.Spokes, d) {
			others = append(others, d)
		}
	}
	sort.Strings(others)
	l := &embedded.Leaf{Domain: r.Config.Domain, Listen: f.Listen, Remotes: f.Remotes, Others: others}
	if len(f.Remotes) > 0 {
		if f.Creds == "" {
			return nil, fmt.Errorf("federation: a spoke connects to its hub with the leaf creds the hub issued: set federation.creds (the hub's operator runs '%s')", LeafCredsHint("HUB-DIR", "HUB", r.Config.Dir(), r.Config.Domain))
		}
		account, err := identity.LoadSeed(r.Config.Path(AccountSeed))
		if err != nil {
			return nil, err
		}
		l.Account, _ = account.PublicKey()
		l.Creds = r.Config.Path(f.Creds)
	}
	return l, nil
}
