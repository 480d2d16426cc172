package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/notify"
)

// deadLetter is one thing the pipeline gave up on: an input a component
// could not handle (answered in the trail as unprocessable), or a
// notification the notifier could not deliver.
type deadLetter struct {
	Source    string    `json:"source"` // "pipeline" or "notifier"
	Seq       uint64    `json:"seq"`    // in the audit stream, or the dead-letter stream
	At        time.Time `json:"at"`
	Domain    string    `json:"domain"`
	RequestID string    `json:"request_id"`
	What      string    `json:"what"` // the input's kind, or the notification's event kind and target
	Reason    string    `json:"reason"`
}

func runAuditDeadLetter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit deadletter", "audit deadletter [--domain D] [--json]", stderr)
	var c conn
	c.register(fs, "the .creds to connect with (default: the Writ directory's read-only creds/reader.creds; the server refuses connections without credentials)")
	domain := fs.String("domain", "", "only this domain (default: all in the stream)")
	asJSON := fs.Bool("json", false, "JSON lines")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	nc, cl, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	d := *domain
	if d == "" {
		d = "*"
	}
	var out []deadLetter
	for _, k := range []events.Kind{events.KindRejected, events.KindRefused} {
		err := cl.Replay(ctx, events.Prefix+"."+d+".*."+k.String(), func(r events.Record) error {
			code, reason, ref := "", "", ""
			switch x := r.Data.(type) {
			case *events.Rejected:
				code, reason, ref = x.Code, x.Reason, "request"
			case *events.Refused:
				code, reason, ref = x.Code, x.Reason, x.RefKind
			}
			if r.Valid() && code == consumers.CodeUnprocessable {
				out = append(out, deadLetter{Source: "pipeline", Seq: r.Seq, At: r.Time, Domain: r.Domain, RequestID: r.RequestID,
					What: ref + " (" + r.Kind.String() + " as unprocessable)", Reason: reason})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	given, err := notify.DeadLetters(ctx, js, "", d)
	if err != nil {
		return err
	}
	for _, l := range given {
		out = append(out, deadLetter{Source: "notifier", Seq: l.Seq, At: l.At, Domain: l.Domain, RequestID: l.RequestID,
			What: fmt.Sprintf("notification of %s to %s, %d attempts", l.EventKind, l.Target, l.Attempts), Reason: l.LastError})
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, l := range out {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	}
	if len(out) == 0 {
		fmt.Fprintln(stdout, "Nothing was given up on.")
		return nil
	}
	for _, l := range out {
		fmt.Fprintf(stdout, "%-8s #%-7d %s  %s/%s  %s: %s\n", l.Source, l.Seq, l.At.Local().Format(time.DateTime), l.Domain, l.RequestID, l.What, l.Reason)
	}
	return nil
}
