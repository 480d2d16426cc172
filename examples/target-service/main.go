// Command target-service runs the sample db-operator of a Writ domain: a
// NATS micro service that restarts production databases and applies
// migrations to staging ones, each only after redeeming a Writ grant for
// exactly that action and resource. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/examples/target-service/dboperator"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/redeem"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "target-service:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "call" {
		return runCall(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("target-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", ".writ"), "Writ directory of the domain: config, trust bundle, redeemer key; env WRIT_HOME")
	server := fs.String("server", envOr("NATS_URL", ""), "NATS server URL; env NATS_URL (default: the Writ directory's listen address)")
	creds := fs.String("creds", "", "a redeemer's .creds (default: the Writ directory's creds/redeemer.creds)")
	name := fs.String("service", dboperator.DefaultName, "service name: the micro service's, the subject prefix, and the redeemer name in the audit stream")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := config.Load(*dir)
	if err != nil {
		return fmt.Errorf("no Writ setup in %s: %w (run 'writ serve' there first, or pass --dir)", *dir, err)
	}
	rt, err := cfg.Open()
	if err != nil {
		return err
	}
	if rt.RedeemerKey == nil {
		return fmt.Errorf("the configuration in %s names no redeemer key (keys.redeemer)", *dir)
	}
	url := *server
	if url == "" {
		url = "nats://" + cfg.Listen
	}
	opts := []nats.Option{nats.Name(*name), nats.MaxReconnects(-1)}
	// A redeemer's creds: consuming a grant is that role's right on the
	// server (the Writ directory's creds/redeemer.creds by default).
	c := *creds
	if c == "" {
		c = cfg.Path(config.RedeemerCreds)
	}
	copts, err := connect.Creds(c)
	if err != nil {
		return err
	}
	opts = append(opts, copts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()

	r, err := redeem.New(redeem.Config{
		NC: nc, Domain: cfg.Domain, Bundle: rt.Bundle, Key: rt.RedeemerKey,
		Service: *name, Stream: cfg.Stream.Name, Logger: log,
	})
	if err != nil {
		return err
	}
	op, err := dboperator.New(dboperator.Config{NC: nc, Redeemer: r, Name: *name, Logger: log})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Run(ctx) })
	g.Go(func() error {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := r.WaitReady(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := op.Start(ctx); err != nil {
			return err
		}
		// Say "serving" only once the server has the endpoints'
		// subscriptions: a call made after the line finds them.
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s serving domain %q on %s (restart prod/*, deploy staging/*). Ctrl-C stops.\n",
			*name, cfg.Domain, dboperator.Subject(*name, "*"))
		<-ctx.Done()
		return op.Stop()
	})
	err = g.Wait()
	if ferr := nc.FlushTimeout(5 * time.Second); ferr != nil && err == nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		err = ferr
	}
	return err
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// runCall is the holder's side, for trying the service by hand: prove
// possession of a grant and call an endpoint with it.
func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("target-service call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("NATS_URL", nats.DefaultURL), "NATS server URL; env NATS_URL")
	credsPath := fs.String("creds", "", "the grant holder's .creds (required): signs the proof of possession")
	name := fs.String("service", dboperator.DefaultName, "service name")
	action := fs.String("action", "", "restart or deploy (required)")
	resource := fs.String("resource", "", "prod/<name> for restart, staging/<name> for deploy (required)")
	grant := fs.String("grant", "", "the opened grant, as 'writ request --wait' prints it; - reads it from standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *credsPath == "" || *action == "" || *resource == "" || *grant == "" {
		return errors.New("call needs --creds, --action, --resource and --grant")
	}
	params := map[string]string{}
	for _, kv := range fs.Args() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("parameter %q: want key=value", kv)
		}
		params[k] = v
	}
	token := *grant
	if token == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		if err != nil {
			return err
		}
		token = string(b)
	}
	who, err := identity.LoadCreds(*credsPath)
	if err != nil {
		return err
	}
	copts, err := connect.Creds(*credsPath)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*server, append(copts, nats.Name(*name+"-caller"))...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *server, err)
	}
	defer nc.Close()
	cmd, err := dboperator.NewCommand(who.Key, strings.TrimSpace(token), *action, *resource, params, time.Now())
	if err != nil {
		return err
	}
	res, err := dboperator.Call(ctx, nc, *name, *action, cmd)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (request %s)\n", res.Done, res.RequestID)
	return nil
}
