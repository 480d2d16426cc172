package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

// exportRecord is one event as exported for a SIEM: what it is, who
// signed it, and whether it verified (signature by a key entitled to its
// kind in its domain, schema, identity, chain, and legal in its request's
// history), with the reason when it did not.
type exportRecord struct {
	Seq       uint64          `json:"seq"`
	Stored    time.Time       `json:"stored"`
	Time      time.Time       `json:"time"`
	Domain    string          `json:"domain"`
	RequestID string          `json:"request_id"`
	Kind      string          `json:"kind"`
	Signer    string          `json:"signer,omitempty"`
	Role      string          `json:"role,omitempty"`
	Principal string          `json:"principal,omitempty"`
	Status    string          `json:"status"` // the request's status after this event
	Verified  bool            `json:"verified"`
	Problem   string          `json:"problem,omitempty"`
	Digest    string          `json:"digest"`
	Event     json.RawMessage `json:"event,omitempty"`
}

var exportColumns = []string{"seq", "stored", "time", "domain", "request_id", "kind", "signer", "role", "principal", "status", "verified", "problem", "digest"}

func (e exportRecord) row() []string {
	return []string{
		strconv.FormatUint(e.Seq, 10), e.Stored.UTC().Format(time.RFC3339Nano), e.Time.UTC().Format(time.RFC3339Nano),
		e.Domain, e.RequestID, e.Kind, e.Signer, e.Role, e.Principal, e.Status, strconv.FormatBool(e.Verified), e.Problem, e.Digest,
	}
}

func runAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit export", "audit export [--format jsonl|csv] [--domain D] [--request ID] | audit export --bundle --request ID", stderr)
	var c conn
	c.register(fs, "the .creds to connect with (default: the Writ directory's read-only creds/reader.creds; the server refuses connections without credentials)")
	format := fs.String("format", "jsonl", "jsonl (one event a line, with the event itself) or csv")
	domain := fs.String("domain", "", "only this domain's requests")
	id := fs.String("request", "", "only this request")
	bundle := fs.Bool("bundle", false, "an evidence bundle of --request instead: its events, the policy version, inclusion proofs in a checkpoint, the keys, the auditor's attestation; check it anywhere with 'writ audit verify --bundle FILE'")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *bundle {
		if *id == "" {
			return usageError("--bundle needs --request ID")
		}
		return exportBundle(ctx, c, *domain, *id, stdout)
	}
	if *format != "jsonl" && *format != "csv" {
		return usageError("--format must be jsonl or csv")
	}
	nc, cl, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	var cw *csv.Writer
	enc := json.NewEncoder(stdout)
	if *format == "csv" {
		cw = csv.NewWriter(stdout)
		if err := cw.Write(exportColumns); err != nil {
			return err
		}
		defer cw.Flush()
	}
	write := func(r *client.Request) error {
		for _, rec := range exportRecords(r) {
			if cw != nil {
				if err := cw.Write(rec.row()); err != nil {
					return err
				}
				continue
			}
			if err := enc.Encode(rec); err != nil {
				return err
			}
		}
		return nil
	}
	if *id != "" {
		r, err := lookup(ctx, cl, *domain, *id)
		if err != nil {
			return err
		}
		return write(r)
	}
	return cl.Requests(ctx, *domain, write)
}

// exportRecords folds a request's history event by event, so that each
// record carries the status it left the request in. The history may be a
// lock's, a state change's or another series': each is judged by its own
// fold, and has no status.
func exportRecords(r *client.Request) []exportRecord {
	out := make([]exportRecord, 0, len(r.Records))
	var st series.Any
	for _, rec := range r.Records {
		next, err := st.Apply(rec)
		st = next
		e := exportRecord{
			Seq: rec.Seq, Stored: rec.Time, Time: rec.Envelope.Time, Domain: rec.Domain, RequestID: rec.RequestID,
			Kind: rec.Kind.String(), Signer: rec.Signer, Role: string(rec.Role), Status: st.Request.Status.String(),
			Verified: err == nil, Digest: rec.Digest,
		}
		if rec.Principal != nil {
			e.Principal = rec.Principal.ID()
		}
		if err != nil {
			e.Problem = request.Code(err) + ": " + err.Error()
		}
		if json.Valid(rec.Body) {
			e.Event = rec.Body
		}
		out = append(out, e)
	}
	return out
}

// exportBundle writes the evidence bundle of one request: it asks the
// domain's auditor for a checkpoint covering the request, collects the
// evidence, and has the auditor attest it.
func exportBundle(ctx context.Context, c conn, domain, id string, stdout io.Writer) error {
	nc, cl, err := c.open()
	if err != nil {
		return err
	}
	defer nc.Close()
	if domain == "" {
		if domain, err = cl.Find(ctx, id); err != nil {
			return err
		}
	}
	e, err := audit.ExportEvidence(ctx, nc, cl.Reader(domain), cl.Checker().Bundle, domain, id)
	if err != nil {
		return auditorError(err, "does its writ serve run the auditor?", "the auditor refused: ")
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(e)
}

// auditorError is an ask of an auditor that failed, in the CLI's words:
// no answer, with hint; a refusal, after refused.
func auditorError(err error, hint, refused string) error {
	var ae *audit.AskError
	switch {
	case !errors.As(err, &ae):
		return err
	case errors.Is(ae.Kind, audit.ErrNoAuditor):
		return fmt.Errorf("no auditor answered for %s (%s): %w", ae.Domain, hint, ae.Err)
	}
	return fmt.Errorf("%s%w", refused, ae.Err)
}
