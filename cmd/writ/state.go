package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/store"
)

const stateSynopsis = "state set|delete DOMAIN[/PATH] [key=value...] --creds FILE [--merge] [--reason TEXT] | state get DOMAIN[/PATH]"

// runState changes (as a signed ask the pipeline decides and records) and
// reads the resource state that policies see as resource.state
// (DOMAIN/PATH) and context.domain_state (DOMAIN alone).
func runState(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("state", stateSynopsis, stderr)
	var c conn
	c.register(fs, "your .creds file: who sets the state (required for set and delete)")
	merge := fs.Bool("merge", false, "set: keep the attributes not named (default: replace them all)")
	reason := fs.String("reason", "", "set, delete: why, for the audit trail (optional)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError("state takes set, get or delete and a target, e.g. state set acme/prod/db on_call=alice --creds FILE, or state set acme incident_active=true --creds FILE for the domain")
	}
	verb, target, rest := pos[0], pos[1], pos[2:]
	domain, path, slash := strings.Cut(target, "/")
	if slash && path == "" {
		return usageError("%q names no path: DOMAIN alone names the domain's own state", target)
	}
	if _, err := state.Key(domain, path); err != nil {
		return usageError("%q is not DOMAIN or DOMAIN/PATH: %v", target, err)
	}
	change := client.StateChange{Path: path, Merge: *merge, Reason: *reason}
	switch verb {
	case "set":
		if len(rest) == 0 {
			return usageError("state set needs at least one key=value (state delete removes an entry)")
		}
		change.Attrs = map[string]string{}
		for _, kv := range rest {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usageError("%q is not key=value", kv)
			}
			change.Attrs[k] = v
		}
		if err := state.CheckAttrs(change.Attrs); err != nil {
			return usageError("%v", err)
		}
	case "get", "delete":
		if len(rest) > 0 {
			return usageError("state %s takes only a target", verb)
		}
		if *merge {
			return usageError("--merge only goes with set")
		}
		if verb == "get" && *reason != "" {
			return usageError("--reason goes with set and delete")
		}
		change.Delete = verb == "delete"
	default:
		return usageError("unknown state command %q: set, get or delete", verb)
	}
	if *reason != "" && strings.TrimSpace(*reason) == "" {
		return usageError("--reason is blank")
	}

	if verb == "get" {
		nc, _, err := c.open()
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		attrs, err := state.Get(ctx, js, domain, path)
		if err != nil {
			return err
		}
		return printState(stdout, target, attrs)
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()
	id, err := cl.SetState(ctx, who, domain, change)
	if err != nil {
		return fmt.Errorf("cannot ask to %s the state of %s: %w", verb, target, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := cl.AwaitAsk(wctx, domain, id)
	if r == nil || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("state %s %s asked (id %s); its outcome is not known yet: %v", verb, target, id, err)
	}
	done := r.Series.StateChange().Done
	if why, refused := askRefused(r); refused && done == nil {
		return fmt.Errorf("state %s %s refused (id %s in %s): %s; ask someone the policies let set it (Action::\"set-state\" on %s)",
			verb, target, id, domain, why, cedarResource(domain, path))
	}
	if done == nil {
		return fmt.Errorf("state %s %s asked (id %s); no answer within 10s: is 'writ serve' running its approval component?", verb, target, id)
	}
	// Recorded; the approval component applies it to the bucket next.
	// Wait for that, so that what runs after this command sees it.
	if err := awaitApplied(wctx, nc, domain, path, done); err != nil {
		fmt.Fprintf(stderr, "writ: recorded (id %s), not yet seen in the %s bucket: %v\n", id, state.Bucket, err)
	}
	fmt.Fprintf(stderr, "writ: recorded in the trail as %s (writ audit export --domain %s --request %s)\n", id, domain, id)
	if done.Op == events.StateDelete {
		fmt.Fprintf(stdout, "%s: no state\n", target)
		return nil
	}
	return printState(stdout, target, done.Attrs)
}

// askRefused says whether the pipeline refused the ask that opens r's
// history (not some other message published under its id), and why.
func askRefused(r *client.Request) (string, bool) {
	if len(r.Records) == 0 {
		return "", false
	}
	ask := r.Records[0].Seq
	code, refused := r.State.Answered[ask]
	if !refused {
		return "", false
	}
	for _, rec := range r.Records {
		if d, ok := rec.Data.(*events.Refused); ok && rec.Valid() && d.RefSeq == ask && d.Reason != "" {
			return d.Reason, true // in words; the code is for programs
		}
	}
	return code, true
}

func cedarResource(domain, path string) string {
	if path == "" {
		return `Resource::"` + domain + `"`
	}
	return `Resource::"` + domain + "/" + path + `"`
}

// awaitApplied waits until the bucket holds what a stated event says.
func awaitApplied(ctx context.Context, nc *nats.Conn, domain, path string, done *events.Stated) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var want []byte
	if done.Op == events.StateSet {
		if want, err = state.Encode(done.Attrs); err != nil {
			return err
		}
	}
	key, err := state.Key(domain, path)
	if err != nil {
		return err
	}
	// The approval component applies what it recorded moments later, and
	// a replica of the bucket may be behind: read again, by the retry rule.
	return store.Retry(ctx, func(ctx context.Context) error {
		kv, err := js.KeyValue(ctx, state.Bucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && want == nil:
			return nil
		case err == nil && want != nil && bytes.Equal(e.Value(), want):
			return nil
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		return fmt.Errorf("%w: %s does not hold the change recorded yet", store.ErrBehind, key)
	})
}

func printState(w io.Writer, target string, attrs map[string]string) error {
	b, err := json.Marshal(attrs) // keys sorted
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s: %s\n", target, b)
	return err
}
