package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/callout"
	"github.com/writ-dev/writ/redeem"
)

// runCallout answers a NATS server's auth callout requests with this Writ
// directory's domain's grants: see package callout for the server's side.
func runCallout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("callout", "callout --server URL (--creds AUTHUSER.creds | --nkey AUTHUSER.nk) (--system-creds SYS.creds | --system-nkey SYS.nk) --signer SIGNER.nk [--account APP] [--xkey X.nk] [--dir DIR]", stderr)
	var c conn
	c.register(fs, "the auth callout user's .creds file (operator mode)")
	nkeyFile := fs.String("nkey", "", "the auth callout user's nkey seed file (config mode: an nkey user listed in auth_users)")
	signerFile := fs.String("signer", "", "seed file of the account nkey named as auth_callout issuer (required)")
	account := fs.String("account", "", "account granted users are placed in (config mode)")
	xkeyFile := fs.String("xkey", "", "seed file of the curve key named as auth_callout xkey (optional)")
	sysCreds := fs.String("system-creds", "", "the .creds of a user of the server's system account allowed "+strings.Join(callout.SystemSubjects, " and ")+" (operator mode): it ends the connections of revoked grants and locked holders")
	sysNkey := fs.String("system-nkey", "", "the nkey seed file of such a system-account user (config mode; see package callout)")
	writServer := fs.String("writ-server", "", "NATS URL of the domain's Writ JetStream (default: the Writ directory's config)")
	writCreds := fs.String("writ-creds", "", ".creds of a redeemer for the Writ JetStream connection (default: the Writ directory's creds/redeemer.creds)")
	prefix := fs.String("prefix", callout.DefaultPrefix, "first token of action subjects")
	verbose := fs.Bool("verbose", false, "log each decision")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("callout takes no arguments")
	}
	if c.server == "" {
		return usageError("--server is required: the target NATS server configured for auth callout")
	}
	if (c.creds == "") == (*nkeyFile == "") {
		return usageError("give one of --creds or --nkey: how the responder authenticates as an auth_users user")
	}
	if *signerFile == "" {
		return usageError("--signer is required: the seed of the auth_callout issuer account key")
	}
	if (*sysCreds == "") == (*sysNkey == "") {
		return usageError("give one of --system-creds or --system-nkey: a user of the server's system account, with which the responder ends the connections of revoked grants and locked holders")
	}
	rt, bundle, err := c.redeemer("the callout needs the domain's trust bundle and redeemer key")
	if err != nil {
		return err
	}
	stream := c.stream
	if stream == "" {
		stream = rt.Config.Stream.Name
	}
	signer, err := readSeed(*signerFile)
	if err != nil {
		return fmt.Errorf("--signer: %w", err)
	}
	var xkey nkeys.KeyPair
	if *xkeyFile != "" {
		if xkey, err = readSeed(*xkeyFile); err != nil {
			return fmt.Errorf("--xkey: %w", err)
		}
	}

	opts := []nats.Option{nats.Name("writ-callout"), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1)}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	} else {
		kp, err := readSeed(*nkeyFile)
		if err != nil {
			return fmt.Errorf("--nkey: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return err
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	target, err := nats.Connect(c.server, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", c.server, err)
	}
	defer target.Close()
	sys, err := connectSystem(c.server, *sysCreds, *sysNkey, rt.Config.Domain)
	if err != nil {
		return err
	}
	defer sys.Close()

	wurl := *writServer
	if wurl == "" {
		wurl = "nats://" + rt.Config.Listen
	}
	wopts := []nats.Option{nats.Name("writ-callout-redeemer"), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1)}
	// Consuming a grant is the redeemer's right on the server.
	copts, err := connect.Creds(firstNonEmpty(*writCreds, rt.Config.Path(config.RedeemerCreds)))
	if err != nil {
		return fmt.Errorf("--writ-creds: %w", err)
	}
	wopts = append(wopts, copts...)
	wnc, err := nats.Connect(wurl, wopts...)
	if err != nil {
		return fmt.Errorf("connect to Writ's NATS at %s: %w", wurl, err)
	}
	defer wnc.Close()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	r, err := callout.New(callout.Config{
		Conn: target, System: sys,
		Redeem: redeem.Config{
			NC: wnc, Domain: rt.Config.Domain, Bundle: bundle, Key: rt.RedeemerKey, Stream: stream, Logger: logger,
		},
		Signer: signer, Account: *account, XKey: xkey, Prefix: *prefix, Logger: logger,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// Ready: in sync with the revocation and lock lists, and shown to
	// list and end the server's connections. Until then every connection
	// is refused.
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	ready := make(chan error, 1)
	go func() { ready <- r.WaitReady(wctx) }()
	select {
	case err := <-done: // it could not start
		return err
	case err := <-ready:
		if err != nil {
			cancel()
			if rerr := <-done; rerr != nil {
				return rerr
			}
			return fmt.Errorf("the callout is not ready: %w", err)
		}
	}
	fmt.Fprintf(stdout, "answering auth callout for domain %s on %s (subjects %s.%s.<action>.<resource>); revoking a grant or locking its holder ends its connection\n",
		rt.Config.Domain, c.server, *prefix, rt.Config.Domain)
	return <-done
}

// connectSystem connects to the target server as the system-account user
// of a .creds file or an nkey seed, hearing answers under its own inbox
// prefix (the callout-system role's only subscription).
func connectSystem(url, creds, nkeyFile, domain string) (*nats.Conn, error) {
	flag, file := "--system-creds", creds
	if creds == "" {
		flag, file = "--system-nkey", nkeyFile
	}
	kp, err := readSeed(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%s: %s holds no user key", flag, file)
	}
	opts := []nats.Option{nats.Name("writ-callout-system"), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1),
		nats.CustomInboxPrefix(access.InboxPrefix(domain, pub))}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	} else {
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s as the system-account user of %s: %w", url, flag, err)
	}
	return nc, nil
}

// readSeed reads an nkey seed file, plain or decorated (.creds, .nk).
func readSeed(path string) (nkeys.KeyPair, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if kp, err := nkeys.ParseDecoratedNKey(raw); err == nil {
		return kp, nil
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if line = bytes.TrimSpace(line); bytes.HasPrefix(line, []byte("S")) {
			return nkeys.FromSeed(line)
		}
	}
	return nil, errors.New("no nkey seed found")
}
