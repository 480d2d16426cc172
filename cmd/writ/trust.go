package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
)

const trustSynopsis = `trust add DOMAIN --account KEY [--account KEY]... [--policy KEY] [--approval KEY] [--issuer KEY] [--redeemer KEY]
       writ trust add --from OTHER_DIR[/trust.json] [--domain DOMAIN]
       writ trust list [--json]
       writ trust remove DOMAIN [--key KEY]
       writ trust revoke DOMAIN KEY
All take --dir DIR (default .writ; env WRIT_HOME).`

func runTrust(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: writ %s", trustSynopsis)
	}
	switch args[0] {
	case "add":
		return trustAdd(args[1:], stdout, stderr)
	case "list":
		return trustList(args[1:], stdout, stderr)
	case "remove":
		return trustRemove(args[1:], stdout, stderr)
	case "revoke":
		return trustRevoke(args[1:], stdout, stderr)
	}
	if isHelp(args[0]) {
		return subcommandHelp("writ trust: the domains and keys this setup trusts.",
			func(a []string) error { return trustAdd(a, stdout, stderr) },
			func(a []string) error { return trustList(a, stdout, stderr) },
			func(a []string) error { return trustRemove(a, stdout, stderr) },
			func(a []string) error { return trustRevoke(a, stdout, stderr) })
	}
	return usageError("unknown trust command %q: add, list, remove or revoke", args[0])
}

// setup is a Writ directory's configuration and its trust bundle.
type setup struct {
	cfg    *config.Config
	path   string // of the trust bundle
	bundle *identity.Bundle
}

// loadSetup loads the configuration in dir and the trust bundle it names.
func loadSetup(dir string) (*setup, error) {
	cfg, err := config.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no Writ setup in %s: create one with 'writ init --dir %s --domain NAME', or choose another --dir", dir, dir)
	}
	if err != nil {
		return nil, err
	}
	path := cfg.Path(cfg.Trust)
	b, err := identity.LoadBundle(path)
	if err != nil {
		return nil, err
	}
	return &setup{cfg: cfg, path: path, bundle: b}, nil
}

// save writes the bundle: validated, then atomically replaced.
func (s *setup) save() error { return s.bundle.Save(s.path) }

// ownKeys maps the public keys this setup signs with to the files holding
// their seeds. Keys that do not load are left out.
func (s *setup) ownKeys() map[string]string {
	files := []string{s.cfg.Path(config.AccountSeed)}
	for _, p := range []string{s.cfg.Keys.Policy, s.cfg.Keys.Approval, s.cfg.Keys.Issuer, s.cfg.Keys.Redeemer} {
		if p != "" {
			files = append(files, s.cfg.Path(p))
		}
	}
	own := map[string]string{}
	for _, f := range files {
		kp, err := identity.LoadSeed(f)
		if err != nil {
			continue
		}
		if pub, err := kp.PublicKey(); err == nil {
			own[pub] = f
		}
	}
	return own
}

