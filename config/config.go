package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/writ-dev/writ/identity"
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
	dir        string
}

// Federation links this domain's embedded NATS to other domains' over
// leafnodes, hub and spokes. Each server is its own JetStream domain, named
// as its Writ domain.
type Federation struct {
	// Hub: where spokes connect, and the secret each spoke domain presents.
	Listen string            `json:"listen,omitempty"`
	Spokes map[string]string `json:"spokes,omitempty"`
	// Spoke: the hubs to connect to (nats-leaf://writ-leaf-<domain>:<secret>@host:port).
	Remotes []string `json:"remotes,omitempty"`
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
	Redeemer string `json:"redeemer,omitempty"`
}

// Grants bound grant lifetimes.
type Grants struct {
	DefaultTTL Duration `json:"default_ttl"`
	MaxTTL     Duration `json:"max_ttl"`
}

// Limits bound input.
type Limits struct {
	MaxEventBytes int `json:"max_event_bytes"`
	Workers       int `json:"workers"`
}

// Default returns the configuration Init writes for domain.
func Default(domain string) Config {
	return Config{
		Domain:   domain,
		Listen:   "127.0.0.1:4222",
		StoreDir: "jetstream",
		Stream:   Stream{Name: "WRIT", Timers: "WRIT_TIMERS", Replicas: 1, Duplicates: Duration(24 * time.Hour)},
		Keys: Keys{
			Policy: "keys/policy.nk", Approval: "keys/approval.nk",
			Issuer: "keys/issuer.nk", IssuerXKey: "keys/issuer.xk", Redeemer: "keys/redeemer.nk",
		},
		Trust:    "trust.json",
		Policies: "policies",
		Flows:    "flows.json",
		Grants:   Grants{DefaultTTL: Duration(15 * time.Minute), MaxTTL: Duration(time.Hour)},
		Limits:   Limits{MaxEventBytes: 64 << 10, Workers: 4},
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
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	c.dir = dir
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return &c, nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if !identity.ValidDomainName(c.Domain) {
		errs = append(errs, fmt.Errorf("domain %q: lower case letters, digits and dashes", c.Domain))
	}
	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %v", c.Listen, err))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 || host == "" {
		errs = append(errs, fmt.Errorf("listen %q: want host:port", c.Listen))
	} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		errs = append(errs, fmt.Errorf("listen %q: the embedded server listens on loopback only", c.Listen))
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		errs = append(errs, errors.New("stream.replicas must be 1 to 5"))
	}
	if c.Stream.Duplicates < Duration(time.Minute) {
		errs = append(errs, errors.New("stream.duplicates must be at least 1m: longer than any retry"))
	}
	if c.Stream.MaxAge < 0 {
		errs = append(errs, errors.New("stream.max_age must not be negative"))
	}
	if c.Grants.DefaultTTL < Duration(10*time.Second) || c.Grants.MaxTTL > Duration(24*time.Hour) || c.Grants.DefaultTTL > c.Grants.MaxTTL {
		errs = append(errs, errors.New("grants: need 10s <= default_ttl <= max_ttl <= 24h"))
	}
	if c.Limits.MaxEventBytes < 1024 || c.Limits.MaxEventBytes > 1<<20 {
		errs = append(errs, errors.New("limits.max_event_bytes must be 1 KiB to 1 MiB"))
	}
	if f := c.Federation; f != nil {
		if f.Listen == "" && len(f.Remotes) == 0 {
			errs = append(errs, errors.New("federation: neither a hub (listen) nor a spoke (remotes)"))
		}
		if f.Listen != "" && len(f.Spokes) == 0 {
			errs = append(errs, errors.New("federation: a hub needs its spokes' domains and secrets"))
		}
		for d, secret := range f.Spokes {
			if !identity.ValidDomainName(d) || len(secret) < 16 {
				errs = append(errs, fmt.Errorf("federation: spoke %q needs a domain name and a secret of 16 characters or more", d))
			}
		}
	}
	for name, p := range map[string]string{"keys.policy": c.Keys.Policy, "keys.approval": c.Keys.Approval,
		"keys.issuer": c.Keys.Issuer, "keys.issuer_xkey": c.Keys.IssuerXKey, "trust": c.Trust,
		"policies": c.Policies, "flows": c.Flows, "store_dir": c.StoreDir} {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	return errors.Join(errs...)
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
