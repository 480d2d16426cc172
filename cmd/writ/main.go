package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/writ-dev/writ/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "writ:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit statuses besides 0 and 1.
const (
	exitUsage   = 2 // bad command line
	exitNoGrant = 3 // the request ended without a grant: denied (request.go has 4 expired, 5 rejected or refused, 6 revoked)
	// exitFindings (7, verify.go): the audit trail does not verify.
	exitUndecided = 8 // the request has no outcome yet: it still waits for a decision or for its grant
)

func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func exitCode(err error) int {
	var e *exitError
	switch {
	case errors.As(err, &e):
		return e.code
	}
	return 1
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"init", "create a local setup: domain, keys, trust bundle, sample identities, policies, flows", runInit},
		{"serve", "run the pipeline (embedded NATS with JetStream unless --server is given)", runServe},
		{"request", "ask to perform one action on one resource; 'request show ID' shows one", runRequest},
		{"approvals", "'approvals watch' shows, live, the requests you may answer, and answers them; 'approvals list' once", runApprovals},
		{"approve", "approve a pending request", runApprove},
		{"deny", "deny a pending request", runDeny},
		{"revoke", "withdraw a request or its grant (yours, or as policy allows)", runRevoke},
		{"lock", "'lock principal|key|domain NAME': no new grants to it, no redemptions by it", runLock},
		{"unlock", "lift a lock", runUnlock},
		{"state", "'state set|delete DOMAIN[/PATH] --creds FILE' asks to change the resource and domain state policies read; 'state get' reads it", runState},
		{"grant", "'grant show ID' opens your grant; 'grant verify TOKEN' checks one; 'grant redeem TOKEN' uses it", runGrant},
		{"audit", "'audit replay' each request's history; 'audit verify' checks the trail end to end; 'audit checkpoint'; 'audit export' for a SIEM, or one request's evidence bundle", runAudit},
		{"trust", "'trust add|list|remove|revoke': the domains and keys this setup trusts", runTrust},
		{"identity", "'identity issue' mints a principal's .creds; 'identity show' describes one; 'identity revoke' has the server refuse one", runIdentity},
		{"callout", "answer a NATS server's auth callout with grants: the server enforces them", runCallout},
		{"bench", "measure the auto-approve path against a bare JetStream relay and its cryptographic floor on the same server", runBench},
	}
}

// serverCommands run Writ's own services, which log what they wait for;
// the others are clients.
var serverCommands = map[string]bool{"init": true, "serve": true, "callout": true, "bench": true}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	var h *helpError
	if errors.As(err, &h) {
		h.print(stdout)
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageError("no command given")
	}
	if isHelp(args[0]) {
		if len(args) > 1 { // writ help COMMAND [SUBCOMMAND]
			return dispatch(ctx, append(slices.Clone(args[1:]), "--help"), stdout, stderr)
		}
		return &helpError{print: usage}
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if !serverCommands[c.name] {
				// A client command tells its user when it waits for
				// the cluster (a leader election), not only its error.
				ctx = store.WithWaiter(ctx, newWaitNotice(stderr))
			}
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	return usageError("unknown command %q; 'writ --help' lists the commands", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `writ: just-in-time approval of single actions, over NATS JetStream.

Usage: writ <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Start here:  writ serve          (creates a development setup in .writ on first run)
Then:        writ request --creds .writ/creds/deploy-bot.creds --domain acme \
                 --action deploy --resource staging/web --wait
Run 'writ <command> --help' (or 'writ help <command>') for a command's flags.

Exit status: 0 success, 1 error, 2 bad command line; a request that ended without
a grant: 3 denied, 4 expired, 5 rejected or refused (a lock), 6 revoked; 7 the audit
trail does not verify;
8 the request has no outcome yet (grant show on a request still pending).
`)
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
