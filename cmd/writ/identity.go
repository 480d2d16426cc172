package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
)

const identitySynopsis = `identity issue --domain D --name N [--role R[,R...]] [--group G]... [--spokes D[,D...]] [--ttl 720h] [--out FILE] [--force] [--dir DIR]
       writ identity show --creds FILE [--dir DIR] [--json]
       writ identity revoke (--creds FILE | --key U...) [--dir DIR]`

func runIdentity(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: writ %s", identitySynopsis)
	}
	switch args[0] {
	case "issue":
		return identityIssue(args[1:], stdout, stderr)
	case "show":
		return identityShow(args[1:], stdout, stderr)
	case "revoke":
		return identityRevoke(args[1:], stdout, stderr)
	}
	if isHelp(args[0]) {
		return subcommandHelp("writ identity: 'issue' mints a principal's .creds, 'show' describes one, 'revoke' has the domain's NATS server refuse one.",
			func(a []string) error { return identityIssue(a, stdout, stderr) },
			func(a []string) error { return identityShow(a, stdout, stderr) },
			func(a []string) error { return identityRevoke(a, stdout, stderr) })
	}
	return usageError("unknown identity command %q: issue, show or revoke", args[0])
}

func identityIssue(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("identity issue", "identity issue --domain D --name N [--role R[,R...]] [--group G]... [--spokes D[,D...]] [--ttl 720h] [--out FILE] [--force] [--dir DIR]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory of the domain (its keys/account.nk signs); env WRIT_HOME")
	domain := fs.String("domain", "", "the principal's domain: must be the Writ directory's own (required)")
	name := fs.String("name", "", "the principal's name (required)")
	var groups multiFlag
	fs.Var(&groups, "group", "a group the principal belongs to; repeatable")
	ttl := fs.Duration("ttl", 720*time.Hour, "how long the identity is valid")
	roleList := fs.String("role", "principal", "what the server lets it do: principal (ask, vote; read), reader (read only), redeemer (consume grants), leaf (a spoke domain's link to this hub: --name is the spoke's domain), operator (every right: break-glass only), or components policy,approval,issuer,auditor,notifier (several: comma-separated, for a 'writ serve --server' replica)")
	spokeList := fs.String("spokes", "", "with --role leaf, when the spoke is a hub too (a hub of hubs): its own spokes' domains, comma-separated, whose events and replies cross the link with its own")
	out := fs.String("out", "", "where to write the .creds file (default DIR/creds/NAME.creds)")
	force := fs.Bool("force", false, "replace an existing file")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError("identity issue takes no arguments (got %q)", pos[0])
	case *domain == "" || *name == "":
		return usageError("identity issue needs --domain and --name")
	case !identity.ValidDomainName(*domain):
		return usageError("invalid domain name %q: lower case letters, digits and dashes", *domain)
	case !identity.ValidPrincipalName(*name):
		return usageError("invalid name %q: letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 128", *name)
	case *ttl <= 0:
		return usageError("--ttl must be positive, e.g. 720h")
	}
	for _, g := range groups {
		if !identity.ValidGroupName(g) {
			return usageError("invalid group %q: lower case letters, digits, '.', '_' and '-'", g)
		}
	}
	var roles []access.Role
	for _, r := range strings.Split(*roleList, ",") {
		role, err := access.ParseRole(strings.TrimSpace(r))
		if err != nil {
			return usageError("--role: %v", err)
		}
		roles = append(roles, role)
	}
	spoke := ""
	if slices.Contains(roles, access.Leaf) {
		if len(roles) > 1 {
			return usageError("--role leaf stands alone: a leafnode link is nothing else")
		}
		if !identity.ValidDomainName(*name) {
			return usageError("--role leaf: --name must be the spoke's domain, got %q", *name)
		}
		spoke = *name
	}
	var behind []string
	if *spokeList != "" {
		if spoke == "" {
			return usageError("--spokes is for --role leaf: the spokes of a hub linked as a spoke of this one")
		}
		for _, d := range strings.Split(*spokeList, ",") {
			d = strings.TrimSpace(d)
			switch {
			case !identity.ValidDomainName(d):
				return usageError("--spokes: invalid domain name %q: lower case letters, digits and dashes", d)
			case d == spoke || d == *domain:
				return usageError("--spokes: %q is the link's own domain or this hub's, not a spoke behind %s", d, spoke)
			}
			behind = append(behind, d)
		}
	}

	s, err := loadSetup(*dir)
	if err != nil {
		return err
	}
	if s.cfg.Domain != *domain {
		msg := fmt.Sprintf("domain %q is not this setup's: %s holds domain %q, and its account key signs only %q's principals", *domain, *dir, s.cfg.Domain, s.cfg.Domain)
		if other := findSetup(*dir, *domain); other != "" {
			return fmt.Errorf("%s; %q's account key is in %s: writ identity issue --dir %s --domain %s …", msg, *domain, other, other, *domain)
		}
		return fmt.Errorf("%s; run this with --dir set to the Writ directory of %q", msg, *domain)
	}
	seedPath := s.cfg.Path(config.AccountSeed)
	account, err := identity.LoadSeed(seedPath)
	if err != nil {
		return err
	}
	accountPub, err := account.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(accountPub) {
		return fmt.Errorf("%s does not hold an account key", seedPath)
	}
	d := s.bundle.Domains[*domain]
	switch {
	case d.IsRevoked(accountPub):
		return fmt.Errorf("the account key in %s (%s) is revoked for %q in %s: identities it signs are refused", seedPath, accountPub, *domain, s.path)
	case d == nil || !d.IsAccount(accountPub):
		return fmt.Errorf("the account key in %s (%s) is not an account key of %q in %s: identities it signs would be refused", seedPath, accountPub, *domain, s.path)
	}

	now := time.Now()
	creds, err := s.cfg.IssueRole(account, config.RoleSpec{Roles: roles, Name: *name, Groups: groups, TTL: *ttl, Now: now, Spoke: spoke, Behind: behind})
	if err != nil {
		return err
	}
	path := *out
	if path == "" {
		path = s.cfg.Path(config.PrincipalCreds(*name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
	}
	if err := writeCreds(path, creds, *force); err != nil {
		return err
	}
	id, err := identity.ParseCreds(creds)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Issued %s as %s (groups: %s; expires %s), signed by %s.\n",
		id.Principal.ID(), *roleList, groupList(id.Principal.Groups), id.Principal.Expires.Format(time.RFC3339), accountPub)
	if len(behind) > 0 {
		fmt.Fprintf(stderr, "Its link carries the events and replies of %s and of its spokes %s.\n", spoke, strings.Join(behind, ", "))
	}
	fmt.Fprintln(stdout, path)
	return nil
}

