package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/transparency-dev/merkle/proof"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
)

// EvidenceFormat names the evidence bundle format.
const EvidenceFormat = "writ-evidence/v1"

// Evidence is a self-contained, offline-checkable record of one request:
// its messages exactly as stored, the policy version it was decided
// under, a checkpoint covering them with an inclusion proof for each, the
// keys that signed them, and the auditor's attestation that the messages
// are the request's whole history up to that checkpoint.
type Evidence struct {
	Format      string           `json:"format"`
	Domain      string           `json:"domain"`
	RequestID   string           `json:"request_id"`
	Stream      string           `json:"stream"`
	Created     time.Time        `json:"created"`
	Messages    []Entry          `json:"messages"`
	Policy      *Entry           `json:"policy,omitempty"`
	Checkpoint  Entry            `json:"checkpoint"`
	Trust       *identity.Bundle `json:"trust"`
	Attestation *Attestation     `json:"attestation,omitempty"`
	// Result is the verification at export, for the reader: checking a
	// bundle computes it again and never trusts this one.
	Result *Report `json:"result,omitempty"`
}

// Entry is a stored message and its place in the checkpoint's tree.
type Entry struct {
	Seq       uint64    `json:"seq"`
	Stored    time.Time `json:"stored"`
	Subject   string    `json:"subject"`
	Signer    string    `json:"signer,omitempty"`
	Signature string    `json:"signature,omitempty"`
	Body      []byte    `json:"body"` // exactly as stored (base64 in JSON)
	Leaf      uint64    `json:"leaf"`
	Proof     []string  `json:"proof,omitempty"` // RFC 6962 inclusion proof, leaf to root
}

// Attestation is the domain auditor's signature over the bundle's manifest.
type Attestation struct {
	Signer    string `json:"signer"`
	Signature string `json:"signature"`
}

func (e Entry) message() events.Message {
	h := map[string][]string{}
	if e.Signer != "" {
		h[events.HeaderSigner] = []string{e.Signer}
	}
	if e.Signature != "" {
		h[events.HeaderSignature] = []string{e.Signature}
	}
	return events.Message{Subject: e.Subject, Seq: e.Seq, Time: e.Stored, Header: h, Body: e.Body}
}

func entryOf(m events.Message) Entry {
	return Entry{Seq: m.Seq, Stored: m.Time, Subject: m.Subject, Signer: first(m.Header, events.HeaderSigner),
		Signature: first(m.Header, events.HeaderSignature), Body: m.Body}
}

// Manifest is what an attestation signs: the digest of the whole bundle
// but its attestation, as JSON, so that no part of it can change unseen.
func Manifest(e *Evidence) string {
	c := *e
	c.Attestation = nil
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	return events.Digest(b)
}

// Attest signs e's manifest with the domain's auditor key.
func Attest(e *Evidence, key nkeys.KeyPair) error {
	pub, err := key.PublicKey()
	if err != nil {
		return err
	}
	sig, err := key.Sign([]byte("writ evidence\x00" + Manifest(e)))
	if err != nil {
		return err
	}
	e.Attestation = &Attestation{Signer: pub, Signature: base64.RawURLEncoding.EncodeToString(sig)}
	return nil
}

// ErrNoCheckpoint says no checkpoint covers a request's history yet.
var ErrNoCheckpoint = errors.New("no checkpoint covers the request yet")

