package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
)

func runGrant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: writ grant show REQUEST-ID --creds FILE | writ grant verify TOKEN|-")
	}
	switch args[0] {
	case "show":
		return grantShow(ctx, args[1:], stdout, stderr)
	case "verify":
		return grantVerify(args[1:], stdout, stderr)
	case "-h", "--help":
		fmt.Fprintln(stderr, "Usage: writ grant show REQUEST-ID --creds FILE | writ grant verify TOKEN|- [--domain D] [--action A] [--resource R]")
		return nil
	}
	return usageError("unknown grant command %q: show or verify", args[0])
}

func grantShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grant show", "grant show REQUEST-ID --creds FILE", stderr)
	var c conn
	c.register(fs, "the requester's .creds file (required): only it can open the grant")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("grant show takes one request id")
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := lookup(ctx, cl, pos[0])
	if err != nil {
		return err
	}
	domain := r.State.Domain
	if r.State.Status.AwaitsGrant() {
		// Decided in favour a moment ago: the issuer is about to answer.
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		status := r.State.Status
		if r, err = cl.Wait(wctx, domain, pos[0], client.Settled); err != nil {
			return fmt.Errorf("request %s is %s but not granted yet: %w", pos[0], status, err)
		}
	}
	return printOutcome(r, who, false, stdout, stderr)
}

func grantVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grant verify", "grant verify TOKEN|- [--domain D] [--action A] [--resource R] [--leeway 30s]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory whose trust bundle to use; env WRIT_HOME")
	trust := fs.String("trust", "", "trust bundle (default: the Writ directory's)")
	domain := fs.String("domain", "", "the domain the grant must be for (default: the Writ directory's domain)")
	action := fs.String("action", "", "the action the grant must allow")
	resource := fs.String("resource", "", "the resource the grant must allow")
	leeway := fs.Duration("leeway", issuer.DefaultLeeway, "clock skew tolerated on not-before and expiry (at most 5m)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("grant verify takes one token, or - to read it from standard input")
	}
	if *leeway < 0 || *leeway > issuer.MaxLeeway {
		return usageError("--leeway must be between 0 and %s", issuer.MaxLeeway)
	}
	token := pos[0]
	if token == "-" {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read token from stdin: %w", err)
		}
		token = line
	}
	token = strings.TrimSpace(token)
	path := *trust
	if path == "" || *domain == "" {
		cfg, err := config.Load(*dir)
		if err != nil {
			return fmt.Errorf("no Writ setup in %s (%v): pass --trust and --domain", *dir, err)
		}
		if path == "" {
			path = cfg.Path(cfg.Trust)
		}
		if *domain == "" {
			*domain = cfg.Domain
		}
	}
	bundle, err := identity.LoadBundle(path)
	if err != nil {
		return err
	}
	c, err := issuer.Verify(token, issuer.VerifyOptions{
		Bundle: bundle, Audience: *domain, Action: *action, Resource: *resource, Leeway: *leeway,
	})
	if err != nil {
		return fmt.Errorf("grant is not valid: %w", err)
	}
	fmt.Fprintf(stdout, "valid grant %s\n", shortHash(issuer.TokenHash(token)))
	fmt.Fprintf(stdout, "  request   %s\n", c.RequestID)
	fmt.Fprintf(stdout, "  allows    %s on %s/%s\n", c.Action, c.Audience, c.Resource)
	fmt.Fprintf(stdout, "  holder    %s\n", c.Holder)
	fmt.Fprintf(stdout, "  issuer    %s\n", c.Issuer)
	fmt.Fprintf(stdout, "  valid     %s to %s (%s left)\n", c.NotBefore.Local().Format(time.RFC3339),
		c.Expires.Local().Format(time.RFC3339), time.Until(c.Expires).Round(time.Second))
	if c.BreakGlass {
		fmt.Fprintln(stdout, "  BREAK-GLASS grant: under mandatory review")
	}
	return nil
}
