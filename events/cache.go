package events

import (
	"encoding/json"
	"fmt"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/fifo"
)

// InspectCache remembers what Inspect concluded about messages. Every
// component reads a request's history for each message it handles, and a
// requester reads it again while it waits: without the cache each read
// verifies every signature, identity and schema again.
//
// It answers by the body's digest, only for a message with the same
// subject, signer and signature, judged by the same bundle and limit, so a
// changed or forged copy is inspected afresh. A component's verdict rests
// on the bytes alone: a notice of its event (a message heard before the
// stream stored it, with no sequence or stored time) and the stored copy
// share one. A principal's rests on the stored time too (its identity must
// be valid then): it answers only for the same stored time, and a
// principal's notice is not kept. Records it returns share their decoded
// Data with every other reader of the same message: treat Data as
// read-only (the fold does). It holds at most its size; the oldest entry
// goes first.
type InspectCache struct {
	c *fifo.Cache[cacheKey, cached]
}

type cacheKey struct {
	subject string
	digest  string // of the body
}

type cached struct {
	r       Record
	bundle  *identity.Bundle
	maxBody int
}

// NewInspectCache returns a cache of at most size records.
func NewInspectCache(size int) *InspectCache {
	return &InspectCache{c: fifo.New[cacheKey, cached](size)}
}

// DefaultInspectCache holds the histories of about a thousand requests in
// flight (a pipeline's consumers hold at most 1,024 unacknowledged), in
// about 40 MB: a record, decoded, takes some 10 KB (measured: 8,192 of
// them were most of a 100 MB heap).
const DefaultInspectCache = 4096

func (c *InspectCache) get(m Message, digest string, bundle *identity.Bundle, maxBody int) (Record, bool) {
	e, ok := c.c.Get(cacheKey{m.Subject, digest})
	if !ok || e.bundle != bundle || e.maxBody != maxBody ||
		e.r.header(HeaderSigner) != m.header(HeaderSigner) || e.r.header(HeaderSignature) != m.header(HeaderSignature) {
		return Record{}, false
	}
	// A principal's verdict holds for the stored time it was judged at; one
	// remembered as sealed, for the first stored copy (Inspect judges the
	// identity at that copy's time), never for a notice, which has none.
	if e.r.Kind.FromPrincipal() && (e.r.remembered() && m.Time.IsZero() || !e.r.remembered() && !e.r.Time.Equal(m.Time)) {
		return Record{}, false
	}
	r := e.r
	r.Message = m
	return r, true
}

// remembered reports whether a cached record is one Remember kept and no
// reader has judged yet: not decoded, no verdict.
func (r Record) remembered() bool { return r.Data == nil && r.Err == nil }

func (c *InspectCache) put(r Record, bundle *identity.Bundle, maxBody int) {
	c.c.Put(cacheKey{r.Subject, r.Digest}, cached{r: r, bundle: bundle, maxBody: maxBody})
}

// Len is how many records the cache holds.
func (c *InspectCache) Len() int { return c.c.Len() }

// Remember records the verdict on an event this process sealed itself and
// the stream stored at seq, without checking its signature and schema
// again: the components of a pipeline read back what the others wrote, and
// a requester its own request and votes. A component's event is
// remembered only for a domain whose key is entitled to it; a principal's
// with its identity still to judge, at the time the stream stored it
// (which the acknowledgement does not say), when it is first read back.
// The body is decoded then too, not here: much of what is remembered is
// never read back in this process. Only with a cache; anything else is
// left to Inspect.
func (c Checker) Remember(out Outgoing, seq uint64) {
	if c.Cache == nil {
		return
	}
	r := Record{
		Message: Message{Subject: out.Subject, Seq: seq, Header: out.Header(), Body: out.Body},
		Digest:  Digest(out.Body), Signer: out.Signer,
	}
	var err error
	if r.Domain, r.RequestID, r.Kind, err = ParseSubject(out.Subject); err != nil || r.Kind.Type() == "" {
		return
	}
	if !r.Kind.FromPrincipal() {
		if r.Role, err = c.entitledRole(r); err != nil {
			return
		}
	}
	c.Cache.put(r, c.Bundle, c.MaxBody) // Data nil: decoded when read back (Inspect)
}

// recall finishes a remembered record read back as m: it decodes the
// body, and judges a principal's identity at m's stored time.
func (c Checker) recall(r Record, m Message) (Record, bool) {
	if err := decodeSealed(&r); err != nil {
		return r, false
	}
	if _, ok := r.Data.(ask); r.Kind.FromPrincipal() && !ok {
		return r, false
	}
	if r.Kind.FromPrincipal() {
		r.Err = c.checkPrincipal(&r, m.Time)
	}
	return r, true
}

// Sealed is the record of an event this process sealed (out) and the
// stream stored at seq, decoded but not judged: no signature, schema or
// identity checked (Principal is nil), and no stored time. What it is
// worth is what the sealer's own hand is worth.
func Sealed(out Outgoing, seq uint64) (Record, error) {
	r := Record{
		Message: Message{Subject: out.Subject, Seq: seq, Header: out.Header(), Body: out.Body},
		Digest:  Digest(out.Body), Signer: out.Signer,
	}
	var err error
	if r.Domain, r.RequestID, r.Kind, err = ParseSubject(out.Subject); err != nil {
		return r, err
	}
	return r, decodeSealed(&r)
}

// decodeSealed decodes the envelope and data of a record whose subject is
// parsed.
func decodeSealed(r *Record) error {
	if data, ok := decodeOnce(r.Kind, r.Body, &r.Envelope); ok && r.Envelope.Type == r.Kind.Type() {
		r.Data = data
		return nil
	}
	if err := json.Unmarshal(r.Body, &r.Envelope); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Envelope.Type != r.Kind.Type() {
		return fmt.Errorf("%w: type %q on a %s subject", ErrTypeMismatch, r.Envelope.Type, r.Kind)
	}
	var err error
	r.Data, err = decodeData(r.Kind, r.Envelope.Data)
	return err
}
