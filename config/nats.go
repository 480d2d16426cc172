package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/notify"
)

// ErrNoServerAuth is returned for a setup made before the server enforced
// roles: it has no NATS operator key.
var ErrNoServerAuth = errors.New("this setup predates server-enforced roles: its NATS server would let every connection do anything")

// UpgradeHint says how to move such a setup on.
func UpgradeHint(dir string) string {
	return fmt.Sprintf("run 'writ init --upgrade --dir %s' once: it adds the server's keys and re-issues the setup's creds with their roles", dir)
}

// HasServerAuth reports whether the setup has its server's keys.
func (c *Config) HasServerAuth() bool {
	_, err := os.Stat(c.Path(NATSOperatorSeed))
	return err == nil
}

// ServerAuth is the embedded server's authentication: the operator, the
// system account, and this domain's account with JetStream, whose users
// have no rights but those their JWT carries.
func (c *Config) ServerAuth() (*embedded.Auth, error) {
	if !c.HasServerAuth() {
		return nil, ErrNoServerAuth
	}
	var keys [3]nkeys.KeyPair
	for i, f := range []string{NATSOperatorSeed, NATSSystemSeed, AccountSeed} {
		kp, err := identity.LoadSeed(c.Path(f))
		if err != nil {
			return nil, err
		}
		keys[i] = kp
	}
	op, sys, account := keys[0], keys[1], keys[2]
	return serverAuth(op, sys, account, c.Domain, c.RevokedUsers, time.Now())
}

// serverAuth signs the operator's and the accounts' JWTs; the domain's
// account revokes the creds of the revoked users issued up to now.
func serverAuth(op, sys, account nkeys.KeyPair, domain string, revoked []string, now time.Time) (*embedded.Auth, error) {
	opPub, _ := op.PublicKey()
	sysPub, _ := sys.PublicKey()
	accPub, _ := account.PublicKey()
	if !nkeys.IsValidPublicOperatorKey(opPub) || !nkeys.IsValidPublicAccountKey(sysPub) || !nkeys.IsValidPublicAccountKey(accPub) {
		return nil, errors.New("the server keys are not an operator key and two account keys")
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "writ-" + domain
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("sign the operator JWT: %w", err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("sign the system account JWT: %w", err)
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = domain
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit,
		MaxAckPending: jwt.NoLimit, MemoryMaxStreamBytes: jwt.NoLimit, DiskMaxStreamBytes: jwt.NoLimit,
	}
	// A user JWT that carries no permissions (one issued before roles
	// existed) may do nothing: fail closed until it is re-issued.
	ac.DefaultPermissions = jwt.Permissions{Pub: jwt.Permission{Deny: []string{">"}}, Sub: jwt.Permission{Deny: []string{">"}}}
	// A revoked user key is refused on connecting, and a connection of it
	// that is open when the server takes this JWT is closed.
	for _, k := range revoked {
		ac.RevokeAt(k, now)
	}
	accJWT, err := ac.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("sign the account JWT: %w", err)
	}
	return &embedded.Auth{Operator: opJWT, System: sysJWT, Accounts: []string{accJWT}}, nil
}

// Scope is what a role's permissions cover in this setup, for user key user.
// and roles (suffix: the durable consumers' suffix, see pipeline.Options).
func (c *Config) Scope(user, suffix string, roles ...access.Role) access.Scope {
	s := access.Scope{Domain: c.Domain, Stream: c.Stream.Name, Timers: c.Stream.Timers, User: user}
	env := consumers.Env{Domain: c.Domain, Streams: consumers.StreamConfig{Name: c.Stream.Name, Timers: c.Stream.Timers}, DurableSuffix: suffix}
	for _, role := range roles {
		switch {
		case role == access.Notifier:
			s.Consumers = append(s.Consumers, notify.DurablesOf(env, "")...)
		case role.IsComponent():
			s.Consumers = append(s.Consumers, env.DurablesOf(string(role))...)
		}
	}
	return s
}

// RoleSpec describes creds to issue for a role.
type RoleSpec struct {
	Roles  []access.Role // several: the union of their rights (a replica running several components)
	Name   string
	Groups []string      // principals only
	TTL    time.Duration // zero: no expiry
	Spoke  string        // a Leaf: the spoke domain
	Behind []string      // a Leaf for a hub of hubs: its spokes' domains (access.Scope.Behind)
	User   nkeys.KeyPair // the key to sign for; nil: a new one
	Now    time.Time
	// DurableSuffix names the components' durable consumers (tests race
	// two sets of them; see pipeline.Options).
	DurableSuffix string
}

// ClientConnections are how the creds of every role but a leaf connect:
// as clients, over TCP, websocket or in-process; never as a leafnode.
var ClientConnections = []string{jwt.ConnectionTypeStandard, jwt.ConnectionTypeWebsocket, jwt.ConnectionTypeInProcess}

