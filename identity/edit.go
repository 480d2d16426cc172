package identity

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/nats-io/nkeys"
)

// Errors returned when an edit of a bundle is refused. The bundle is left
// unchanged.
var (
	ErrInvalidKey       = errors.New("invalid public key")
	ErrKeyInOtherDomain = errors.New("key already trusted for another domain")
	ErrKeyRoleConflict  = errors.New("key already plays another role")
	ErrKeyIsRevoked     = errors.New("key is revoked for this domain")
	ErrKeyNotListed     = errors.New("key not listed for this domain")
)

// KeyConflictError says which domain already trusts a key: keys are scoped
// to one domain. It wraps ErrKeyInOtherDomain.
type KeyConflictError struct {
	Key    string
	Domain string // the domain the key was to be added to
	Owner  string // the domain that already lists it
}

func (e *KeyConflictError) Error() string {
	return fmt.Sprintf("key %s is already trusted for domain %q; a key belongs to one domain only, so it cannot be added to %q",
		e.Key, e.Owner, e.Domain)
}

func (e *KeyConflictError) Unwrap() error { return ErrKeyInOtherDomain }

// Clone returns a deep copy of the bundle.
func (b *Bundle) Clone() *Bundle {
	c := &Bundle{Domains: make(map[string]*Domain, len(b.Domains))}
	for name, d := range b.Domains {
		c.Domains[name] = d.clone()
	}
	return c
}

func (d *Domain) clone() *Domain {
	if d == nil {
		return nil
	}
	c := &Domain{
		Accounts:   slices.Clone(d.Accounts),
		Components: make(map[Role][]string, len(d.Components)),
		Revoked:    slices.Clone(d.Revoked),
	}
	for r, keys := range d.Components {
		c.Components[r] = slices.Clone(keys)
	}
	return c
}

// IsAccount reports whether key is one of the domain's account keys,
// revoked or not.
func (d *Domain) IsAccount(key string) bool { return d != nil && slices.Contains(d.Accounts, key) }

// Lists reports whether the domain lists key as an account or component key
// (revoked or not), and the role of a component key.
func (d *Domain) Lists(key string) (Role, bool) {
	if d == nil {
		return "", false
	}
	if slices.Contains(d.Accounts, key) {
		return "", true
	}
	for _, r := range slices.Sorted(maps.Keys(d.Components)) {
		if slices.Contains(d.Components[r], key) {
			return r, true
		}
	}
	return "", false
}

// Owner returns the domain that lists key as an account or component key.
func (b *Bundle) Owner(key string) (string, bool) {
	for _, name := range slices.Sorted(maps.Keys(b.Domains)) {
		if _, ok := b.Domains[name].Lists(key); ok {
			return name, true
		}
	}
	return "", false
}

// Add trusts more keys for domain name, creating the domain if the bundle
// does not list it: d's account keys, component keys and revoked keys are
// merged into it, and it returns how many were new. It refuses, changing
// nothing, an invalid domain name or key, a key another domain lists
// (*KeyConflictError), a component key that already plays another role, and
// a key revoked for the domain.
func (b *Bundle) Add(name string, d Domain) (int, error) {
	if !ValidDomainName(name) {
		return 0, fmt.Errorf("invalid domain name %q: lower case letters, digits and dashes", name)
	}
	cur := b.Domains[name].clone()
	if cur == nil {
		cur = &Domain{}
	}
	if cur.Components == nil {
		cur.Components = map[Role][]string{}
	}
	added := 0
	trust := func(key string) error {
		if owner, ok := b.Owner(key); ok && owner != name {
			return &KeyConflictError{Key: key, Domain: name, Owner: owner}
		}
		if cur.IsRevoked(key) {
			return fmt.Errorf("%w: %s is revoked for %q; revocations are kept", ErrKeyIsRevoked, key, name)
		}
		return nil
	}
	for _, k := range d.Accounts {
		if !nkeys.IsValidPublicAccountKey(k) {
			return 0, fmt.Errorf("%w: %q is not an account public key", ErrInvalidKey, k)
		}
		if err := trust(k); err != nil {
			return 0, err
		}
		if !slices.Contains(cur.Accounts, k) {
			cur.Accounts = append(cur.Accounts, k)
			added++
		}
	}
	for _, role := range slices.Sorted(maps.Keys(d.Components)) {
		if _, err := ParseRole(string(role)); err != nil {
			return 0, err
		}
		for _, k := range d.Components[role] {
			if !nkeys.IsValidPublicServerKey(k) {
				return 0, fmt.Errorf("%w: %s key %q is not a server public key", ErrInvalidKey, role, k)
			}
			if err := trust(k); err != nil {
				return 0, err
			}
			if r, ok := cur.Lists(k); ok {
				if r != role {
					return 0, fmt.Errorf("%w: %s is %q's %s key, not its %s key", ErrKeyRoleConflict, k, name, r, role)
				}
				continue
			}
			cur.Components[role] = append(cur.Components[role], k)
			added++
		}
	}
	for _, k := range d.Revoked {
		if !validRevocable(k) {
			return 0, fmt.Errorf("%w: revoked %q is not an account or server public key", ErrInvalidKey, k)
		}
		if !cur.IsRevoked(k) {
			cur.Revoked = append(cur.Revoked, k)
			added++
		}
	}
	if b.Domains == nil {
		b.Domains = map[string]*Domain{}
	}
	b.Domains[name] = cur
	return added, nil
}

// Remove stops trusting domain name altogether.
func (b *Bundle) Remove(name string) error {
	if b.Domains[name] == nil {
		return fmt.Errorf("%w %q", ErrUnknownDomain, name)
	}
	delete(b.Domains, name)
	return nil
}

// RemoveKey removes key from the account or component keys of domain name.
// A revocation is kept: removing a revoked key does not lift its revocation,
// and a key that is only revoked is not listed (ErrKeyNotListed).
func (b *Bundle) RemoveKey(name, key string) error {
	d := b.Domains[name]
	if d == nil {
		return fmt.Errorf("%w %q", ErrUnknownDomain, name)
	}
	role, ok := d.Lists(key)
	if !ok {
		if d.IsRevoked(key) {
			return fmt.Errorf("%w: %s is only on %q's revoked list, and revocations are kept", ErrKeyNotListed, key, name)
		}
		return fmt.Errorf("%w: %s is not a key of %q", ErrKeyNotListed, key, name)
	}
	if role == "" {
		d.Accounts = slices.DeleteFunc(d.Accounts, func(k string) bool { return k == key })
		return nil
	}
	d.Components[role] = slices.DeleteFunc(d.Components[role], func(k string) bool { return k == key })
	if len(d.Components[role]) == 0 {
		delete(d.Components, role)
	}
	return nil
}

// Revoke adds key, an account or component public key, to the revoked keys
// of domain name; it reports whether the key was not revoked already. The
// key need not be listed: a key known to be compromised can be refused
// before anyone adds it.
func (b *Bundle) Revoke(name, key string) (bool, error) {
	d := b.Domains[name]
	if d == nil {
		return false, fmt.Errorf("%w %q", ErrUnknownDomain, name)
	}
	if !validRevocable(key) {
		return false, fmt.Errorf("%w: %q is not an account or server public key", ErrInvalidKey, key)
	}
	if d.IsRevoked(key) {
		return false, nil
	}
	d.Revoked = append(d.Revoked, key)
	return true, nil
}