// writeCreds writes a .creds file readable by its owner only. Without
// force it refuses an existing file; with force it replaces it atomically.
func writeCreds(path string, creds []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists: use --force to replace it, or --out to write elsewhere", path)
		}
		if err != nil {
			return err
		}
		if _, err := f.Write(creds); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		if err := f.Close(); err != nil {
			os.Remove(path)
			return err
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(creds); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// findSetup looks beside dir for the Writ directory of domain, as a demo
// lays them out (alpha/ and beta/ side by side). It returns "" if none.
func findSetup(dir, domain string) string {
	parent := filepath.Dir(filepath.Clean(dir))
	entries, err := os.ReadDir(parent)
	if err != nil {
		return ""
	}
	for i, e := range entries {
		if i >= 256 {
			break
		}
		p := filepath.Join(parent, e.Name())
		if !e.IsDir() || p == filepath.Clean(dir) || !config.Exists(p) {
			continue
		}
		if cfg, err := config.Load(p); err == nil && cfg.Domain == domain {
			return p
		}
	}
	return ""
}

func identityShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("identity show", "identity show --creds FILE [--dir DIR] [--json]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory whose trust bundle checks the identity; env WRIT_HOME")
	credsPath := fs.String("creds", "", "the .creds file (required)")
	asJSON := fs.Bool("json", false, "print the principal as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("identity show takes no arguments; name the file with --creds")
	}
	if *credsPath == "" {
		return usageError("identity show needs --creds FILE")
	}
	id, err := identity.LoadCreds(*credsPath)
	if err != nil {
		return err
	}
	p := id.Principal
	// The verdict of this setup's trust bundle, if there is one. A refused
	// identity is still described, and the command fails: a script that
	// checks an identity before using it must not read 0 as accepted.
	verdict := ""
	var refused error
	if s, err := loadSetup(*dir); err == nil {
		if _, err := s.bundle.VerifyUser(id.JWT, time.Now()); err != nil {
			verdict = fmt.Sprintf("refused by %s: %s (%v)", s.path, events.Code(err), err)
			refused = fmt.Errorf("the trust bundle %s refuses this identity: %w; issue a new one ('writ identity issue') or trust its domain ('writ trust add')", s.path, err)
		} else {
			verdict = "accepted by " + s.path
		}
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(struct {
			identity.Principal
			Trust string `json:"trust,omitempty"`
		}{p, verdict}); err != nil {
			return err
		}
		return refused
	}
	expires := "never"
	if !p.Expires.IsZero() {
		expires = p.Expires.Format(time.RFC3339)
		if left := time.Until(p.Expires); left > 0 {
			expires += fmt.Sprintf(" (in %s)", left.Round(time.Minute))
		} else {
			expires += " (expired)"
		}
	}
	fmt.Fprintf(stdout, "domain   %s\n", p.Domain)
	fmt.Fprintf(stdout, "name     %s\n", p.Name)
	fmt.Fprintf(stdout, "groups   %s\n", groupList(p.Groups))
	fmt.Fprintf(stdout, "key      %s\n", p.Key)
	fmt.Fprintf(stdout, "account  %s\n", p.Account)
	fmt.Fprintf(stdout, "expires  %s\n", expires)
	if verdict != "" {
		fmt.Fprintf(stdout, "trust    %s\n", verdict)
	}
	return refused
}

