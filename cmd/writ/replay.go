package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

const replayHelp = `Usage: writ audit replay [filters] [--format timeline|table|jsonl]

Each request's history as the audit stream holds it, oldest request first,
every event checked (signature, identity, chain, legal in its history).
Histories are read a few at a time, never all at once: any size streams.

Filters (every one given must hold):
  --since T, --until T  made at or after T, and before T: an RFC 3339 time
                        (2026-01-02T15:04:05Z), a date (2026-01-02, local
                        midnight) or a duration ago (90m, 2h). With --since,
                        what the stream stored before T is not read at all.
  --domain D            D's requests (default: every domain in the stream)
  --requester D/NAME    made by D/NAME (a bare NAME: in any domain)
  --approver D/NAME     D/NAME's vote is on record, counted or refused
  --action A            for action A
  --resource P          resource P exactly; P/* for everything under P; or a
                        glob (path.Match: * within one segment, ?, [...])
  --outcome S[,S...]    where it stands: granted, denied, rejected, expired,
                        revoked, redeemed, pending, requested, allowed, approved
  --request ID          this request only

Formats (--format):
  timeline  each event: stream sequence, time, offset from the first event,
            (time since the previous event), kind, who, what (the default)
  table     a line a request: id, requested at, requester, action, resource,
            outcome, duration from first to last event, approvers ((deny)
            marks a denial)
  jsonl     a JSON object per event, with the event itself (also --json)

On a terminal, a replay of more than 2,000 messages shows a progress bar on
standard error (messages, rate, time left); never when standard error is
not a terminal.

Flags:
`

func runAuditReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit replay", "", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayHelp)
		printFlags(fs.Output(), fs)
	}
	var c conn
	c.register(fs, "the .creds to connect with (default: the Writ directory's read-only creds/reader.creds; the server refuses connections without credentials)")
	var fl replayFlags
	fs.StringVar(&fl.since, "since", "", "requests made at or after this time (RFC 3339, date, or duration ago)")
	fs.StringVar(&fl.until, "until", "", "requests made before this time (RFC 3339, date, or duration ago)")
	fs.StringVar(&fl.requester, "requester", "", "requests made by this principal (domain/name, or name)")
	fs.StringVar(&fl.approver, "approver", "", "requests this principal voted on (domain/name, or name)")
	fs.StringVar(&fl.action, "action", "", "requests for this action")
	fs.StringVar(&fl.resource, "resource", "", "requests for this resource (exact, prefix/*, or glob)")
	fs.StringVar(&fl.outcome, "outcome", "", "requests whose status is one of these (comma-separated)")
	id := fs.String("request", "", "only this request")
	domain := fs.String("domain", "", "only this domain's requests")
	format := fs.String("format", "timeline", "timeline, table or jsonl")
	asJSON := fs.Bool("json", false, "the same as --format jsonl")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *asJSON {
		if flagSet(fs, "format") && *format != "jsonl" {
			return usageError("--json is --format jsonl: give one or the other")
		}
		*format = "jsonl"
	}
	f, err := fl.filter(time.Now())
	if err != nil {
		return usageError("%v", err)
	}
	bar := newProgressBar(stderr, isTerminal(stderr), time.Now)
	out := bufio.NewWriter(bar.above(stdout))
	show, err := replayFormat(*format, out)
	if err != nil {
		return err
	}
	nc, cl, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	live := isTerminal(stdout)
	n, err := replayRequests(ctx, cl, *domain, *id, f, bar, func(r *client.Request) error {
		if err := show(r); err != nil {
			return err
		}
		if live {
			return out.Flush() // as it comes, on a terminal
		}
		return nil
	})
	bar.clear()
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err == nil && n == 0 && *format != "jsonl" {
		switch {
		case *id != "":
			fmt.Fprintf(stderr, "Request %s does not match the filters.\n", *id)
		case f.all() && *domain == "":
			fmt.Fprintln(stderr, "The audit stream holds no requests yet.")
		default:
			fmt.Fprintln(stderr, "No request matches.")
		}
	}
	return err
}

// replayRequests shows the requests f keeps: request id alone, or those of
// domain ("" for all), and returns how many it showed.
func replayRequests(ctx context.Context, cl *client.Client, domain, id string, f replayFilter, bar *progressBar, show func(*client.Request) error) (int, error) {
	n := 0
	keep := func(r *client.Request) error {
		if !f.keeps(r) {
			return nil
		}
		n++
		return show(r)
	}
	if id != "" {
		r, err := lookup(ctx, cl, domain, id)
		if err == nil {
			err = keep(r)
		}
		return n, err
	}
	err := cl.ScanRequests(ctx, domain, client.ScanOptions{Since: f.since, Keep: f.early, Progress: bar.update}, keep)
	return n, err
}