// CollectEvidence reads a request's history, the policy version it names
// and the first checkpoint covering both from the stream reader reads,
// and proves each message's inclusion in that checkpoint (which reads the
// stream up to it once). trust is the bundle whose relevant domains are
// copied into the evidence.
func CollectEvidence(ctx context.Context, reader store.Reader, trust *identity.Bundle, domain, id string) (*Evidence, error) {
	checker := events.Checker{Bundle: trust}
	e := &Evidence{Format: EvidenceFormat, Domain: domain, RequestID: id, Stream: reader.Stream, Created: time.Now().UTC()}
	msgs, err := reader.Load(ctx, events.RequestFilter(domain, id), 1)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("no request %s in %s", id, domain)
	}
	domains := []string{domain}
	covered := msgs[len(msgs)-1].Seq
	for _, m := range msgs {
		e.Messages = append(e.Messages, entryOf(m))
		r := checker.Inspect(m, m.Time)
		if p := r.Principal; p != nil && !slices.Contains(domains, p.Domain) {
			domains = append(domains, p.Domain)
		}
		if ev, ok := r.Data.(*events.Evaluated); ok && r.Valid() && e.Policy == nil {
			ps, err := reader.Load(ctx, events.RequestFilter(domain, events.PolicyID(ev.PolicyDigest, ev.FlowsDigest)), 1)
			if err != nil {
				return nil, err
			}
			if len(ps) > 0 {
				p := entryOf(ps[0])
				e.Policy = &p
				covered = max(covered, p.Seq)
			}
		}
	}
	cp, err := firstCovering(ctx, reader, checker, domain, covered)
	if err != nil {
		return nil, err
	}
	e.Checkpoint = entryOf(cp.Message)
	if err := e.prove(ctx, reader, cp.Data.(*events.Checkpoint)); err != nil {
		return nil, err
	}
	e.Trust = &identity.Bundle{Domains: map[string]*identity.Domain{}}
	for _, d := range domains {
		if td := trust.Domains[d]; td != nil {
			e.Trust.Domains[d] = td
		}
	}
	return e, nil
}

// firstCovering returns the first genuine checkpoint of domain whose tree
// reaches sequence seq.
func firstCovering(ctx context.Context, reader store.Reader, checker events.Checker, domain string, seq uint64) (events.Record, error) {
	var found *events.Record
	msgs, err := reader.Load(ctx, Subject(domain), seq+1)
	if err != nil {
		return events.Record{}, err
	}
	for _, m := range msgs {
		rec := checker.Inspect(m, m.Time)
		if c, ok := rec.Data.(*events.Checkpoint); ok && rec.Valid() && c.LastSeq >= seq {
			found = &rec
			break
		}
	}
	if found == nil {
		return events.Record{}, fmt.Errorf("%w (ask the auditor for one: writ audit checkpoint)", ErrNoCheckpoint)
	}
	return *found, nil
}

// prove computes the inclusion proof of each entry in the checkpoint's
// tree, after checking that the stream still gives the checkpoint's root.
func (e *Evidence) prove(ctx context.Context, reader store.Reader, cp *events.Checkpoint) error {
	leaves := make([][]byte, 0, cp.TreeSize)
	err := reader.ScanAll(ctx, cp.FirstSeq, func(m events.Message) error {
		if uint64(len(leaves)) == cp.TreeSize {
			return errDone
		}
		leaves = append(leaves, LeafHash(m))
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return err
	}
	if uint64(len(leaves)) != cp.TreeSize {
		return fmt.Errorf("the stream holds %d of the checkpoint's %d messages", len(leaves), cp.TreeSize)
	}
	t := NewTree()
	for i, h := range leaves {
		_ = t.AppendHash(cp.FirstSeq+uint64(i), h)
	}
	if root, _ := t.Root(); root != cp.Root {
		return fmt.Errorf("the stream no longer gives checkpoint root %s: verify the stream", short(cp.Root))
	}
	entries := make([]*Entry, 0, len(e.Messages)+1)
	for i := range e.Messages {
		entries = append(entries, &e.Messages[i])
	}
	if e.Policy != nil {
		entries = append(entries, e.Policy)
	}
	for _, x := range entries {
		x.Leaf = x.Seq - cp.FirstSeq
		p, err := inclusion(leaves, x.Leaf)
		if err != nil {
			return err
		}
		x.Proof = p
	}
	return nil
}

var errDone = errors.New("done")

// inclusion is the RFC 6962 inclusion proof of leaf index in the tree of
// leaves, from the proof package's node list.
func inclusion(leaves [][]byte, index uint64) ([]string, error) {
	size := uint64(len(leaves))
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		begin, end := id.Coverage()
		r := factory.NewEmptyRange(begin)
		for _, h := range leaves[begin:min(end, size)] {
			if err := r.Append(h, nil); err != nil {
				return nil, err
			}
		}
		// Every node a proof names is a perfect subtree: one hash.
		hs := r.Hashes()
		if len(hs) != 1 {
			return nil, fmt.Errorf("proof node %v is not a perfect subtree", id)
		}
		hashes[i] = hs[0]
	}
	hashes, err = nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = encodeHash(h)
	}
	return out, nil
}

