package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
)

// FileName is the configuration file's name inside a Writ directory.
const FileName = "writ.json"

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"15m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is what `writ serve` runs. Paths are relative to the file's directory.
type Config struct {
	Domain     string      `json:"domain"`
	Listen     string      `json:"listen"`    // embedded server address, loopback
	StoreDir   string      `json:"store_dir"` // embedded JetStream store
	SyncAlways bool        `json:"sync_always"`
	Stream     Stream      `json:"stream"`
	Keys       Keys        `json:"keys"`
	Trust      string      `json:"trust"`
	Policies   string      `json:"policies"` // a directory of .cedar files
	Flows      string      `json:"flows"`
	Grants     Grants      `json:"grants"`
	Limits     Limits      `json:"limits"`
	Creds      string      `json:"creds,omitempty"` // creds to connect to an external NATS
	Federation *Federation `json:"federation,omitempty"`
	Components []string    `json:"components,omitempty"`
	// Notify configures the notifier's webhooks; nil (absent) runs no
	// notifier unless components names it.
	Notify *Notify `json:"notify,omitempty"`
	// Audit configures the auditor, which signs checkpoints of the audit
	// stream; nil (absent, as in setups made before it existed) runs none.
	Audit *Audit `json:"audit,omitempty"`
	// HTTP is where `writ serve` answers /healthz, /readyz and /metrics
	// (host:port); empty: nowhere, unless --http says.
	HTTP string `json:"http,omitempty"`
	// RevokedUsers are user keys (U…) whose creds this domain's NATS
	// server refuses, whatever their role: a spoke's leaf link, a
	// principal, a service ('writ identity revoke'). The server's account
	// JWT carries them (ServerAuth).
	RevokedUsers []string `json:"revoked_users,omitempty"`
	dir          string
}

// Federation links this domain's embedded NATS to other domains' over
// leafnodes, hub and spokes. Each server is its own JetStream domain, named
// as its Writ domain. A domain may be both: a hub of its spokes, linked as
// a spoke of another hub (a hub of hubs), with leaf creds that hub issued
// listing this hub's spokes (writ identity issue --role leaf --spokes).
// A link shares no secret: the hub issues each spoke the creds of its link
// (LeafCredsHint says how), whose JWT carries what the spoke may send and
// hear, and the hub's server enforces it.
type Federation struct {
	// Hub: where spokes connect, and the spoke domains it serves.
	Listen string   `json:"listen,omitempty"`
	Spokes []string `json:"spokes,omitempty"`
	// Spoke: the hubs to connect to (nats-leaf://host:port), and the leaf
	// creds the hub issued for this domain.
	Remotes []string `json:"remotes,omitempty"`
	Creds   string   `json:"creds,omitempty"`

	// secrets are the spokes an old hub configuration gave a shared
	// secret (spokes as an object of domain → secret): refused.
	secrets []string
	// badSpokes: spokes was neither a list nor such an object.
	badSpokes bool
}