// IssueRole signs creds for a role with the domain's account key.
func (c *Config) IssueRole(account nkeys.KeyPair, r RoleSpec) ([]byte, error) {
	token, user, err := c.SignRole(account, r)
	if err != nil {
		return nil, err
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// SignRole signs a user JWT for a role with the domain's account key, and
// returns it with its user key.
func (c *Config) SignRole(account nkeys.KeyPair, r RoleSpec) (string, nkeys.KeyPair, error) {
	if len(r.Roles) == 0 {
		return "", nil, errors.New("name a role")
	}
	if slices.Contains(r.Roles, access.CalloutSystem) {
		// Not a user of this domain's account: the callout's target server
		// signs (or lists) its system-account users itself.
		return "", nil, errors.New("a callout-system user belongs to the system account of the server writ callout answers for: create it there with the rights callout.SystemSubjects lists (see package callout)")
	}
	// Creds connect as what they are for: a leaf's link a leafnode and
	// nothing else, every other role a client. A principal's creds that
	// linked a server of its holder's as a leafnode would give whoever
	// connects there the principal's rights, in no one's name.
	spec := identity.UserSpec{Domain: c.Domain, Name: r.Name, Groups: r.Groups, TTL: r.TTL, Now: r.Now, User: r.User,
		ConnectionTypes: ClientConnections}
	for _, role := range r.Roles {
		spec.Tags = append(spec.Tags, "role:"+string(role))
		if role == access.Leaf {
			if len(r.Roles) > 1 {
				return "", nil, errors.New("a leaf's creds have that role alone")
			}
			spec.ConnectionTypes = []string{jwt.ConnectionTypeLeafnode}
		}
	}
	spec.Permissions = func(user string) (jwt.Permissions, error) {
		s := c.Scope(user, r.DurableSuffix, r.Roles...)
		s.Spoke, s.Behind = r.Spoke, r.Behind
		return access.Permissions(s, r.Roles...)
	}
	return identity.SignUser(account, spec)
}

// writeServerKeys creates the NATS operator and system account keys.
func writeServerKeys(dir string) error {
	op, err := nkeys.CreateOperator()
	if err != nil {
		return err
	}
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	if err := writeSeed(filepath.Join(dir, NATSOperatorSeed), op); err != nil {
		return err
	}
	return writeSeed(filepath.Join(dir, NATSSystemSeed), sys)
}

// Upgrade gives a setup made before the server enforced roles what it
// lacks: the server's keys, and creds with roles. Every .creds file in its
// creds folder that this domain's account signed is signed again for the
// same user key, name, groups and expiry, as a principal; the reader,
// redeemer and operator creds are written. It returns the files it re-signed. A setup that has the
// server's keys already is left as it is (ErrUpToDate).
func Upgrade(dir string) ([]string, error) {
	c, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if c.HasServerAuth() {
		return nil, ErrUpToDate
	}
	account, err := identity.LoadSeed(c.Path(AccountSeed))
	if err != nil {
		return nil, err
	}
	accountPub, _ := account.PublicKey()
	paths, _ := filepath.Glob(filepath.Join(dir, CredsDir, "*.creds"))
	var files []roleFile
	now := time.Now()
	for _, path := range paths {
		rel, _ := filepath.Rel(dir, path)
		if rel == ReaderCreds || rel == RedeemerCreds || rel == ComponentsCreds {
			continue
		}
		id, err := identity.LoadCreds(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if id.Principal.Account != accountPub || id.Principal.Domain != c.Domain {
			continue // another domain's identity: its own setup re-signs it
		}
		spec := RoleSpec{Roles: []access.Role{access.Principal}, Name: id.Principal.Name, Groups: id.Principal.Groups, User: id.Key}
		if !id.Principal.Expires.IsZero() {
			if spec.TTL = id.Principal.Expires.Sub(now); spec.TTL <= 0 {
				continue // expired: nothing to keep
			}
		}
		files = append(files, roleFile{rel, spec})
	}
	// The server keys last, so that a failure leaves a setup serve still
	// refuses, and that can be upgraded again.
	done, err := c.writeCreds(account, now, append(files, serviceCreds...))
	if err != nil {
		return done, err
	}
	if c.Creds == "" {
		c.Creds = ComponentsCreds
		if err := c.Save(dir); err != nil {
			return done, err
		}
	}
	return done, writeServerKeys(dir)
}

// ErrUpToDate is returned by Upgrade for a setup that needs nothing.
var ErrUpToDate = errors.New("this setup already has server-enforced roles")

// ServerConf is a nats-server configuration that gives a real server the
// guarantees of the embedded one: operator mode with this domain's
// account (users have only the rights their JWTs carry), the system
// account, JetStream in this domain's JetStream domain writing every event
// to disk before acknowledging it, and room for a role's JWT in CONNECT.
// With authOnly it holds the authentication settings alone, for a server
// configuration that includes it and says the rest itself (a cluster
// node's: listen, store_dir, cluster routes).
func (c *Config) ServerConf(storeDir string, authOnly bool) ([]byte, error) {
	auth, err := c.ServerAuth()
	if err != nil {
		return nil, err
	}
	op, err := jwt.DecodeOperatorClaims(auth.Operator)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# nats-server configuration for Writ domain %q, written by 'writ init --server-config'.\n", c.Domain)
	fmt.Fprintf(&b, "# Every connection must present a user JWT of the domain's account (writ identity issue),\n")
	fmt.Fprintf(&b, "# and may do only what its role allows. Writ it again after changing the account key.\n\n")
	if !authOnly {
		fmt.Fprintf(&b, "server_name: %q\nlisten: %q\n\n", "writ-"+c.Domain, c.Listen)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  domain: %q\n", storeDir, c.Domain)
		fmt.Fprintf(&b, "  # Every write on disk before it is acknowledged: an audit trail must\n  # not lose acknowledged events on power loss.\n  sync_interval: always\n}\n\n")
	} else {
		fmt.Fprintf(&b, "# The including file says where JetStream stores, and should have\n#   jetstream { domain: %q, sync_interval: always, store_dir: ... }\n\n", c.Domain)
	}
	fmt.Fprintf(&b, "max_payload: 1MB\n# A CONNECT carries a role's user JWT: several KiB.\nmax_control_line: %d\n\n", embedded.MaxControlLine)
	fmt.Fprintf(&b, "operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n", auth.Operator, op.SystemAccount)
	for _, t := range append([]string{auth.System}, auth.Accounts...) {
		ac, err := jwt.DecodeAccountClaims(t)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "  # %s\n  %s: %s\n", ac.Name, ac.Subject, t)
	}
	b.WriteString("}\n")
	return []byte(b.String()), nil
}
