package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/writ-dev/writ/events"
)

func runLock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return lock(ctx, "lock", false, args, stdout, stderr)
}

func runUnlock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return lock(ctx, "unlock", true, args, stdout, stderr)
}

func lock(ctx context.Context, name string, unlock bool, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(name, name+" principal|key|domain NAME --creds FILE --reason TEXT [--domain D]", stderr)
	var c conn
	c.register(fs, "your .creds file (required): who locks")
	reason := fs.String("reason", "", "why (required)")
	domain := fs.String("domain", "", "the domain whose pipeline applies the lock (default: your own)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	types := []string{events.LockPrincipal, events.LockKey, events.LockDomain}
	if len(pos) != 2 || !slices.Contains(types, pos[0]) {
		return usageError("%s takes a target type (%s) and a name, e.g. %s principal acme/carol", name, strings.Join(types, ", "), name)
	}
	if strings.TrimSpace(*reason) == "" {
		return usageError("%s needs --reason", name)
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()
	d := *domain
	if d == "" {
		d = who.Principal.Domain
	}
	id, err := cl.Lock(ctx, who, d, events.LockTarget{Type: pos[0], Name: pos[1]}, unlock, *reason)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := cl.AwaitAsk(wctx, d, id)
	if r == nil || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("%s %s asked (id %s); its outcome is not known yet: %v", name, pos[1], id, err)
	}
	if why, refused := askRefused(r); refused && r.Series.Lock().Done == nil {
		return fmt.Errorf("%s %s %s refused: %s", name, pos[0], pos[1], why)
	}
	if r.Series.Lock().Done == nil {
		return fmt.Errorf("%s %s asked (id %s); no answer within 10s", name, pos[1], id)
	}
	past := "locked"
	if unlock {
		past = "unlocked"
	}
	fmt.Fprintf(stdout, "%s %s %s in %s (id %s): %s\n", past, pos[0], pos[1], d, id, *reason)
	return nil
}