// VerifyEvidence checks a bundle offline against trust, the checker's own
// trust bundle; with trust nil, against the keys the bundle carries (a
// warning says so: their fingerprints must then be checked out of band).
func VerifyEvidence(e *Evidence, trust *identity.Bundle) *Report {
	return verifyEvidence(e, trust, true)
}

// VerifyEvidenceContent is VerifyEvidence without the attestation: what a
// bundle about to be attested records as its result.
func VerifyEvidenceContent(e *Evidence, trust *identity.Bundle) *Report {
	return verifyEvidence(e, trust, false)
}

func verifyEvidence(e *Evidence, trust *identity.Bundle, attested bool) *Report {
	v := NewVerifier(Options{Bundle: trust, Stream: e.Stream})
	if trust == nil {
		v.o.Bundle = e.Trust
		v.checker.Bundle = e.Trust
		v.find(Finding{Check: CheckSignature, Severity: SeverityWarning,
			Problem: "checked against the keys the bundle carries: compare them with the domains' published keys"})
	}
	bad := func(x Entry, check, format string, a ...any) {
		v.find(Finding{Check: check, Seq: x.Seq, Domain: e.Domain, RequestID: e.RequestID, Problem: fmt.Sprintf(format, a...)})
	}
	if e.Format != EvidenceFormat || v.o.Bundle == nil {
		v.find(Finding{Check: CheckSubject, Problem: fmt.Sprintf("not a %s bundle, or it carries no keys", EvidenceFormat)})
		return &v.rep
	}
	cr := v.checker.Inspect(e.Checkpoint.message(), e.Checkpoint.Stored)
	cp, ok := cr.Data.(*events.Checkpoint)
	if cr.Err != nil || !ok || cr.Domain != e.Domain {
		bad(e.Checkpoint, CheckCheckpoint, "the checkpoint is not a genuine checkpoint of %s: %v", e.Domain, cr.Err)
		return &v.rep
	}
	root, _ := decodeHash(cp.Root)
	entries := slices.Clone(e.Messages)
	if e.Policy != nil {
		entries = append([]Entry{*e.Policy}, entries...)
	}
	var last uint64
	for i, x := range entries {
		m := x.message()
		d, id, _, err := events.ParseSubject(m.Subject)
		if i > 0 || e.Policy == nil {
			if err != nil || d != e.Domain || id != e.RequestID {
				bad(x, CheckSubject, "message on %q is not part of request %s", m.Subject, e.RequestID)
			}
			if x.Seq <= last {
				bad(x, CheckOrder, "messages out of order")
			}
			last = x.Seq
		}
		if x.Seq < cp.FirstSeq || x.Seq > cp.LastSeq || x.Leaf != x.Seq-cp.FirstSeq {
			bad(x, CheckCheckpoint, "message #%d is not leaf %d of the checkpoint's tree", x.Seq, x.Leaf)
		} else if err := verifyInclusion(x, cp.TreeSize, root); err != nil {
			bad(x, CheckCheckpoint, "message #%d is not in the checkpoint's tree: %v", x.Seq, err)
		}
		v.rep.Messages++
		v.check(m)
	}
	v.rep.Checkpoints++
	if len(e.Messages) > 0 {
		v.rep.FirstSeq, v.rep.LastSeq = e.Messages[0].Seq, e.Messages[len(e.Messages)-1].Seq
		v.rep.LastTime = e.Messages[len(e.Messages)-1].Stored
	}
	switch a := e.Attestation; {
	case !attested:
	case a == nil:
		v.find(Finding{Check: CheckWitness, Domain: e.Domain, RequestID: e.RequestID,
			Problem: "no auditor attestation: nothing shows the bundle holds the request's whole history"})
	case !v.o.Bundle.Entitled(e.Domain, identity.RoleAuditor, a.Signer):
		v.find(Finding{Check: CheckWitness, Domain: e.Domain, RequestID: e.RequestID, Problem: "the attestation is not by an auditor of " + e.Domain})
	default:
		err := events.VerifySignature(a.Signer, a.Signature, []byte("writ evidence\x00"+Manifest(e)))
		if err != nil {
			v.find(Finding{Check: CheckWitness, Domain: e.Domain, RequestID: e.RequestID,
				Problem: "the auditor's attestation does not match the bundle: something in it was added, removed or changed"})
		}
	}
	rep := v.Finish()
	rep.TreeSize, rep.Root = cp.TreeSize, cp.Root
	return rep
}

