package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

const auditUsage = `Usage: writ audit <replay|verify|checkpoint|export|deadletter> [flags]
  replay      each request's history, in order (filters, formats)
  verify      check the trail end to end; exit 0 only when everything holds
  checkpoint  ask the auditor for a signed checkpoint of the stream now
  export      JSON lines or CSV for a SIEM; --bundle: one request's evidence
  deadletter  what the pipeline gave up on: unprocessable input, undeliverable notifications
Run 'writ audit <subcommand> --help' for its flags.`

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "export":
			return runAuditExport(ctx, args[1:], stdout, stderr)
		case "verify":
			return runAuditVerify(ctx, args[1:], stdout, stderr)
		case "checkpoint":
			return runAuditCheckpoint(ctx, args[1:], stdout, stderr)
		case "deadletter":
			return runAuditDeadLetter(ctx, args[1:], stdout, stderr)
		}
	}
	if len(args) == 0 || args[0] != "replay" {
		if len(args) > 0 && isHelp(args[0]) {
			return helpText(auditUsage)
		}
		return usageError("%s", auditUsage)
	}
	return runAuditReplay(ctx, args[1:], stdout, stderr)
}

type jsonRecord struct {
	Seq       uint64          `json:"seq"`
	Stored    time.Time       `json:"stored"`
	Subject   string          `json:"subject"`
	Domain    string          `json:"domain"`
	RequestID string          `json:"request_id"`
	Kind      string          `json:"kind"`
	Valid     bool            `json:"valid"`
	Problem   string          `json:"problem,omitempty"`
	Signer    string          `json:"signer,omitempty"`
	Role      string          `json:"role,omitempty"`
	Principal string          `json:"principal,omitempty"`
	Event     json.RawMessage `json:"event,omitempty"`
}

func replayJSON(w io.Writer, r *client.Request) error {
	enc := json.NewEncoder(w)
	for _, rec := range r.Records {
		j := jsonRecord{
			Seq: rec.Seq, Stored: rec.Time, Subject: rec.Subject, Domain: rec.Domain, RequestID: rec.RequestID,
			Kind: rec.Kind.String(), Valid: rec.Valid() && r.Errs[rec.Seq] == nil, Signer: rec.Signer, Role: string(rec.Role),
		}
		if err := problem(r, rec); err != nil {
			j.Problem = request.Code(err) + ": " + err.Error()
		}
		if rec.Principal != nil {
			j.Principal = rec.Principal.ID()
		}
		if json.Valid(rec.Body) {
			j.Event = rec.Body
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

func problem(r *client.Request, rec events.Record) error {
	if rec.Err != nil {
		return rec.Err
	}
	return r.Errs[rec.Seq]
}

func summary(rec events.Record) string {
	switch d := rec.Data.(type) {
	case *events.Requested:
		s := fmt.Sprintf("%s %s urgency=%s", d.Action, d.Resource, d.Urgency)
		if d.TTLSeconds > 0 {
			s += fmt.Sprintf(" ttl=%ds", d.TTLSeconds)
		}
		if d.Reason != "" {
			s += fmt.Sprintf(" reason=%q", d.Reason)
		}
		return s
	case *events.Rejected:
		return d.Code + ": " + d.Reason
	case *events.Evaluated:
		s := d.Outcome
		if d.BreakGlass {
			s = "!!! BREAK-GLASS " + strings.ToUpper(d.Outcome) + " !!!"
		}
		if len(d.Reasons) > 0 {
			s += " by " + strings.Join(d.Reasons, ", ")
		}
		for _, f := range d.Flows {
			s += " flow=" + f.Name
		}
		if len(d.Errors) > 0 {
			s += " errors=" + strings.Join(d.Errors, "; ")
		}
		return s + " policy=" + shortHash(d.PolicyDigest)
	case *events.Voted:
		s := d.Decision
		if d.Reason != "" {
			s += fmt.Sprintf(" reason=%q", d.Reason)
		}
		return s
	case *events.Approved:
		var ids []string
		for _, p := range d.Approvers {
			ids = append(ids, p.ID())
		}
		return "by " + strings.Join(ids, ", ")
	case *events.Denied:
		var ids []string
		for _, p := range d.By {
			ids = append(ids, p.ID())
		}
		return fmt.Sprintf("by %s %q", strings.Join(ids, ", "), d.Reason)
	case *events.Expired:
		return "deadline " + d.Deadline.Local().Format(time.RFC3339)
	case *events.Granted:
		s := fmt.Sprintf("grant %s valid %s", shortHash(d.TokenHash), d.ExpiresAt.Sub(d.NotBefore))
		if d.BreakGlass {
			s += " BREAK-GLASS"
		}
		return s
	case *events.Refused:
		return fmt.Sprintf("refused #%d (%s): %s", d.RefSeq, d.RefKind, d.Code)
	case *events.Counted:
		return fmt.Sprintf("vote #%d by %s counted; the flows wait for others", d.RefSeq, d.Voter.ID())
	case *events.Policy:
		return fmt.Sprintf("policy set %s (%d bytes), flows %s (%d bytes)", shortHash(d.PolicyDigest), len(d.PolicySource), shortHash(d.FlowsDigest), len(d.FlowsSource))
	case *events.Alerted:
		return fmt.Sprintf("!!! ALERT %s: %s", strings.ToUpper(d.Alert), d.Reason)
	case *events.Reviewed:
		if d.Denied() {
			return fmt.Sprintf("break-glass use DENIED on review by %s %q", strings.Join(refIDs(d.By), ", "), d.Reason)
		}
		return "break-glass use reviewed by " + strings.Join(refIDs(d.Approvers), ", ")
	case *events.Escalated:
		return fmt.Sprintf("flow %s stage %d: adds %s", d.Flow, d.Stage+1, strings.Join(append(append([]string{}, d.Groups...), d.Principals...), ", "))
	case *events.Redeemed:
		if d.Outcome == events.RedemptionRefused {
			return fmt.Sprintf("REFUSED at %s: %s", d.Service, d.Code)
		}
		return fmt.Sprintf("grant %s used at %s", shortHash(d.TokenHash), d.Service)
	case *events.Revoke:
		return fmt.Sprintf("asks to revoke: %q", d.Reason)
	case *events.Revoked:
		return fmt.Sprintf("by %s: %q", d.By.ID(), d.Reason)
	case *events.Lock:
		verb := "lock"
		if d.Unlock {
			verb = "unlock"
		}
		return fmt.Sprintf("asks to %s %s %s: %q", verb, d.Target.Type, d.Target.Name, d.Reason)
	case *events.Locked:
		verb := "LOCKED"
		if d.Unlock {
			verb = "unlocked"
		}
		return fmt.Sprintf("%s %s %s by %s: %q", verb, d.Target.Type, d.Target.Name, d.By.ID(), d.Reason)
	case *events.State:
		return "asks to " + stateSummary(d.Op, d.Path, d.Attrs, d.Merge, d.Reason)
	case *events.Stated:
		return "STATE " + stateSummary(d.Op, d.Path, d.Attrs, false, d.Reason) + " by " + d.By.ID()
	}
	return ""
}

// stateSummary says what a state change does, in one line.
func stateSummary(op, path string, attrs map[string]string, merge bool, reason string) string {
	what := "the domain's own state"
	if path != "" {
		what = "the state of " + path
	}
	s := "delete " + what
	if op == events.StateSet {
		b, _ := json.Marshal(attrs)
		s = "set " + what + " to " + string(b)
		if merge {
			s = "add " + string(b) + " to " + what
		}
	}
	if reason != "" {
		s += fmt.Sprintf(": %q", reason)
	}
	return s
}
