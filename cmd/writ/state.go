package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/state"
)

const stateSynopsis = "state set|get|delete DOMAIN[/PATH] [key=value...] [--merge] [--dir D] [--server URL]"

// runState reads and writes the resource-state bucket that policies see as
// resource.state (DOMAIN/PATH) and context.domain_state (DOMAIN alone).
func runState(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("state", stateSynopsis, stderr)
	var c conn
	c.register(fs, "a .creds file to connect with (optional)")
	merge := fs.Bool("merge", false, "set: keep the attributes not named (default: replace them all)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError("state takes set, get or delete and a target, e.g. state set acme/prod/db on_call=alice, or state set acme incident_active=true for the domain")
	}
	verb, target, rest := pos[0], pos[1], pos[2:]
	domain, path, slash := strings.Cut(target, "/")
	if slash && path == "" {
		return usageError("%q names no path: DOMAIN alone names the domain's own state", target)
	}
	if _, err := state.Key(domain, path); err != nil {
		return usageError("%q is not DOMAIN or DOMAIN/PATH: %v", target, err)
	}
	var attrs map[string]string
	switch verb {
	case "set":
		if len(rest) == 0 {
			return usageError("state set needs at least one key=value (state delete removes an entry)")
		}
		attrs = map[string]string{}
		for _, kv := range rest {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usageError("%q is not key=value", kv)
			}
			attrs[k] = v
		}
	case "get", "delete":
		if len(rest) > 0 {
			return usageError("state %s takes only a target", verb)
		}
		if *merge {
			return usageError("--merge only goes with set")
		}
	default:
		return usageError("unknown state command %q: set, get or delete", verb)
	}

	nc, _, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	switch verb {
	case "set":
		if *merge {
			old, err := state.Get(ctx, js, domain, path)
			if err != nil {
				return err
			}
			maps.Copy(old, attrs)
			attrs = old
		}
		if err := state.Set(ctx, js, domain, path, attrs); err != nil {
			return err
		}
		return printState(stdout, target, attrs)
	case "get":
		attrs, err := state.Get(ctx, js, domain, path)
		if err != nil {
			return err
		}
		return printState(stdout, target, attrs)
	}
	if err := state.Delete(ctx, js, domain, path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: no state\n", target)
	return nil
}

func printState(w io.Writer, target string, attrs map[string]string) error {
	b, err := json.Marshal(attrs) // keys sorted
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s: %s\n", target, b)
	return err
}