func trustAdd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trust add", "trust add DOMAIN --account KEY [--policy KEY] [--approval KEY] [--issuer KEY] [--redeemer KEY] | trust add --from OTHER [--domain D]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory whose trust bundle to edit; env WRIT_HOME")
	var accounts multiFlag
	fs.Var(&accounts, "account", "account public key (A…) that signs the domain's principals; repeatable")
	roleKeys := map[identity.Role]*multiFlag{}
	for _, r := range identity.Roles {
		roleKeys[r] = new(multiFlag)
		fs.Var(roleKeys[r], string(r), fmt.Sprintf("public key (N…) of the domain's %s component; repeatable", r))
	}
	from := fs.String("from", "", "import domains from another setup's trust bundle (a trust.json, or a Writ directory)")
	only := fs.String("domain", "", "with --from: import only this domain")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	keys := identity.Domain{Accounts: accounts, Components: map[identity.Role][]string{}}
	nkeysGiven := len(accounts)
	for r, m := range roleKeys {
		if len(*m) > 0 {
			keys.Components[r] = *m
			nkeysGiven += len(*m)
		}
	}
	if *from != "" {
		if len(pos) > 0 || nkeysGiven > 0 {
			return usageError("trust add --from imports another bundle's domains: name one with --domain, not as an argument, and give no keys")
		}
		return trustImport(*dir, *from, *only, stdout)
	}
	if *only != "" {
		return usageError("--domain goes with --from; to add keys, name the domain as the argument: writ trust add DOMAIN --account KEY")
	}
	if len(pos) != 1 {
		return usageError("trust add takes one domain name (or --from OTHER): writ trust add DOMAIN --account KEY")
	}
	if nkeysGiven == 0 {
		return usageError("trust add %s: give at least one key: --account, --policy, --approval, --issuer or --redeemer", pos[0])
	}
	name := pos[0]
	if !identity.ValidDomainName(name) {
		return usageError("invalid domain name %q: lower case letters, digits and dashes", name)
	}
	s, err := loadSetup(*dir)
	if err != nil {
		return err
	}
	_, existed := s.bundle.Domains[name]
	n, err := s.bundle.Add(name, keys)
	if errors.Is(err, identity.ErrInvalidKey) {
		return &exitError{code: exitUsage, err: err}
	}
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(stdout, "Domain %q already trusts these keys: %s unchanged.\n", name, s.path)
		return nil
	}
	if err := s.save(); err != nil {
		return err
	}
	verb := "Extended"
	if !existed {
		verb = "Added"
	}
	fmt.Fprintf(stdout, "%s domain %q in %s: %s.\n", verb, name, s.path, plural(n, "new key"))
	return nil
}

// trustImport merges the domains of another bundle into the setup's. It is
// all or nothing: one refused domain leaves the bundle unchanged.
func trustImport(dir, from, only string, stdout io.Writer) error {
	s, err := loadSetup(dir)
	if err != nil {
		return err
	}
	path := from
	if st, err := os.Stat(from); err == nil && st.IsDir() {
		other, err := loadSetup(from)
		if err != nil {
			return err
		}
		path = other.path
	}
	other, err := identity.LoadBundle(path)
	if err != nil {
		return err
	}
	own := s.cfg.Domain
	names := slices.Sorted(maps.Keys(other.Domains))
	if only != "" {
		if only == own {
			return fmt.Errorf("refusing to import %q from %s: it is this setup's own domain, whose keys are managed here ('writ trust add %s --account KEY')", own, path, own)
		}
		if other.Domains[only] == nil {
			return fmt.Errorf("%s lists no domain %q (it lists %s)", path, only, strings.Join(names, ", "))
		}
		names = []string{only}
	}
	b := s.bundle.Clone()
	var lines []string
	total := 0
	for _, name := range names {
		if name == own {
			lines = append(lines, fmt.Sprintf("Skipped %q: this setup's own domain.", name))
			continue
		}
		n, err := b.Add(name, *other.Domains[name])
		if err != nil {
			return fmt.Errorf("import %q from %s: %w (nothing imported)", name, path, err)
		}
		total += n
		lines = append(lines, fmt.Sprintf("Imported domain %q: %s.", name, plural(n, "new key")))
	}
	if total > 0 {
		s.bundle = b
		if err := s.save(); err != nil {
			return err
		}
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	if total == 0 {
		fmt.Fprintf(stdout, "Nothing new from %s: %s unchanged.\n", path, s.path)
		return nil
	}
	fmt.Fprintf(stdout, "Wrote %s.\n", s.path)
	return nil
}

// listedDomain is one line of 'trust list --json'.
type listedDomain struct {
	Domain     string                     `json:"domain"`
	ThisSetup  bool                       `json:"this_setup"`
	Accounts   []string                   `json:"accounts"`
	Components map[identity.Role][]string `json:"components"`
	Revoked    []string                   `json:"revoked"`
}

func trustList(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trust list", "trust list [--dir DIR] [--json]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory; env WRIT_HOME")
	asJSON := fs.Bool("json", false, "one JSON object per domain and line")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("trust list takes no arguments")
	}
	s, err := loadSetup(*dir)
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(s.bundle.Domains))
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, name := range names {
			d := s.bundle.Domains[name]
			l := listedDomain{
				Domain: name, ThisSetup: name == s.cfg.Domain,
				Accounts: nonNil(d.Accounts), Components: map[identity.Role][]string{}, Revoked: nonNil(d.Revoked),
			}
			for r, keys := range d.Components {
				if len(keys) > 0 {
					l.Components[r] = keys
				}
			}
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(stdout, "Trust bundle %s:\n", s.path)
	for _, name := range names {
		d := s.bundle.Domains[name]
		fmt.Fprintf(stdout, "\n%s", name)
		if name == s.cfg.Domain {
			fmt.Fprint(stdout, " (this setup)")
		}
		fmt.Fprintln(stdout)
		line := func(label, key string) {
			mark := ""
			if label != "revoked" && d.IsRevoked(key) {
				mark = "  (revoked)"
			}
			fmt.Fprintf(stdout, "  %-9s %s%s\n", label, key, mark)
		}
		for _, k := range d.Accounts {
			line("account", k)
		}
		for _, r := range identity.Roles {
			for _, k := range d.Components[r] {
				line(string(r), k)
			}
		}
		for _, k := range d.Revoked {
			line("revoked", k)
		}
		if len(d.Accounts) == 0 {
			fmt.Fprintln(stdout, "  (no account key: none of its principals is accepted)")
		}
	}
	return nil
}

