package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
)

const defaultDir = ".writ"

// conn holds the flags every client command shares, named as in the NATS tools.
type conn struct {
	dir    string
	server string
	creds  string
	trust  string
	stream string
}

func (c *conn) register(fs *flag.FlagSet, credsHelp string) {
	fs.StringVar(&c.dir, "dir", envOr("WRIT_HOME", defaultDir), "Writ directory (config, trust bundle); env WRIT_HOME")
	fs.StringVar(&c.server, "server", envOr("NATS_URL", ""), "NATS server URL; env NATS_URL (default: the one in the Writ directory's config)")
	fs.StringVar(&c.creds, "creds", "", credsHelp)
	fs.StringVar(&c.trust, "trust", "", "trust bundle (default: the Writ directory's)")
	fs.StringVar(&c.stream, "stream", "", "audit stream name (default: the config's, or WRIT)")
}

// identity loads the --creds file, which is required.
func (c *conn) identity() (*identity.Identity, error) {
	if c.creds == "" {
		return nil, usageError("--creds is required: the .creds file of who you are (e.g. %s)", filepath.Join(c.dir, config.PrincipalCreds("alice")))
	}
	who, err := identity.LoadCreds(c.creds)
	if err != nil {
		return nil, fmt.Errorf("%w; pass --creds the .creds file of who you are ('writ init' wrote samples in %s; 'writ identity issue' makes one)", err, filepath.Join(c.dir, config.CredsDir))
	}
	return who, nil
}

// open connects to NATS and returns a client.
func (c *conn) open() (*nats.Conn, *client.Client, error) {
	cfg, cfgErr := config.Load(c.dir)
	url := c.server
	stream := c.stream
	trust := c.trust
	maxBody, home := 0, ""
	if cfgErr == nil {
		maxBody, home = cfg.Limits.MaxEventBytes, cfg.Domain
		if url == "" {
			url = "nats://" + cfg.Listen
		}
		if stream == "" {
			stream = cfg.Stream.Name
		}
		if trust == "" {
			trust = cfg.Path(cfg.Trust)
		}
	}
	if url == "" {
		url = nats.DefaultURL
	}
	if trust == "" {
		return nil, nil, noSetup(c.dir, cfgErr, "pass --dir with your setup's directory (or --trust with a trust bundle)")
	}
	bundle, err := identity.LoadBundle(trust)
	if err != nil {
		return nil, nil, err
	}
	opts := []nats.Option{nats.Name("writ"), nats.Timeout(5 * time.Second)}
	// Who connects: --creds, else the setup's read-only identity, which
	// is all that reading the trail needs.
	creds := c.creds
	if creds == "" && cfgErr == nil {
		if _, err := os.Stat(cfg.Path(config.ReaderCreds)); err == nil {
			creds = cfg.Path(config.ReaderCreds)
		}
	}
	if creds != "" {
		copts, err := connect.Creds(creds)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, copts...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrNoServers) {
			return nil, nil, fmt.Errorf("cannot reach NATS at %s: is 'writ serve' running? (point elsewhere with --server or NATS_URL)", url)
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			who := "no credentials"
			if creds != "" {
				who = creds
			}
			return nil, nil, fmt.Errorf("NATS at %s refused the connection (%s): the server admits only identities this domain issued, not expired; pass --creds with one ('writ identity issue' makes one)", url, who)
		}
		return nil, nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	cl, err := client.New(nc, client.Options{Stream: stream, Bundle: bundle, MaxBody: maxBody, Home: home})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, cl, nil
}

// openAs loads the --creds identity and connects with it.
func (c *conn) openAs() (*identity.Identity, *nats.Conn, *client.Client, error) {
	who, err := c.identity()
	if err != nil {
		return nil, nil, nil, err
	}
	nc, cl, err := c.open()
	if err != nil {
		return nil, nil, nil, err
	}
	return who, nc, cl, nil
}

// lookup loads a request's history: in domain, or, when domain is "",
// wherever the id is found in the connection's own stream.
func lookup(ctx context.Context, cl *client.Client, domain, id string) (*client.Request, error) {
	if domain == "" {
		var err error
		if domain, err = cl.Find(ctx, id); err != nil {
			return nil, lookupError(err, id)
		}
	}
	r, err := cl.Load(ctx, domain, id)
	return r, lookupError(err, id)
}