// flagSet reports whether the command line gave the flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// replayFormat returns what shows one request's history in a format.
func replayFormat(format string, w io.Writer) (func(*client.Request) error, error) {
	switch format {
	case "timeline":
		return func(r *client.Request) error { replayTimeline(w, r); return nil }, nil
	case "table":
		header := false
		return func(r *client.Request) error {
			if !header {
				header = true
				fmt.Fprintf(w, tableRow, "ID", "REQUESTED", "REQUESTER", "ACTION", "RESOURCE", "OUTCOME", "DURATION", "APPROVERS")
			}
			replayTableRow(w, r)
			return nil
		}, nil
	case "jsonl":
		return func(r *client.Request) error { return replayJSON(w, r) }, nil
	}
	return nil, usageError("--format must be timeline, table or jsonl")
}

// eventTime is when an event says it happened, or else when the stream
// stored it.
func eventTime(rec events.Record) time.Time {
	if !rec.Envelope.Time.IsZero() {
		return rec.Envelope.Time
	}
	return rec.Time
}

// elapsed is the time from a history's first event to its last.
func elapsed(r *client.Request) time.Duration {
	if len(r.Records) == 0 {
		return 0
	}
	return eventTime(r.Records[len(r.Records)-1]).Sub(eventTime(r.Records[0]))
}

// span writes a duration to the millisecond under a minute, to the second
// above; signed when asked.
func span(d time.Duration, signed bool) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	} else if signed {
		sign = "+"
	}
	if d < time.Minute {
		return sign + d.Round(time.Millisecond).String()
	}
	return sign + d.Round(time.Second).String()
}

func replayTimeline(w io.Writer, r *client.Request) {
	s := r.State
	head := fmt.Sprintf("request %s in %s", s.ID, s.Domain)
	if at := madeAt(r); !at.IsZero() {
		head += ", " + at.Local().Format(time.DateTime)
	}
	if s.Request != nil {
		head += fmt.Sprintf(": %s wants %s on %s", s.Requester.ID(), s.Request.Action, s.Request.Resource)
	}
	status := strings.ToUpper(s.Status.String())
	if s.Evaluation != nil && s.Evaluation.BreakGlass {
		status += "  !!! BREAK-GLASS"
		switch {
		case s.ReviewDenied():
			status += " (REVIEW DENIED)"
		case s.Review != nil:
			status += " (reviewed)"
		case s.ReviewOverdue:
			status += " (REVIEW OVERDUE)"
		default:
			status += " (review pending)"
		}
	}
	if len(r.Records) > 1 {
		status += " after " + span(elapsed(r), false)
	}
	fmt.Fprintf(w, "%s  → %s\n", head, status)
	var start, prev time.Time
	for i, rec := range r.Records {
		at := eventTime(rec)
		offset, step := "", ""
		if i == 0 {
			start = at
		} else {
			offset, step = span(at.Sub(start), true), "("+span(at.Sub(prev), true)+")"
		}
		prev = at
		by := string(rec.Role)
		if rec.Principal != nil {
			by = rec.Principal.ID()
		}
		if by == "" {
			by = "?"
		}
		fmt.Fprintf(w, "  #%-6d %s %-9s %-11s %-10s %-22s %s\n", rec.Seq, at.Local().Format("15:04:05.000"), offset, step, rec.Kind, by, summary(rec))
		if err := problem(r, rec); err != nil {
			fmt.Fprintf(w, "           !! not counted: %s: %v\n", request.Code(err), err)
		}
	}
}

const tableRow = "%-36s  %-19s  %-20s  %-14s  %-24s  %-9s  %9s  %s\n"

func replayTableRow(w io.Writer, r *client.Request) {
	s := r.State
	requested, who, action, resource := "-", "-", "-", "-"
	if at := madeAt(r); !at.IsZero() {
		requested = at.Local().Format(time.DateTime)
	}
	if s.Request != nil {
		who, action, resource = s.Requester.ID(), s.Request.Action, s.Request.Resource
	}
	var votes []string
	for _, v := range s.Votes {
		if v.Approve {
			votes = append(votes, v.Voter.ID())
		} else {
			votes = append(votes, v.Voter.ID()+"(deny)")
		}
	}
	approvers := strings.Join(votes, ",")
	if approvers == "" {
		approvers = "-"
	}
	if s.Evaluation != nil && s.Evaluation.BreakGlass {
		approvers += "  !!! BREAK-GLASS"
	}
	fmt.Fprintf(w, tableRow, s.ID, requested, who, action, resource, s.Status, span(elapsed(r), false), approvers)
}