// UnmarshalJSON reads spokes as a list of domain names, or as the object
// of domain → secret that setups federated before leaf creds wrote: one
// whose secrets are empty reads as its names, and one that holds a secret
// is refused by Validate, which says what to do instead.
func (f *Federation) UnmarshalJSON(b []byte) error {
	type plain Federation
	var raw struct {
		plain
		Spokes json.RawMessage `json:"spokes,omitempty"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*f = Federation(raw.plain)
	f.Spokes = nil
	if len(raw.Spokes) == 0 || string(raw.Spokes) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw.Spokes, &f.Spokes); err == nil {
		return nil
	}
	var old map[string]string
	if err := json.Unmarshal(raw.Spokes, &old); err != nil {
		f.badSpokes = true
		return nil
	}
	for d, secret := range old {
		f.Spokes = append(f.Spokes, d)
		if secret != "" {
			f.secrets = append(f.secrets, d)
		}
	}
	sort.Strings(f.Spokes)
	sort.Strings(f.secrets)
	return nil
}

// LeafCredsHint is the command by which hub's operator issues spoke the
// creds of its link, written into the spoke's setup (hubDir, spokeDir:
// the two Writ directories, or placeholders where one is not known).
func LeafCredsHint(hubDir, hub, spokeDir, spoke string) string {
	return fmt.Sprintf("writ identity issue --dir %s --domain %s --role leaf --name %s --out %s", hubDir, hub, spoke, filepath.Join(spokeDir, "leaf-"+hub+".creds"))
}

// Stream configures the audit and timer streams.
type Stream struct {
	Name       string   `json:"name"`
	Timers     string   `json:"timers"`
	Replicas   int      `json:"replicas"`
	Duplicates Duration `json:"duplicates"`
	MaxAge     Duration `json:"max_age"` // "0s": keep forever
}

// Keys are the seed files of the pipeline components.
type Keys struct {
	Policy     string `json:"policy"`
	Approval   string `json:"approval"`
	Issuer     string `json:"issuer"`
	IssuerXKey string `json:"issuer_xkey"`
	// Redeemer is the key of this domain's grant-consuming services (the
	// sample target service and `writ grant redeem` use it).
	Redeemer string `json:"redeemer"`
	// Auditor signs checkpoints; needed when the audit section is present.
	Auditor string `json:"auditor"`
}

// Audit configures the auditor component.
type Audit struct {
	// CheckpointInterval is how often a checkpoint is made when the stream
	// has grown ("0s": only on demand, by writ audit checkpoint).
	CheckpointInterval Duration `json:"checkpoint_interval"`
	// Witness names other domains whose checkpoints this domain records in
	// its own trail, so that theirs cannot be deleted or rewritten unseen.
	Witness []string `json:"witness,omitempty"`
}

// Grants bound grant lifetimes.
type Grants struct {
	DefaultTTL Duration `json:"default_ttl"`
	MaxTTL     Duration `json:"max_ttl"`
}

// Limits bound input, and the work a component does at once.
type Limits struct {
	MaxEventBytes int `json:"max_event_bytes"`
	// Workers is how many messages each component handles at once, and
	// pulls ahead of them (DefaultWorkers says why so many).
	Workers int `json:"workers"`
}

// DefaultWorkers is Limits.Workers for new setups (consumers.DefaultWorkers
// says why); MaxWorkers bounds it.
const (
	DefaultWorkers = consumers.DefaultWorkers
	MaxWorkers     = 256
)

// Default returns the configuration Init writes for domain.
func Default(domain string) Config {
	return Config{
		Domain: domain,
		Listen: "127.0.0.1:4222",
		// An audit trail must not lose acknowledged events on power loss.
		SyncAlways: true,
		StoreDir:   "jetstream",
		Stream:     Stream{Name: "WRIT", Timers: "WRIT_TIMERS", Replicas: 1, Duplicates: Duration(24 * time.Hour)},
		Keys: Keys{
			Policy: "keys/policy.nk", Approval: "keys/approval.nk",
			Issuer: "keys/issuer.nk", IssuerXKey: "keys/issuer.xk", Redeemer: "keys/redeemer.nk",
			Auditor: "keys/auditor.nk",
		},
		Audit:    &Audit{CheckpointInterval: Duration(time.Minute)},
		Trust:    "trust.json",
		Policies: "policies",
		Flows:    "flows.json",
		Grants:   Grants{DefaultTTL: Duration(15 * time.Minute), MaxTTL: Duration(time.Hour)},
		Limits:   Limits{MaxEventBytes: 64 << 10, Workers: DefaultWorkers},
	}
}

// Load reads dir/writ.json.
func Load(dir string) (*Config, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := Default("")
	c.Audit = nil // absent means none: setups made before the auditor existed have no key for it
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.dir = dir
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// ErrInvalid is what Validate's error matches (errors.Is) when the
// configuration cannot run; the Setting of each problem matches too.
var ErrInvalid = errors.New("invalid configuration")

// Setting names a setting as the file spells it ("stream.replicas",
// "grants"; inside a section's own Validate, as the section spells it:
// "retries"). As an error it is a problem with that setting, and a test
// matches it as a sentinel: errors.Is(err, config.Setting("grants")).
type Setting string

func (s Setting) Error() string { return string(s) }

// invalid wraps the problems found, if any, in ErrInvalid.
func invalid(errs []error) error {
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Validate checks the configuration and changes nothing (Default and Load
// fill in what a file omits). Its error matches ErrInvalid and the Setting
// of every problem found.
func (c Config) Validate() error {
	var errs []error
	if !identity.ValidDomainName(c.Domain) {
		errs = append(errs, fmt.Errorf("%w %q: lower case letters, digits and dashes", Setting("domain"), c.Domain))
	}
	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("%w %q: %v", Setting("listen"), c.Listen, err))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 || host == "" {
		errs = append(errs, fmt.Errorf("%w %q: want host:port", Setting("listen"), c.Listen))
	} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		errs = append(errs, fmt.Errorf("%w %q: the embedded server listens on loopback only", Setting("listen"), c.Listen))
	}
	if c.HTTP != "" {
		if _, port, err := net.SplitHostPort(c.HTTP); err != nil {
			errs = append(errs, fmt.Errorf("%w %q: %v", Setting("http"), c.HTTP, err))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%w %q: want host:port", Setting("http"), c.HTTP))
		}
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		errs = append(errs, fmt.Errorf("%w must be 1 to 5", Setting("stream.replicas")))
	}
	if c.Stream.Duplicates < Duration(time.Minute) {
		errs = append(errs, fmt.Errorf("%w must be at least 1m: longer than any retry", Setting("stream.duplicates")))
	}
	if c.Stream.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%w must not be negative", Setting("stream.max_age")))
	}
	if err := issuer.CheckLifetimes(time.Duration(c.Grants.DefaultTTL), time.Duration(c.Grants.MaxTTL)); err != nil {
		errs = append(errs, fmt.Errorf("%w: default_ttl, max_ttl: %w", Setting("grants"), err))
	}
	if c.Limits.MaxEventBytes < 1024 || c.Limits.MaxEventBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("%w must be 1 KiB to 1 MiB", Setting("limits.max_event_bytes")))
	}
	if c.Limits.Workers < 1 || c.Limits.Workers > MaxWorkers {
		errs = append(errs, fmt.Errorf("%w must be 1 to %d (default %d)", Setting("limits.workers"), MaxWorkers, DefaultWorkers))
	}
	if f := c.Federation; f != nil {
		dir := c.dir
		if dir == "" {
			dir = "DIR"
		}
		errs = append(errs, f.problems(c.Domain, dir)...)
	}
	if a := c.Audit; a != nil {
		if a.CheckpointInterval < 0 || (a.CheckpointInterval > 0 && a.CheckpointInterval < Duration(100*time.Millisecond)) {
			errs = append(errs, fmt.Errorf("%w must be 0s (on demand only) or at least 100ms", Setting("audit.checkpoint_interval")))
		}
		if c.Keys.Auditor == "" {
			errs = append(errs, fmt.Errorf("audit needs %w, the auditor's seed", Setting("keys.auditor")))
		}
		for _, d := range a.Witness {
			if !identity.ValidDomainName(d) || d == c.Domain {
				errs = append(errs, fmt.Errorf("%w: %q is not another domain's name", Setting("audit.witness"), d))
			}
		}
	}
	for _, k := range c.RevokedUsers {
		if !nkeys.IsValidPublicUserKey(k) {
			errs = append(errs, fmt.Errorf("%w: %q is not a user public key (U…)", Setting("revoked_users"), k))
		}
	}
	if c.Notify != nil {
		if err := c.Notify.problems(); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", Setting("notify"), err))
		}
	}
	for name, p := range map[string]string{"keys.policy": c.Keys.Policy, "keys.approval": c.Keys.Approval,
		"keys.issuer": c.Keys.Issuer, "keys.issuer_xkey": c.Keys.IssuerXKey, "trust": c.Trust,
		"policies": c.Policies, "flows": c.Flows, "store_dir": c.StoreDir} {
		if p == "" {
			errs = append(errs, fmt.Errorf("%w is empty", Setting(name)))
		}
	}
	return invalid(errs)
}

// problems lists what is wrong with the federation section of domain's
// configuration, in dir.
func (f *Federation) problems(domain, dir string) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{Setting("federation")}, args...)...))
	}
	if f.Listen == "" && len(f.Remotes) == 0 {
		bad("neither a hub (listen) nor a spoke (remotes)")
	}
	if f.badSpokes {
		bad(`spokes is a list of the spoke domains, such as ["beta"]`)
	} else if f.Listen != "" && len(f.Spokes) == 0 {
		bad("a hub needs its spokes' domains")
	}
	seen := map[string]bool{}
	for _, d := range f.Spokes {
		if !identity.ValidDomainName(d) {
			bad("spoke %q is not a domain name", d)
		} else if seen[d] {
			bad("spoke %q is listed twice", d)
		}
		seen[d] = true
	}
	for _, d := range f.secrets {
		bad("spoke %q has a shared secret in this file; spokes no longer log in with one: remove it (write spokes as a list of names), and issue the spoke the creds of its link instead ('%s'), which its writ.json names as federation.creds", d, LeafCredsHint(dir, domain, "SPOKE-DIR", d))
	}
	for _, r := range f.Remotes {
		if u, err := url.Parse(r); err != nil || u.Host == "" {
			bad("remote %q is not a nats-leaf://host:port URL", r)
		} else if u.User != nil {
			bad("remote %s carries a user and secret; a spoke no longer logs in with one: drop them from the URL, and set federation.creds to the leaf creds its hub issues ('%s')", u.Redacted(), LeafCredsHint("HUB-DIR", "HUB", dir, domain))
		}
	}
	if len(f.Remotes) > 0 && f.Creds == "" {
		bad("a spoke needs creds, the leaf creds its hub issued ('%s')", LeafCredsHint("HUB-DIR", "HUB", dir, domain))
	}
	return errs
}

// RevokeUser adds user key to the revoked users, and reports whether it
// was not there already. The configuration is not saved.
func (c *Config) RevokeUser(key string) (bool, error) {
	if !nkeys.IsValidPublicUserKey(key) {
		return false, fmt.Errorf("%q is not a user public key (U…)", key)
	}
	if slices.Contains(c.RevokedUsers, key) {
		return false, nil
	}
	c.RevokedUsers = append(c.RevokedUsers, key)
	return true, nil
}

// Dir is the directory the configuration was loaded from.
func (c *Config) Dir() string { return c.dir }

// Path resolves a path from the configuration against its directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Save writes the configuration to dir/writ.json.
func (c *Config) Save(dir string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	c.dir = dir
	return os.WriteFile(filepath.Join(dir, FileName), append(b, '\n'), 0o644)
}

// Webhook formats.
const (
	FormatSlack = "slack" // a Slack-compatible incoming-webhook payload
	FormatJSON  = "json"  // Writ's versioned JSON payload, signed
)

// Webhook is one notification target.
type Webhook struct {
	URL    string `json:"url"`
	Format string `json:"format"` // slack | json
}

// Notify configures the notifier: who hears of what, through which
// webhooks, and how hard delivery tries. Zero values take the defaults
// (see NotifyDefaults).
type Notify struct {
	// SecretEnv names the environment variable that holds the HMAC secret
	// signing every delivery; it is required when a json target exists.
	SecretEnv string `json:"secret_env,omitempty"`
	// Groups are the webhooks of approver groups, by group as flows name
	// them ("sre-leads", or "other-domain/group"): a stage waiting for
	// approvers notifies its groups' webhooks.
	Groups map[string][]Webhook `json:"groups,omitempty"`
	// Principals are the webhooks of named principals ("domain/name"):
	// notified as a stage's named approvers, and of their own requests'
	// outcomes.
	Principals map[string][]Webhook `json:"principals,omitempty"`
	// Requesters hear of every request's outcome.
	Requesters []Webhook `json:"requesters,omitempty"`

	Retries    int      `json:"retries,omitempty"`     // tries after the first; default 5
	Backoff    Duration `json:"backoff,omitempty"`     // first retry delay, doubling; default 1s
	MaxBackoff Duration `json:"max_backoff,omitempty"` // default 1m
	MaxElapsed Duration `json:"max_elapsed,omitempty"` // total time from the first try; default 15m
	Timeout    Duration `json:"timeout,omitempty"`     // one try; default 5s
	Workers    int      `json:"workers,omitempty"`     // deliveries in flight; default 8
}

// NotifyDefaults returns n with every zero value replaced by its default.
func NotifyDefaults(n Notify) Notify {
	if n.Retries == 0 {
		n.Retries = 5
	}
	if n.Backoff == 0 {
		n.Backoff = Duration(time.Second)
	}
	if n.MaxBackoff == 0 {
		n.MaxBackoff = Duration(time.Minute)
	}
	if n.MaxElapsed == 0 {
		n.MaxElapsed = Duration(15 * time.Minute)
	}
	if n.Timeout == 0 {
		n.Timeout = Duration(5 * time.Second)
	}
	if n.Workers == 0 {
		n.Workers = 8
	}
	return n
}

// Empty reports whether the section names no webhook at all.
func (n *Notify) Empty() bool {
	if n == nil {
		return true
	}
	count := len(n.Requesters)
	for _, ws := range n.Groups {
		count += len(ws)
	}
	for _, ws := range n.Principals {
		count += len(ws)
	}
	return count == 0
}

// Validate checks the section (zero values mean the defaults, which
// NotifyDefaults fills in) and changes nothing. Its error matches
// ErrInvalid and the Setting of every problem found.
func (n Notify) Validate() error { return invalid([]error{n.problems()}) }

// problems joins what is wrong with the section; nil: nothing.
func (n Notify) problems() error {
	var errs []error
	jsonTargets := 0
	check := func(where string, ws []Webhook) {
		for i, w := range ws {
			if err := w.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", where, i, err))
			}
			if w.Format == FormatJSON {
				jsonTargets++
			}
		}
	}
	for g, ws := range n.Groups {
		name := g
		if d, rest, ok := strings.Cut(g, "/"); ok {
			if !identity.ValidDomainName(d) || rest == "" || strings.Contains(rest, "/") {
				errs = append(errs, fmt.Errorf("%w: %q: a group is \"name\" or \"domain/name\"", Setting("groups"), g))
			}
			name = rest
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("%w: empty group name", Setting("groups")))
		}
		check("groups."+g, ws)
	}
	for p, ws := range n.Principals {
		if d, name, ok := strings.Cut(p, "/"); !ok || !identity.ValidDomainName(d) || name == "" {
			errs = append(errs, fmt.Errorf("%w: %q: a principal is \"domain/name\"", Setting("principals"), p))
		}
		check("principals."+p, ws)
	}
	check("requesters", n.Requesters)
	if jsonTargets > 0 && n.SecretEnv == "" {
		errs = append(errs, fmt.Errorf("%w: json targets are signed, so a secret is required", Setting("secret_env")))
	}
	if n.Retries < 0 || n.Retries > 20 {
		errs = append(errs, fmt.Errorf("%w must be 0 (default 5) to 20", Setting("retries")))
	}
	d := NotifyDefaults(n)
	if d.Backoff < Duration(time.Millisecond) || d.MaxBackoff < d.Backoff {
		errs = append(errs, fmt.Errorf("%w: need 1ms <= backoff <= max_backoff", Setting("backoff")))
	}
	if d.MaxElapsed < d.Backoff || d.MaxElapsed > Duration(24*time.Hour) {
		errs = append(errs, fmt.Errorf("%w: need backoff <= max_elapsed <= 24h", Setting("max_elapsed")))
	}
	// A try must end well within the consumers' ack wait and handling bound.
	if d.Timeout < Duration(10*time.Millisecond) || d.Timeout > Duration(15*time.Second) {
		errs = append(errs, fmt.Errorf("%w must be 10ms to 15s", Setting("timeout")))
	}
	if n.Workers < 0 || n.Workers > 256 {
		errs = append(errs, fmt.Errorf("%w must be 0 (default 8) to 256", Setting("workers")))
	}
	return errors.Join(errs...)
}

func (w Webhook) validate() error {
	var errs []error
	u, err := url.Parse(w.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("%w: %w", Setting("url"), err))
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		errs = append(errs, fmt.Errorf("%w: want an absolute http(s) URL", Setting("url")))
	case u.User != nil:
		errs = append(errs, fmt.Errorf("%w: no credentials in the URL", Setting("url")))
	}
	if w.Format != FormatSlack && w.Format != FormatJSON {
		errs = append(errs, fmt.Errorf("%w %q: want %q or %q", Setting("format"), w.Format, FormatSlack, FormatJSON))
	}
	return errors.Join(errs...)
}