func trustRemove(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trust remove", "trust remove DOMAIN [--key KEY] [--dir DIR]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory; env WRIT_HOME")
	key := fs.String("key", "", "remove only this key from the domain")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("trust remove takes one domain name: writ trust remove DOMAIN [--key KEY]")
	}
	name := pos[0]
	s, err := loadSetup(*dir)
	if err != nil {
		return err
	}
	if *key == "" {
		if name == s.cfg.Domain {
			return fmt.Errorf("refusing to remove %q: it is this setup's own domain (%s serves it)", name, *dir)
		}
		if err := s.bundle.Remove(name); err != nil {
			return err
		}
		if err := s.save(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Removed domain %q from %s: its principals, components and grants are no longer accepted.\n", name, s.path)
		return nil
	}
	if name == s.cfg.Domain {
		if file, ok := s.ownKeys()[*key]; ok {
			return fmt.Errorf("refusing to remove %s from %q: this setup signs with it (%s); replace that key first", *key, name, file)
		}
	}
	if err := s.bundle.RemoveKey(name, *key); err != nil {
		return err
	}
	if err := s.save(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Removed key %s from domain %q in %s.\n", *key, name, s.path)
	return nil
}

func trustRevoke(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trust revoke", "trust revoke DOMAIN KEY [--dir DIR]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory; env WRIT_HOME")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError("trust revoke takes a domain and a key: writ trust revoke DOMAIN KEY")
	}
	name, key := pos[0], pos[1]
	if !nkeys.IsValidPublicAccountKey(key) && !nkeys.IsValidPublicServerKey(key) {
		return usageError("trust revoke: %q is not an account (A…) or component (N…) public key", key)
	}
	s, err := loadSetup(*dir)
	if err != nil {
		return err
	}
	added, err := s.bundle.Revoke(name, key)
	if err != nil {
		return err
	}
	if !added {
		fmt.Fprintf(stdout, "Key %s is already revoked for %q: %s unchanged.\n", key, name, s.path)
		return nil
	}
	if err := s.save(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Revoked key %s for domain %q in %s: what it signs is refused by every process that loads the bundle from now on (restart a running 'writ serve').\n", key, name, s.path)
	if file, ok := s.ownKeys()[key]; ok && name == s.cfg.Domain {
		fmt.Fprintf(stderr, "warning: this setup signs with that key (%s): replace it before serving again.\n", file)
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