// identityRevoke has the domain's NATS server refuse an identity's
// creds: a spoke's leaf link, a principal, a service. The user key goes
// into the setup's writ.json (revoked_users), and from there into the
// account JWT the server trusts.
func identityRevoke(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("identity revoke", "identity revoke (--creds FILE | --key U...) [--dir DIR]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory of the domain whose account issued the identity; env WRIT_HOME")
	credsPath := fs.String("creds", "", "the identity's .creds file")
	key := fs.String("key", "", "the identity's user public key (U...), when its creds are not at hand")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError("identity revoke takes no arguments; name the identity with --creds FILE or --key U...")
	case (*credsPath == "") == (*key == ""):
		return usageError("identity revoke needs --creds FILE or --key U... (one of them)")
	case *key != "" && !nkeys.IsValidPublicUserKey(*key):
		return usageError("identity revoke: %q is not a user public key (U...); 'writ identity show --creds FILE' shows an identity's key", *key)
	}
	s, err := loadSetup(*dir)
	if err != nil {
		return err
	}
	user, what := *key, *key
	if *credsPath != "" {
		if user, what, err = revocableUser(s.cfg, *credsPath); err != nil {
			return err
		}
	}
	added, err := s.cfg.RevokeUser(user)
	if err != nil {
		return err
	}
	if !added {
		fmt.Fprintf(stdout, "%s is already revoked in %s.\n", what, filepath.Join(*dir, config.FileName))
		return nil
	}
	if err := s.cfg.Save(s.cfg.Dir()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Revoked %s in %s: the NATS server of %q refuses its creds once it starts again. Restart a running 'writ serve --dir %s': that ends the connections it holds, a spoke's leaf link among them, and the revoked one does not come back. A nats-server of your own: write its configuration again ('writ init --dir %s --server-config FILE') and restart it.\n",
		what, filepath.Join(*dir, config.FileName), s.cfg.Domain, *dir, *dir)
	return nil
}

// revocableUser reads the user key of the creds at path, which this
// setup's account must have issued: revoking another account's user here
// would refuse nothing.
func revocableUser(cfg *config.Config, path string) (user, what string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	token, err := jwt.ParseDecoratedJWT(b)
	var uc *jwt.UserClaims
	if err == nil {
		uc, err = jwt.DecodeUserClaims(token)
	}
	if err != nil {
		return "", "", fmt.Errorf("%s is not a .creds file with a user JWT that reads: revoke its user key with --key U... instead", path)
	}
	account, err := identity.LoadSeed(cfg.Path(config.AccountSeed))
	if err != nil {
		return "", "", err
	}
	accountPub, err := account.PublicKey()
	if err != nil {
		return "", "", err
	}
	if uc.Issuer != accountPub {
		return "", "", fmt.Errorf("%s was issued by account %s, not by %q's (%s): revoke it in the setup of the domain that issued it", path, uc.Issuer, cfg.Domain, accountPub)
	}
	var roles []string
	for _, t := range uc.Tags {
		if r, ok := strings.CutPrefix(t, "role:"); ok {
			roles = append(roles, r)
		}
	}
	return uc.Subject, fmt.Sprintf("%s (%s, %s)", uc.Subject, uc.Name, strings.Join(roles, ",")), nil
}

func groupList(groups []string) string {
	if len(groups) == 0 {
		return "none"
	}
	return strings.Join(groups, ", ")
}
