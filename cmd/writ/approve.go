package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

func runApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return vote(ctx, "approve", true, args, stdout, stderr)
}

func runDeny(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return vote(ctx, "deny", false, args, stdout, stderr)
}

func vote(ctx context.Context, name string, approve bool, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(name, name+" REQUEST-ID --creds FILE [--domain D] [--reason TEXT]", stderr)
	var c conn
	c.register(fs, "your .creds file (required): the approver's identity")
	reason := fs.String("reason", "", "why; required to deny")
	domain := fs.String("domain", "", "the request's domain (default: found by id among the domains this setup reaches)")
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
	r, err := locate(ctx, cl, *domain, id)
	if err == nil {
		// Right after the request, the pipeline may not have evaluated
		// it yet: wait a moment for that.
		r, err = cl.AwaitEvaluation(ctx, r)
	}
	if err != nil {
		return err
	}
	if r.State.Status == request.StatusRequested {
		return fmt.Errorf("cannot %s %s: the pipeline has not evaluated it after %s; is 'writ serve' running?", name, id, client.EvaluationWait)
	}
	// Say no before publishing when the outcome is certain; the approval
	// consumer checks again and has the last word.
	if err := r.State.CanVote(who.Principal); err != nil {
		return fmt.Errorf("cannot %s %s: %w", name, id, err)
	}
	msg, err := submitVote(ctx, cl, who, r.State.Domain, id, "", client.Vote{Approve: approve, Reason: *reason})
	if err != nil {
		return fmt.Errorf("cannot %s %s: %w", name, id, err)
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// voteAnswerWait bounds the wait for the pipeline's answer to a vote, which
// takes milliseconds while the approval component runs.
const voteAnswerWait = 10 * time.Second

// errDigestChanged refuses a vote on a request other than the one shown.
var errDigestChanged = errors.New("the request is not the one you were shown")

// submitVote casts who's vote on a request and waits briefly for the
// pipeline's answer, which it describes. A non-empty digest is the request
// digest the approver was shown: the vote is cast only on that request.
func submitVote(ctx context.Context, cl *client.Client, who *identity.Identity, domain, id, digest string, v client.Vote) (string, error) {
	if digest != "" {
		r, err := cl.Load(ctx, domain, id)
		if err != nil {
			return "", err
		}
		if r.State.RequestDigest != digest {
			return "", fmt.Errorf("%w: digest %s, shown %s", errDigestChanged, r.State.RequestDigest, digest)
		}
		if err := r.State.CanVote(who.Principal); err != nil {
			return "", err
		}
	}
	v.Digest = digest // the vote binds to what was shown, by construction
	seq, err := cl.Vote(ctx, who, domain, id, v)
	if errors.Is(err, client.ErrDigestChanged) {
		return "", fmt.Errorf("%w: %v", errDigestChanged, err)
	}
	if err != nil {
		return "", err
	}
	// The pipeline answers every vote (counted, refused, or the decision it
	// made) as it handles it: wait for that answer, not for a timer.
	wctx, cancel := context.WithTimeout(ctx, voteAnswerWait)
	defer cancel()
	r, err := cl.AwaitAnswer(wctx, domain, id, seq)
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if r == nil || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("vote on %s in %s recorded at #%d; the pipeline has not answered it within %s (is writ serve running in %s?): follow it with writ audit replay --request %s", id, domain, seq, voteAnswerWait, domain, id), nil
	}
	if err != nil {
		return "", err
	}
	s := r.State
	past, name := "denied", "deny"
	if v.Approve {
		past, name = "approved", "approve"
	}
	if code := s.Answered[seq]; code != "" {
		return "", fmt.Errorf("your %s vote was refused: %s", name, code)
	}
	if s.Collecting() {
		what := "still pending"
		if s.ReviewOpen() {
			what = "the review is still open"
		}
		return fmt.Sprintf("%s %s in %s; %s: %s", past, id, domain, what, flowSummary(s)), nil
	}
	if s.Review != nil {
		return fmt.Sprintf("%s %s in %s; the break-glass review is %s", past, id, domain, reviewSummary(viewOf(s, nil))), nil
	}
	return fmt.Sprintf("%s %s in %s; the request is now %s", past, id, domain, s.Status), nil
}
