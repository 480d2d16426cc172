package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/restart"
	"github.com/writ-dev/writ/internal/store"
)

// The auditor's request/reply protocol. A domain's auditor (a component of
// `writ serve`) answers on these subjects; the Ask functions below are its
// client. A reply is JSON: what was asked for, or {"error": "..."}.

// CheckpointSubject is where a checkpoint is asked for on demand (no
// body); the reply is a Made.
func CheckpointSubject(domain string) string { return "writ-audit." + domain + ".checkpoint" }

// AttestSubject is where an evidence bundle (an Evidence) is sent for the
// auditor's attestation; the reply is an Attestation.
func AttestSubject(domain string) string { return "writ-audit." + domain + ".attest" }

// AskTimeout bounds one ask of an auditor: a checkpoint reads the stream
// since the last one.
const AskTimeout = 30 * time.Second

// What an ask of an auditor can come to, besides its answer.
var (
	// ErrNoAuditor: nobody answered (no auditor runs for the domain, or it
	// did not answer in time).
	ErrNoAuditor = errors.New("no auditor answered")
	// ErrRefused: the auditor answered with an error.
	ErrRefused = errors.New("the auditor refused")
)

// AskError is an ask of a domain's auditor that got no answer: Kind is
// ErrNoAuditor or ErrRefused, and Err says why (no responders, a timeout)
// or is what the auditor said. errors.Is matches both.
type AskError struct {
	Domain string
	Kind   error
	Err    error
}

func (e *AskError) Error() string   { return fmt.Sprintf("%v for %s: %v", e.Kind, e.Domain, e.Err) }
func (e *AskError) Unwrap() []error { return []error{e.Kind, e.Err} }

// ask sends body to domain's auditor on subject and decodes its answer
// into into.
func ask(ctx context.Context, nc *nats.Conn, domain, subject string, body []byte, into any) error {
	ctx, cancel := context.WithTimeout(ctx, AskTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return &AskError{Domain: domain, Kind: ErrNoAuditor, Err: err}
	}
	var refusal struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(m.Data, &refusal) == nil && refusal.Error != "" {
		return &AskError{Domain: domain, Kind: ErrRefused, Err: errors.New(refusal.Error)}
	}
	return json.Unmarshal(m.Data, into)
}

// AskCheckpoint asks domain's auditor for a checkpoint of its stream now;
// Made.New says whether the stream had grown since the last one.
func AskCheckpoint(ctx context.Context, nc *nats.Conn, domain string) (*Made, error) {
	var made Made
	if err := ask(ctx, nc, domain, CheckpointSubject(domain), nil, &made); err != nil {
		return nil, err
	}
	return &made, nil
}

// AskAttestation sends evidence to its domain's auditor, which checks it
// against the stream and signs its manifest.
func AskAttestation(ctx context.Context, nc *nats.Conn, e *Evidence) (*Attestation, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	var att Attestation
	if err := ask(ctx, nc, e.Domain, AttestSubject(e.Domain), b, &att); err != nil {
		return nil, err
	}
	return &att, nil
}

// ExportEvidence makes the attested evidence bundle of one request: it
// asks domain's auditor for a checkpoint, collects the evidence from the
// stream reader reads (CollectEvidence), checks its content against trust,
// and has the auditor attest it.
func ExportEvidence(ctx context.Context, nc *nats.Conn, reader store.Reader, trust *identity.Bundle, domain, id string) (*Evidence, error) {
	var e *Evidence
	// The request may move on between the checkpoint and the reading: ask
	// again for one that covers it.
	for attempt := 0; ; attempt++ {
		if _, err := AskCheckpoint(ctx, nc, domain); err != nil {
			return nil, err
		}
		var err error
		e, err = CollectEvidence(ctx, reader, trust, domain, id)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoCheckpoint) || attempt == 20 {
			return nil, err
		}
		if !restart.Sleep(ctx, 100*time.Millisecond) { // let the request's next events land
			return nil, ctx.Err()
		}
	}
	e.Result = VerifyEvidenceContent(e, trust)
	att, err := AskAttestation(ctx, nc, e)
	if err != nil {
		return nil, err
	}
	e.Attestation = att
	return e, nil
}
