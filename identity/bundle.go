package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"

	"github.com/nats-io/nkeys"
)

// Role names a pipeline component. Each role signs the event kinds it owns.
type Role string

// The roles of the pipeline's components.
const (
	RolePolicy   Role = "policy"
	RoleApproval Role = "approval"
	RoleIssuer   Role = "issuer"
	RoleRedeemer Role = "redeemer" // a target domain's service that consumes grants
)

// Roles lists every known role, in pipeline order.
var Roles = []Role{RolePolicy, RoleApproval, RoleIssuer, RoleRedeemer}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("identity: unknown role %q", s)
}

var (
	domainName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	groupName  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

// ValidGroupName reports whether s can name a group.
func ValidGroupName(s string) bool { return groupName.MatchString(s) }

// ValidDomainName reports whether s can name a domain: it is used as a NATS
// subject token, so it is lower case letters, digits and dashes.
func ValidDomainName(s string) bool { return domainName.MatchString(s) }

// Domain is one trust boundary: the account keys that sign its principals
// and the public keys of its pipeline components.
type Domain struct {
	// Accounts are account public keys ("A…") allowed to sign this domain's principals.
	Accounts []string `json:"accounts"`
	// Components maps a role to the public keys allowed to sign that role's
	// events for this domain. The issuer keys also sign its grants.
	Components map[Role][]string `json:"components"`
}

// Bundle is the set of domains this installation trusts, with their keys.
type Bundle struct {
	Domains map[string]*Domain `json:"domains"`
}

// LoadBundle reads a trust bundle from a JSON file.
func LoadBundle(path string) (*Bundle, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: read trust bundle: %w", err)
	}
	var tb Bundle
	if err := json.Unmarshal(b, &tb); err != nil {
		return nil, fmt.Errorf("identity: parse trust bundle %s: %w", path, err)
	}
	if err := tb.Validate(); err != nil {
		return nil, fmt.Errorf("identity: trust bundle %s: %w", path, err)
	}
	return &tb, nil
}

// Validate checks every name and key in the bundle.
func (b *Bundle) Validate() error {
	var errs []error
	if len(b.Domains) == 0 {
		errs = append(errs, errors.New("no domains"))
	}
	for name, d := range b.Domains {
		if !ValidDomainName(name) {
			errs = append(errs, fmt.Errorf("domain %q: invalid name", name))
		}
		if d == nil {
			errs = append(errs, fmt.Errorf("domain %q: empty", name))
			continue
		}
		for _, k := range d.Accounts {
			if !nkeys.IsValidPublicAccountKey(k) {
				errs = append(errs, fmt.Errorf("domain %q: %q is not an account public key", name, k))
			}
		}
		for role, keys := range d.Components {
			if _, err := ParseRole(string(role)); err != nil {
				errs = append(errs, fmt.Errorf("domain %q: %w", name, err))
			}
			for _, k := range keys {
				if !nkeys.IsValidPublicServerKey(k) {
					errs = append(errs, fmt.Errorf("domain %q: %s key %q is not a server public key", name, role, k))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// RoleOf returns the role that key plays for domain, if any. A key trusted
// for another domain plays no role here.
func (b *Bundle) RoleOf(domain, key string) (Role, bool) {
	d := b.Domains[domain]
	if d == nil {
		return "", false
	}
	for role, keys := range d.Components {
		if slices.Contains(keys, key) {
			return role, true
		}
	}
	return "", false
}

// Entitled reports whether key may sign role's events for domain.
func (b *Bundle) Entitled(domain string, role Role, key string) bool {
	d := b.Domains[domain]
	return d != nil && slices.Contains(d.Components[role], key)
}

// Save writes the bundle as indented JSON.
func (b *Bundle) Save(path string) error {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}
