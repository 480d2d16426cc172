package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

func runRequest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("request", "request --creds FILE --domain D --action A --resource R [--urgency U] [--reason TEXT] [--ttl 15m] [--param k=v]... [--wait]", stderr)
	var c conn
	c.register(fs, "your .creds file (required): the identity that signs the request")
	domain := fs.String("domain", "", "target domain, which owns the resource (default: your own)")
	action := fs.String("action", "", "the action, e.g. restart (required)")
	resource := fs.String("resource", "", "the resource's path in the target domain, e.g. prod/db (required)")
	urgency := fs.String("urgency", "normal", "low, normal, high or critical")
	reason := fs.String("reason", "", "why, for the approvers and the audit trail")
	ticket := fs.String("ticket", "", "a ticket or incident reference")
	ttl := fs.Duration("ttl", 0, "how long the grant should last (default: the issuer's, capped by policy)")
	var params multiFlag
	fs.Var(&params, "param", "a request parameter key=value, bound into the grant (repeatable)")
	wait := fs.Bool("wait", false, "wait for the decision and print the grant")
	timeout := fs.Duration("timeout", 30*time.Minute, "with --wait: how long to wait")
	asJSON := fs.Bool("json", false, "print the outcome as JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *action == "" || *resource == "" {
		return usageError("--action and --resource are required")
	}
	if !slices.Contains(client.Urgencies, *urgency) {
		return usageError("--urgency must be one of %s", strings.Join(client.Urgencies, ", "))
	}
	p := map[string]string{}
	for _, kv := range params {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError("--param %q: want key=value", kv)
		}
		p[k] = v
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	if *domain == "" {
		*domain = who.Principal.Domain
	}
	defer nc.Close()
	id, err := cl.Request(ctx, who, client.Spec{
		Domain: *domain, Action: *action, Resource: *resource, Params: p,
		Urgency: *urgency, Reason: *reason, Ticket: *ticket, TTL: *ttl,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "request %s: %s %s in %s, as %s\n", id, *action, *resource, *domain, who.Principal.ID())
	if !*wait {
		fmt.Fprintln(stdout, id)
		fmt.Fprintf(stderr, "follow it with: writ audit replay --request %s; fetch the grant with: writ grant show %s --creds %s\n", id, id, c.creds)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	announced := false
	r, err := cl.Wait(wctx, *domain, id, func(s request.State) bool {
		if s.Status.IsPending() && !announced {
			announced = true
			fmt.Fprintf(stderr, "pending: needs approval (%s), deadline %s\n", flowSummary(s), s.Evaluation.ExpiresAt.Local().Format(time.Kitchen))
		}
		return client.Settled(s)
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no decision after %s; the request goes on: writ audit replay --request %s", *timeout, id)
		}
		return err
	}
	return printOutcome(r, who, *asJSON, stdout, stderr)
}

// printOutcome prints the grant token alone on stdout (or the outcome as
// JSON), and the rest on stderr. A request that ended without a grant
// exits with status 3.
func printOutcome(r *client.Request, who *identity.Identity, asJSON bool, stdout, stderr io.Writer) error {
	s := r.State
	o := describeOutcome(s)
	if s.Status == request.StatusGranted {
		token, err := client.OpenGrant(s, who)
		if err != nil {
			return err
		}
		o.Grant = token
	}
	if asJSON {
		if err := writeJSON(stdout, o); err != nil {
			return err
		}
	} else if o.Grant != "" {
		fmt.Fprintf(stderr, "granted (%s) until %s, grant %s\n", strings.Join(o.Reasons, ", "),
			o.Expires.Local().Format(time.RFC3339), shortHash(o.TokenHash))
		fmt.Fprintln(stdout, o.Grant)
	}
	if s.Status != request.StatusGranted {
		msg := fmt.Sprintf("request %s %s", s.ID, s.Status)
		if o.Reason != "" {
			msg += ": " + o.Reason
		}
		if len(o.Reasons) > 0 {
			msg += " [" + strings.Join(o.Reasons, ", ") + "]"
		}
		return &exitError{code: exitNoGrant, err: errors.New(msg)}
	}
	return nil
}

// shortHash shortens a digest for display; it is never a secret.
func shortHash(d string) string {
	if len(d) > 19 {
		return d[:19] + "…"
	}
	return d
}

func flowSummary(s request.State) string {
	var parts []string
	t := s.Tally()
	for _, f := range s.Evaluation.Flows {
		st := f.Stages[0]
		n := 0
		for _, v := range t.Approvers {
			if request.Eligible(st, v, s.Domain) {
				n++
			}
		}
		who := strings.Join(append(slices.Clone(st.Groups), st.Principals...), "|")
		parts = append(parts, fmt.Sprintf("%s: %d of %d from %s", f.Name, n, st.Required, who))
	}
	return strings.Join(parts, "; ")
}

// outcome is the machine-readable result of a request.
type outcome struct {
	RequestID string    `json:"request_id"`
	Domain    string    `json:"domain"`
	Status    string    `json:"status"`
	Reasons   []string  `json:"reasons,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Grant     string    `json:"grant,omitempty"`
	TokenHash string    `json:"token_hash,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

func describeOutcome(s request.State) outcome {
	o := outcome{RequestID: s.ID, Domain: s.Domain, Status: s.Status.String()}
	if s.Evaluation != nil {
		o.Reasons = s.Evaluation.Reasons
	}
	switch {
	case s.Rejection != nil:
		o.Reason = s.Rejection.Code + ": " + s.Rejection.Reason
	case s.Status == request.StatusDenied && s.Evaluation != nil && s.Evaluation.Outcome == events.OutcomeDeny:
		o.Reason = "denied by policy"
		if len(s.Evaluation.Errors) > 0 {
			o.Reason += " (evaluation error: " + s.Evaluation.Errors[0] + ")"
		}
	case s.Status == request.StatusDenied:
		t := s.Tally()
		var by []string
		for _, p := range t.Deniers {
			by = append(by, p.ID())
		}
		o.Reason = "denied by " + strings.Join(by, ", ")
		if t.Reason != "" {
			o.Reason += ": " + t.Reason
		}
	case s.Status == request.StatusExpired:
		o.Reason = "no decision before the deadline"
	}
	if s.Grant != nil {
		o.TokenHash, o.Expires = s.Grant.TokenHash, s.Grant.ExpiresAt
	}
	return o
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
