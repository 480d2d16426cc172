package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-dev/writ/request"
)

func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", "revoke REQUEST-ID --creds FILE --reason TEXT [--domain D]", stderr)
	var c conn
	c.register(fs, "your .creds file (required): who revokes")
	reason := fs.String("reason", "", "why (required)")
	domain := fs.String("domain", "", "the request's domain (default: found by id among the domains this setup reaches)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("revoke takes one request id")
	}
	if strings.TrimSpace(*reason) == "" {
		return usageError("revoke needs --reason: the requester and the audit trail should know why")
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()
	id := pos[0]
	found, err := locate(ctx, cl, *domain, id)
	if err != nil {
		return err
	}
	d := found.State.Domain
	seq, err := cl.Revoke(ctx, who, d, id, *reason)
	if err != nil {
		return fmt.Errorf("cannot revoke %s: %w", id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := cl.Wait(wctx, d, id, func(s request.State) bool {
		return s.Answered[seq] != "" || s.Status == request.StatusRevoked
	})
	if r == nil || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("revocation of %s asked at #%d; its outcome is not known yet: %v", id, seq, err)
	}
	if code := r.State.Answered[seq]; code != "" {
		return fmt.Errorf("revocation of %s refused: %s", id, code)
	}
	if r.State.Status != request.StatusRevoked {
		return fmt.Errorf("revocation of %s asked at #%d; no answer within 10s", id, seq)
	}
	fmt.Fprintf(stdout, "revoked %s: %s\n", id, *reason)
	return nil
}
