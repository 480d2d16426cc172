package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/request"
)

func runApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return vote(ctx, "approve", true, args, stdout, stderr)
}

func runDeny(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return vote(ctx, "deny", false, args, stdout, stderr)
}

func vote(ctx context.Context, name string, approve bool, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(name, name+" REQUEST-ID --creds FILE [--reason TEXT]", stderr)
	var c conn
	c.register(fs, "your .creds file (required): the approver's identity")
	reason := fs.String("reason", "", "why; required to deny")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("%s takes one request id", name)
	}
	if !approve && strings.TrimSpace(*reason) == "" {
		return usageError("deny needs --reason: the requester and the audit trail should know why")
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()
	id := pos[0]
	r, err := lookup(ctx, cl, id)
	if err != nil {
		return err
	}
	domain := r.State.Domain
	// Say no before publishing when the outcome is certain; the approval
	// consumer checks again and has the last word.
	if err := r.State.CanVote(who.Principal); err != nil {
		return fmt.Errorf("cannot %s %s: %w", name, id, err)
	}
	seq, err := cl.Vote(ctx, who, domain, id, client.Vote{Approve: approve, Reason: *reason})
	if err != nil {
		if errors.Is(err, client.ErrNotPending) {
			return fmt.Errorf("cannot %s %s: %w", name, id, err)
		}
		return err
	}
	// Wait briefly for the pipeline's answer: a refusal, or a decision. A
	// vote that is simply counted gets no answer, so do not wait long.
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	r, err = cl.Wait(wctx, domain, id, func(s request.State) bool {
		return s.Answered[seq] != "" || !s.Status.IsPending()
	})
	if r == nil {
		fmt.Fprintf(stdout, "vote on %s recorded at #%d; its outcome is not known yet (%v): writ audit replay --request %s\n", id, seq, err, id)
		return nil
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	s := r.State
	past := "denied"
	if approve {
		past = "approved"
	}
	if code := s.Answered[seq]; code != "" {
		return fmt.Errorf("your %s vote on %s was refused: %s", name, id, code)
	}
	if s.Status.IsPending() {
		fmt.Fprintf(stdout, "%s %s; still pending: %s\n", past, id, flowSummary(s))
		return nil
	}
	fmt.Fprintf(stdout, "%s %s; the request is now %s\n", past, id, s.Status)
	return nil
}