// lookupError says what to do about a request id that finds nothing.
func lookupError(err error, id string) error {
	switch {
	case errors.Is(err, client.ErrNotAnID):
		return fmt.Errorf("%w: ids are UUIDs such as 01a24fe0-e949-7d48-912d-0ff6dc6ba56a, as 'writ request' prints them", err)
	case errors.Is(err, client.ErrNotFound):
		return fmt.Errorf("%w; check the id ('writ audit replay' lists the requests), or pass --dir and --server of the setup it was made in", err)
	}
	return err
}

// reachable is where a command for approvers looks: the domain named, or
// every domain this setup reaches (its own, and the others of its trust
// bundle whose streams answer across leafnodes). It says on stderr which
// linked domains did not answer: their requests are not shown.
func reachable(ctx context.Context, cl *client.Client, domain string, stderr io.Writer) []string {
	if domain != "" {
		return []string{domain}
	}
	reach := cl.Reach(ctx)
	for _, d := range slices.Sorted(maps.Keys(reach.Missed)) {
		fmt.Fprintf(stderr, "writ: %s's requests are not shown: in %s, %v\n", d, d, reach.Missed[d])
	}
	return reach.Domains
}

// errWhichDomain: a request id alone does not say which domain to act in.
var errWhichDomain = errors.New("say which domain with --domain")

// explained is an error in the user's words that still is (errors.Is) the
// errors it explains, without repeating their text.
type explained struct {
	msg    string
	causes []error
}

func (e *explained) Error() string   { return e.msg }
func (e *explained) Unwrap() []error { return e.causes }

// locate loads the request an approver acts on: in domain, or, when domain
// is "", in the one domain of those this setup reaches that holds its id.
// An id in two domains is refused, and so is one when a linked domain's
// stream cannot be read, which could hold it too: a vote or a revocation
// must not reach a request other than the one meant.
func locate(ctx context.Context, cl *client.Client, domain, id string) (*client.Request, error) {
	if domain != "" {
		r, err := cl.Load(ctx, domain, id)
		return r, lookupError(err, id)
	}
	reach := cl.Reach(ctx)
	if len(reach.Missed) > 0 {
		d := slices.Sorted(maps.Keys(reach.Missed))[0]
		return nil, &explained{
			msg:    fmt.Sprintf("cannot tell which domain holds %s: in %s, %v, and it could hold the id too: %v", id, d, reach.Missed[d], errWhichDomain),
			causes: []error{errWhichDomain, reach.Missed[d]},
		}
	}
	d, err := cl.FindIn(ctx, id, reach.Domains)
	var amb *client.AmbiguousError
	switch {
	case errors.As(err, &amb):
		return nil, &explained{
			msg:    fmt.Sprintf("request %s is in %d domains (%s): %v", id, len(amb.Domains), strings.Join(amb.Domains, " and "), errWhichDomain),
			causes: []error{errWhichDomain, err},
		}
	case errors.Is(err, client.ErrNotAnID):
		return nil, &explained{
			msg:    fmt.Sprintf("%q is not a request id; copy the id from 'writ approvals list' or from what 'writ request' printed", id),
			causes: []error{err},
		}
	case errors.Is(err, client.ErrNotFound):
		return nil, &explained{
			msg:    fmt.Sprintf("no request %s in %s (the domains this setup reaches); check the id, or name its domain with --domain", id, strings.Join(reach.Domains, ", ")),
			causes: []error{err},
		}
	case err != nil:
		return nil, lookupError(err, id)
	}
	return cl.Load(ctx, d, id)
}

// redeemer loads the Writ directory's configuration for a command that
// redeems grants: it needs the redeemer key, and the trust bundle (--trust
// overrides the directory's).
func (c *conn) redeemer(purpose string) (*config.Runtime, *identity.Bundle, error) {
	cfg, err := config.Load(c.dir)
	if err != nil {
		return nil, nil, noSetup(c.dir, err, purpose)
	}
	rt, err := cfg.Open()
	if err != nil {
		return nil, nil, err
	}
	if rt.RedeemerKey == nil {
		return nil, nil, fmt.Errorf("the configuration in %s names no redeemer key (keys.redeemer)", c.dir)
	}
	bundle := rt.Bundle
	if c.trust != "" {
		if bundle, err = identity.LoadBundle(c.trust); err != nil {
			return nil, nil, err
		}
	}
	return rt, bundle, nil
}

// noSetup says that dir holds no Writ setup that loads, and what to do.
func noSetup(dir string, err error, todo string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no Writ setup in %s ('writ serve' or 'writ init --dir %s' makes one): %s", dir, dir, todo)
	}
	return fmt.Errorf("the Writ setup in %s does not load: %w", dir, err)
}
