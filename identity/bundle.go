package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	RoleAuditor  Role = "auditor"  // signs checkpoints of the audit stream
)

// Roles lists every known role, in pipeline order.
var Roles = []Role{RolePolicy, RoleApproval, RoleIssuer, RoleRedeemer, RoleAuditor}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q", s)
}

var (
	domainName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	groupName  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// A principal name also names its .creds file: no separators, no dot first.
	principalName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)
)

// ValidPrincipalName reports whether s is a name `writ identity issue` gives a
// principal: letters, digits, '.', '_', '@' and '-', starting with a letter or
// digit, at most 128 characters.
func ValidPrincipalName(s string) bool { return principalName.MatchString(s) }

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
	// Revoked are public keys (account or component keys) that must no
	// longer be accepted for this domain, even while still listed above.
	Revoked []string `json:"revoked,omitempty"`
}

// IsRevoked reports whether key is revoked for the domain.
func (d *Domain) IsRevoked(key string) bool { return d != nil && slices.Contains(d.Revoked, key) }

// Bundle is the set of domains this installation trusts, with their keys.
type Bundle struct {
	Domains map[string]*Domain `json:"domains"`
}

// LoadBundle reads a trust bundle from a JSON file.
func LoadBundle(path string) (*Bundle, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trust bundle: %w", err)
	}
	var tb Bundle
	if err := json.Unmarshal(b, &tb); err != nil {
		return nil, fmt.Errorf("parse trust bundle %s: %w", path, err)
	}
	if err := tb.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &tb, nil
}

// ErrInvalidBundle is what an error of Validate matches: a name or key in
// the trust bundle is not one.
var ErrInvalidBundle = errors.New("invalid trust bundle")

// Validate checks every name and key in the bundle, and changes nothing
// (a bundle has no defaults).
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
		for _, k := range d.Revoked {
			if !validRevocable(k) {
				errs = append(errs, fmt.Errorf("domain %q: revoked %q is not an account or server public key", name, k))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBundle, err)
	}
	return nil
}

// validRevocable reports whether k is a key a domain can revoke: an account
// key or a component (server) key.
func validRevocable(k string) bool {
	return nkeys.IsValidPublicAccountKey(k) || nkeys.IsValidPublicServerKey(k)
}

// RoleOf returns the role that key plays for domain, if any. A key trusted
// for another domain, or revoked for this one, plays no role here.
func (b *Bundle) RoleOf(domain, key string) (Role, bool) {
	d := b.Domains[domain]
	if d == nil || d.IsRevoked(key) {
		return "", false
	}
	for role, keys := range d.Components {
		if slices.Contains(keys, key) {
			return role, true
		}
	}
	return "", false
}

// Entitled reports whether key may sign role's events for domain: it is
// listed for that role of that domain, and not revoked there.
func (b *Bundle) Entitled(domain string, role Role, key string) bool {
	d := b.Domains[domain]
	return d != nil && !d.IsRevoked(key) && slices.Contains(d.Components[role], key)
}

// Save validates the bundle and writes it as indented JSON, atomically: to
// a temporary file in the same directory, synced, then renamed over path.
// A reader sees the old bundle or the new one, never a part of either, and
// an invalid bundle is never written.
func (b *Bundle) Save(path string) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("not saved: %w", err)
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(out, '\n'), 0o644)
}

// writeFileAtomic writes data to path through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
