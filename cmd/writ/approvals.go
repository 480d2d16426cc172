package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/request"
)

func runApprovals(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "watch" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stderr, "Usage: writ approvals watch --creds FILE [--once] [--domain D]")
			return nil
		}
		return usageError("usage: writ approvals watch --creds FILE [--once]")
	}
	fs := newFlags("approvals watch", "approvals watch --creds FILE [--once] [--domain D]", stderr)
	var c conn
	c.register(fs, "your .creds file (required): the approver's identity")
	once := fs.Bool("once", false, "print the pending requests you may answer, then exit")
	domain := fs.String("domain", "", "only this domain's requests (default: all)")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()

	pending, err := cl.Pending(ctx, *domain, who.Principal)
	if err != nil {
		return err
	}
	shown := map[string]bool{}
	if len(pending) == 0 {
		fmt.Fprintf(stdout, "No pending requests for %s.\n", who.Principal.ID())
	}
	for _, r := range pending {
		fmt.Fprintln(stdout, pendingLine(r.State, time.Now()))
		shown[r.State.ID] = true
	}
	if *once {
		return nil
	}
	fmt.Fprintf(stdout, "Watching for requests %s may answer (Ctrl-C stops). Answer with: writ approve ID --creds %s\n", who.Principal.ID(), c.creds)
	return cl.Watch(ctx, *domain, func(r *client.Request) {
		s := r.State
		eligible := s.CanVote(who.Principal) == nil
		switch {
		case eligible && !shown[s.ID]:
			shown[s.ID] = true
			fmt.Fprintln(stdout, pendingLine(s, time.Now()))
		case shown[s.ID] && !s.Status.IsPending():
			delete(shown, s.ID)
			fmt.Fprintf(stdout, "%-8s %s  %s\n", strings.ToUpper(s.Status.String()), s.ID, describeOutcome(s).Reason)
		case shown[s.ID] && !eligible:
			delete(shown, s.ID)
			fmt.Fprintf(stdout, "ANSWERED %s  %s\n", s.ID, flowSummary(s))
		}
	})
}

func pendingLine(s request.State, now time.Time) string {
	req := s.Request
	line := fmt.Sprintf("PENDING  %s  %s wants %s on %s/%s  urgency=%s  %s  expires in %s",
		s.ID, s.Requester.ID(), req.Action, s.Domain, req.Resource, req.Urgency,
		flowSummary(s), s.Evaluation.ExpiresAt.Sub(now).Round(time.Second))
	if req.Reason != "" {
		line += fmt.Sprintf("  reason=%q", req.Reason)
	}
	if req.Ticket != "" {
		line += "  ticket=" + req.Ticket
	}
	if len(req.Params) > 0 {
		line += fmt.Sprintf("  params=%v", req.Params)
	}
	return line + "  digest=" + shortHash(s.RequestDigest)
}