// Confirm checks, against the stream reader reads and the auditor's trust
// bundle, that e holds exactly the request's stored messages up to its
// checkpoint, the policy version and the checkpoint as stored, and the
// keys the auditor trusts: what an auditor must know before it attests.
func Confirm(ctx context.Context, reader store.Reader, trust *identity.Bundle, e *Evidence) error {
	if e.Format != EvidenceFormat || reader.Stream != e.Stream {
		return errors.New("not an evidence bundle of this stream")
	}
	cps, err := reader.Load(ctx, Subject(e.Domain), e.Checkpoint.Seq)
	if err != nil {
		return err
	}
	if len(cps) == 0 || !sameEntry(entryOf(cps[0]), e.Checkpoint) {
		return errors.New("the bundle's checkpoint is not the stream's")
	}
	msgs, err := reader.Load(ctx, events.RequestFilter(e.Domain, e.RequestID), 1)
	if err != nil {
		return err
	}
	var stored []Entry
	for _, m := range msgs {
		if m.Seq < e.Checkpoint.Seq {
			stored = append(stored, entryOf(m))
		}
	}
	if !slices.EqualFunc(stored, e.Messages, sameEntry) {
		return errors.New("the bundle does not hold exactly the request's stored messages")
	}
	if e.Policy != nil {
		ps, err := reader.Load(ctx, e.Policy.Subject, 1)
		if err != nil {
			return err
		}
		if len(ps) == 0 || !sameEntry(entryOf(ps[0]), *e.Policy) {
			return errors.New("the bundle's policy record is not the stream's")
		}
	}
	if e.Trust == nil {
		return errors.New("the bundle carries no keys")
	}
	for d, td := range e.Trust.Domains {
		a, _ := json.Marshal(td)
		b, _ := json.Marshal(trust.Domains[d])
		if string(a) != string(b) {
			return fmt.Errorf("the bundle's keys for %s are not the ones this auditor trusts", d)
		}
	}
	return nil
}

// sameEntry compares what was stored, not the proof.
func sameEntry(a, b Entry) bool {
	return a.Seq == b.Seq && a.Stored.Equal(b.Stored) && a.Subject == b.Subject && a.Signer == b.Signer &&
		a.Signature == b.Signature && string(a.Body) == string(b.Body)
}

func verifyInclusion(x Entry, size uint64, root []byte) error {
	hashes := make([][]byte, len(x.Proof))
	for i, p := range x.Proof {
		h, err := decodeHash(p)
		if err != nil {
			return err
		}
		hashes[i] = h
	}
	return proof.VerifyInclusion(hasher, x.Leaf, size, LeafHash(x.message()), hashes, root)
}
