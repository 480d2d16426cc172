package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
)

// exitFindings: a verification found the trail does not hold.
const exitFindings = 7

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", "audit verify [--domain D] [--since T] [--until T] [--witness DOMAIN]... [--json] [--strict] | audit verify --bundle FILE", stderr)
	// Exit 7 is for a trail that does not hold: messages missing, altered,
	// reordered, forged; gone from the stream's start with nothing to
	// account for it. Noise (junk the pipeline refused on the record, a
	// request still in flight) is a warning: exit 0 unless --strict.
	var c conn
	c.register(fs, "the .creds to connect with (default: the Writ directory's read-only creds/reader.creds; the server refuses connections without credentials)")
	domain := fs.String("domain", "", "the domain whose stream to verify (default: the configuration's)")
	since := fs.String("since", "", "check in full only requests made from this time (RFC 3339, or a duration ago such as 24h)")
	until := fs.String("until", "", "… and before this time")
	var witnesses multiFlag
	fs.Var(&witnesses, "witness", "a domain that witnesses this one's checkpoints: the stream must still hold each it recorded (repeatable)")
	asJSON := fs.Bool("json", false, "the report as JSON")
	strict := fs.Bool("strict", false, "warnings fail too (refused junk, input in flight, a start accounted for by a checkpoint under a max age)")
	bundle := fs.String("bundle", "", "verify an evidence bundle file offline (from 'writ audit export --bundle'), with --trust or the Writ directory's trust bundle if there is one, else the keys it carries")
	settle := fs.Duration("settle", 30*time.Second, "input this recent (before the last message) may still be in flight: a warning, not an error")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var rep *audit.Report
	var err error
	if *bundle != "" {
		rep, err = verifyBundleFile(*bundle, c)
	} else {
		rep, err = verifyLive(ctx, c, *domain, *since, *until, witnesses, *settle, stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, rep, *strict)
	}
	if !rep.OK() || (*strict && rep.Warnings > 0) {
		return &exitError{code: exitFindings, err: fmt.Errorf("the trail does not verify: %d errors, %d warnings", rep.Errors, rep.Warnings)}
	}
	return nil
}

func verifyLive(ctx context.Context, c conn, domain, since, until string, witnesses []string, settle time.Duration, stderr io.Writer) (*audit.Report, error) {
	o := audit.Options{Settle: settle}
	var err error
	now := time.Now()
	if o.Since, err = parseWhen(since, now); err != nil {
		return nil, usageError("--since: %v", err)
	}
	if o.Until, err = parseWhen(until, now); err != nil {
		return nil, usageError("--until: %v", err)
	}
	nc, cl, err := c.open()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if domain == "" {
		domain = cl.Home()
	}
	if domain == "" {
		return nil, usageError("--domain is required without a Writ directory")
	}
	o.Bundle, o.MaxBody = cl.Checker().Bundle, cl.Checker().MaxBody
	for _, w := range witnesses {
		heads, err := audit.WitnessHeads(ctx, cl.Reader(w), cl.Checker(), w, domain)
		if err != nil {
			return nil, fmt.Errorf("read %s's witness records: %w", w, err)
		}
		if len(heads) == 0 {
			fmt.Fprintf(stderr, "warning: %s has recorded no checkpoint of %s\n", w, domain)
		}
		o.Heads = append(o.Heads, heads...)
	}
	return audit.VerifyStream(ctx, cl.Reader(domain), o, nil)
}

func verifyBundleFile(path string, c conn) (*audit.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e audit.Evidence
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s is not an evidence bundle: %w", path, err)
	}
	trust, err := c.trustBundle()
	if err != nil {
		return nil, err
	}
	return audit.VerifyEvidence(&e, trust), nil
}

// trustBundle is --trust, else the Writ directory's bundle, else nil.
func (c conn) trustBundle() (*identity.Bundle, error) {
	path := c.trust
	if path == "" {
		if cfg, err := config.Load(c.dir); err == nil {
			path = cfg.Path(cfg.Trust)
		}
	}
	if path == "" {
		return nil, nil
	}
	return identity.LoadBundle(path)
}

// printReport prints a report; with strict, warnings fail too.
func printReport(w io.Writer, rep *audit.Report, strict bool) {
	fmt.Fprintf(w, "messages   %d (#%d to #%d)\n", rep.Messages, rep.FirstSeq, rep.LastSeq)
	if x := rep.Stream; x != nil {
		fmt.Fprintf(w, "stream     says it holds %d, first #%d, last #%d", x.Msgs, x.FirstSeq, x.LastSeq)
		if x.MaxAge > 0 {
			fmt.Fprintf(w, ", max age %s", x.MaxAge)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "requests   %d checked in full, %d decisions re-evaluated\n", rep.Requests, rep.Reevaluated)
	fmt.Fprintf(w, "checkpoints %d matched; tree of %d messages, root %s\n", rep.Checkpoints, rep.TreeSize, rep.Root)
	for _, f := range rep.Findings {
		fmt.Fprintln(w, f)
	}
	if rep.Dropped > 0 {
		fmt.Fprintf(w, "… and %d more findings\n", rep.Dropped)
	}
	if rep.OK() && (!strict || rep.Warnings == 0) {
		fmt.Fprintf(w, "OK: everything holds (%d warnings)\n", rep.Warnings)
		return
	}
	fmt.Fprintf(w, "FAILED: %d errors, %d warnings\n", rep.Errors, rep.Warnings)
}

func runAuditCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit checkpoint", "audit checkpoint [--domain D]", stderr)
	var c conn
	c.register(fs, "the .creds to connect with (default: the Writ directory's read-only creds/reader.creds; the server refuses connections without credentials)")
	domain := fs.String("domain", "", "the domain whose auditor to ask (default: the configuration's)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	nc, cl, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	if *domain == "" {
		*domain = cl.Home()
	}
	made, err := audit.AskCheckpoint(ctx, nc, *domain)
	if err != nil {
		return auditorError(err, "does its writ serve run the auditor? its writ.json needs an audit section", "")
	}
	verb := "made"
	if !made.New {
		verb = "unchanged since the last one,"
	}
	cp := made.Checkpoint
	fmt.Fprintf(stdout, "checkpoint %s at #%d: %d messages (#%d to #%d), root %s\n", verb, made.Seq, cp.TreeSize, cp.FirstSeq, cp.LastSeq, cp.Root)
	return nil
}
