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
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

func runGrant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: writ grant show REQUEST-ID --creds FILE | writ grant verify TOKEN|- | writ grant redeem TOKEN|- --creds FILE --action A --resource R")
	}
	switch args[0] {
	case "show":
		return grantShow(ctx, args[1:], stdout, stderr)
	case "verify":
		return grantVerify(args[1:], stdout, stderr)
	case "redeem":
		return grantRedeem(ctx, args[1:], stdout, stderr)
	}
	if isHelp(args[0]) {
		return subcommandHelp("writ grant: 'show' opens your grant, 'verify' checks one, 'redeem' uses it.",
			func(a []string) error { return grantShow(ctx, a, stdout, stderr) },
			func(a []string) error { return grantVerify(a, stdout, stderr) },
			func(a []string) error { return grantRedeem(ctx, a, stdout, stderr) })
	}
	return usageError("unknown grant command %q: show, verify or redeem", args[0])
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
	r, err := lookup(ctx, cl, "", pos[0])
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
			return &exitError{code: exitUndecided, err: fmt.Errorf("request %s is %s but not granted yet (%w): try again in a moment", pos[0], status, err)}
		}
	}
	if s := r.State.Status; s == request.StatusNone || s == request.StatusRequested || s.IsPending() {
		// Not an outcome: neither denied (3) nor an error.
		return &exitError{code: exitUndecided, err: fmt.Errorf("request %s is %s: no decision yet, so no grant to show; "+
			"try again once it is decided ('writ request show %s' shows where it stands)", pos[0], s, pos[0])}
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
	token, err := readToken(pos[0])
	if err != nil {
		return err
	}
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

// readToken returns the token argument, or reads it from standard input
// when it is "-".
func readToken(arg string) (string, error) {
	token := arg
	if token == "-" {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("read token from stdin: %w", err)
		}
		token = line
	}
	return strings.TrimSpace(token), nil
}

// grantRedeem redeems a grant at this Writ directory's domain, as a target
// service would before acting: the holder's --creds make the proof of
// possession, and the directory's redeemer key records the outcome.
func grantRedeem(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grant redeem", "grant redeem TOKEN|- --creds HOLDER.creds --action A --resource R [--param k=v]... [--dir DIR] [--server URL]", stderr)
	var c conn
	c.register(fs, "the grant holder's .creds file (required): it signs the proof of possession")
	action := fs.String("action", "", "the action about to be performed (required)")
	resource := fs.String("resource", "", "the resource it is performed on (required)")
	service := fs.String("service", "writ-cli", "the redeeming service's name, recorded in the audit stream")
	redeemerCreds := fs.String("redeemer-creds", "", "the redeemer's .creds, which may consume grants (default: the Writ directory's creds/redeemer.creds)")
	leeway := fs.Duration("leeway", issuer.DefaultLeeway, "clock skew tolerated on not-before and expiry (at most 5m)")
	var params multiFlag
	fs.Var(&params, "param", "a parameter key=value the grant must bind exactly (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("grant redeem takes one token, or - to read it from standard input")
	}
	if *action == "" || *resource == "" {
		return usageError("--action and --resource are required: what the grant is redeemed for")
	}
	if *leeway <= 0 || *leeway > issuer.MaxLeeway {
		return usageError("--leeway must be above 0 and at most %s", issuer.MaxLeeway)
	}
	want := redeem.Want{Action: *action, Resource: *resource, Params: map[string]string{}}
	for _, kv := range params {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError("--param %q: want key=value", kv)
		}
		want.Params[k] = v
	}
	token, err := readToken(pos[0])
	if err != nil {
		return err
	}
	rt, bundle, err := c.redeemer("redeeming needs the domain's redeemer key")
	if err != nil {
		return err
	}
	// The holder proves possession; the connection is the redeemer's,
	// the role the server lets consume a grant.
	who, err := c.identity()
	if err != nil {
		return err
	}
	c.creds = firstNonEmpty(*redeemerCreds, rt.Config.Path(config.RedeemerCreds))
	nc, _, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	stream := c.stream
	if stream == "" {
		stream = rt.Config.Stream.Name
	}
	r, err := redeem.New(redeem.Config{
		NC: nc, Domain: rt.Config.Domain, Bundle: bundle, Key: rt.RedeemerKey,
		Service: *service, Stream: stream, Leeway: *leeway,
	})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		cancel()
		if runErr := <-done; runErr != nil {
			err = runErr
		}
		done <- nil
		return err
	}
	proof, err := redeem.Prove(who.Key, token, want, time.Now())
	if err != nil {
		return err
	}
	claims, err := r.Redeem(ctx, token, proof, want)
	if err != nil {
		return &exitError{code: exitNoGrant, err: err}
	}
	fmt.Fprintf(stdout, "redeemed grant %s\n", shortHash(issuer.TokenHash(token)))
	fmt.Fprintf(stdout, "  request   %s\n", claims.RequestID)
	fmt.Fprintf(stdout, "  allows    %s on %s/%s\n", claims.Action, claims.Audience, claims.Resource)
	fmt.Fprintf(stdout, "  holder    %s\n", claims.Holder)
	return nil
}
