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

// Exit statuses of a request that ended without a grant.
const (
	exitDenied   = exitNoGrant // by policy or by an approver
	exitExpired  = 4           // no decision before the deadline
	exitRejected = 5           // refused before evaluation (bad signature, unknown domain, a lock…), or its grant refused after it (a lock since)
	exitRevoked  = 6           // withdrawn
)

func runRequest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "show" {
		return runRequestShow(ctx, args[1:], stdout, stderr)
	}
	fs := newFlags("request", "request --creds FILE --action A --resource R [--domain D] [--urgency U] [--reason TEXT] [--ttl 15m] [--param k=v]... [--wait]", stderr)
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
	wait := fs.Bool("wait", false, "wait for the decision, showing progress on stderr, and print the grant; exit 3 denied, 4 expired, 5 rejected or refused, 6 revoked")
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
	sub, err := cl.Submit(ctx, who, client.Spec{
		Domain: *domain, Action: *action, Resource: *resource, Params: p,
		Urgency: *urgency, Reason: *reason, Ticket: *ticket, TTL: *ttl,
	})
	if errors.Is(err, client.ErrOutcomeUnknown) {
		sub.Close()
		return fmt.Errorf("%w\nlook it up before asking again: writ request show %s", err, sub.ID)
	}
	if err != nil {
		return err
	}
	defer sub.Close()
	id := sub.ID
	fmt.Fprintf(stderr, "request %s: %s %s in %s, as %s\n", id, *action, *resource, *domain, who.Principal.ID())
	if !*wait {
		fmt.Fprintln(stdout, id)
		fmt.Fprintf(stderr, "follow it with: writ audit replay --request %s; fetch the grant with: writ grant show %s --creds %s\n", id, id, c.creds)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	prog := newProgress(stderr)
	r, err := sub.Wait(wctx, func(s request.State) bool {
		prog.observe(s, time.Now())
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
// exits with a status that says how: 3 denied, 4 expired, 5 rejected or
// refused, 6 revoked (3 for anything else without a usable grant).
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
		return &exitError{code: noGrantCode(s.Status), err: errors.New(msg)}
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
		o.Reason = policyDenial(s)
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
	case s.Revocation != nil:
		o.Reason = fmt.Sprintf("revoked by %s: %s", s.Revocation.By.ID(), s.Revocation.Reason)
	case s.Refusal != nil:
		o.Reason = fmt.Sprintf("the issuer refused its grant (%s): %s", s.Refusal.Code, s.Refusal.Reason)
	}
	if s.Grant != nil {
		o.TokenHash, o.Expires = s.Grant.TokenHash, s.Grant.ExpiresAt
	}
	return o
}

// policyDenial says why policy denied a request: the forbid policies that
// decided it (listed after it by printOutcome), an evaluation error, or no
// permit at all, naming the action and resource none permits.
func policyDenial(s request.State) string {
	e := s.Evaluation
	switch {
	case len(e.Errors) > 0:
		return "denied: the policies could not be evaluated (" + e.Errors[0] + ")"
	case len(e.Reasons) > 0:
		return "forbidden by policy"
	case s.Request != nil:
		where := s.Request.Resource
		if s.Domain != s.Requester.Domain {
			where = s.Domain + "/" + where
		}
		return fmt.Sprintf("no policy permits %s on %s", s.Request.Action, where)
	}
	return "no policy permits it"
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func noGrantCode(s request.Status) int {
	switch s {
	case request.StatusExpired:
		return exitExpired
	case request.StatusRejected, request.StatusRefused:
		return exitRejected
	case request.StatusRevoked:
		return exitRevoked
	}
	return exitDenied
}

func runRequestShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("request show", "request show ID [--json] [--domain D]", stderr)
	var c conn
	c.register(fs, "the .creds to connect with (default: the Writ directory's read-only creds/reader.creds; the server refuses connections without credentials)")
	domain := fs.String("domain", "", "the request's domain (default: found from the id)")
	asJSON := fs.Bool("json", false, "print the request as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("request show takes one request id")
	}
	nc, cl, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := lookup(ctx, cl, *domain, pos[0])
	if err != nil {
		return err
	}
	v := viewOf(r.State, r.Records)
	if *asJSON {
		return writeJSON(stdout, v)
	}
	writeShow(stdout, v, time.Now())
	return nil
}

// progress reports, on the requester's terminal, what changed in a request
// since the last state it saw.
type progress struct {
	w         io.Writer
	evaluated bool
	status    request.Status
	votes     map[uint64]bool
	refused   map[uint64]bool
	escalated int
	stages    map[string]int
	deadline  time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, votes: map[uint64]bool{}, refused: map[uint64]bool{}, stages: map[string]int{}}
}

func (p *progress) observe(s request.State, now time.Time) {
	if s.Rejection != nil && p.status != request.StatusRejected {
		fmt.Fprintf(p.w, "rejected: %s: %s\n", s.Rejection.Code, s.Rejection.Reason)
	}
	if e := s.Evaluation; e != nil && !p.evaluated {
		p.evaluated = true
		line := "evaluated: " + e.Outcome
		if len(e.Reasons) > 0 {
			line += " by " + strings.Join(e.Reasons, ", ")
		}
		if len(e.Errors) > 0 {
			line += " (errors: " + strings.Join(e.Errors, "; ") + ")"
		}
		if e.BreakGlass {
			line += " BREAK-GLASS"
		}
		fmt.Fprintln(p.w, line)
	}
	for _, v := range s.Votes {
		if p.votes[v.Seq] {
			continue
		}
		p.votes[v.Seq] = true
		if v.Approve {
			fmt.Fprintf(p.w, "vote: %s approves\n", v.Voter.ID())
		} else {
			fmt.Fprintf(p.w, "vote: %s denies: %q\n", v.Voter.ID(), v.Reason)
		}
	}
	for seq, code := range s.Answered {
		if !p.refused[seq] && seq != s.RequestSeq {
			p.refused[seq] = true
			fmt.Fprintf(p.w, "refused #%d: %s\n", seq, code)
		}
	}
	for _, e := range s.Escalations[p.escalated:] {
		added := strings.Join(append(append([]string{}, e.Data.Groups...), e.Data.Principals...), ", ")
		fmt.Fprintf(p.w, "escalated: %s stage %d now also asks %s\n", e.Data.Flow, e.Data.Stage+1, added)
	}
	p.escalated = len(s.Escalations)
	if s.Status.IsPending() {
		for _, pr := range s.Progress() {
			if st, seen := p.stages[pr.Flow.Name]; !seen || st != pr.Stage {
				p.stages[pr.Flow.Name] = pr.Stage
				verb := "waiting for"
				if seen {
					verb = "stage opened:"
				}
				if pr.Done() {
					verb = "flow done:"
				}
				fmt.Fprintf(p.w, "%s %s\n", verb, progressSummary(pr, s.Domain))
			}
		}
		// Once every flow is done nothing is due (the decision follows):
		// no deadline to show.
		if d := s.Deadline(); !d.IsZero() && !d.Equal(p.deadline) {
			p.deadline = d
			fmt.Fprintf(p.w, "deadline: %s (in %s)\n", d.Local().Format(time.TimeOnly), countdown(d, now))
		}
	}
	if s.Status != p.status {
		if p.status != request.StatusNone && s.Status != request.StatusGranted && s.Status != request.StatusRejected && s.Status != request.StatusAllowed {
			line := "now " + s.Status.String()
			if o := describeOutcome(s); o.Reason != "" {
				line += ": " + o.Reason
			}
			fmt.Fprintln(p.w, line)
		}
		p.status = s.Status
	}
}
