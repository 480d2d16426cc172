package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

// Checks a finding can come from.
const (
	CheckOrder      = "order"         // sequences out of order, repeated or missing
	CheckSubject    = "subject"       // a message outside any request's history
	CheckSignature  = "signature"     // not signed by a key entitled to the kind in the domain, or malformed
	CheckChain      = "chain"         // prev does not name the history's previous message
	CheckInvariant  = "invariant"     // the state machine forbids the event
	CheckInput      = "input"         // a refused input the pipeline never answered
	CheckCheckpoint = "checkpoint"    // a tree head that does not match the messages
	CheckWitness    = "witness"       // a checkpoint held elsewhere that the stream no longer matches
	CheckReeval     = "re-evaluation" // a decision the recorded policy does not give
	CheckProgress   = "progress"      // a request the pipeline never took further
	CheckRefused    = "refused"       // a component event that is not genuine, refused by the pipeline on the record: noise, not a change
	CheckLock       = "lock"          // a grant or redemption for a principal, key or domain the trail had locked
	CheckTruncation = "truncation"    // messages gone from the stream's start (or all of them) that no checkpoint accounts for
)

// Severities. Only errors make a verification fail.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Finding is one thing wrong with the trail.
type Finding struct {
	Check     string `json:"check"`
	Severity  string `json:"severity"`
	Seq       uint64 `json:"seq,omitempty"`
	Domain    string `json:"domain,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Problem   string `json:"problem"`
}

func (f Finding) String() string {
	s := f.Severity + " [" + f.Check + "]"
	if f.Seq > 0 {
		s += fmt.Sprintf(" #%d", f.Seq)
	}
	if f.Kind != "" {
		s += " " + f.Kind
	}
	if f.RequestID != "" {
		s += " in " + f.Domain + "/" + f.RequestID
	}
	return s + ": " + f.Problem
}

// Head is a checkpoint held outside the stream being verified — recorded
// by a witness domain, or carried in an evidence bundle — that the stream
// must still hold.
type Head struct {
	Seq        uint64 // its sequence in the verified stream
	Digest     string // its body's digest
	Checkpoint events.Checkpoint
	Source     string // who holds it, for the report: "witness globex #12"
}

// Options configure a verification.
type Options struct {
	Bundle  *identity.Bundle
	MaxBody int    // the pipeline's limit on event bodies; default events.DefaultMaxBody
	Stream  string // the stream's name, when known: checkpoints must name it
	// Since and Until bound the requests checked in full, by when their
	// request was stored; zero means unbounded. Every message still counts
	// for the order, signature and checkpoint checks.
	Since, Until time.Time
	// Heads are checkpoints held elsewhere that the stream must hold.
	Heads []Head
	// Settle is how recent (before the last message) an unanswered input
	// or an undecided request may be and count as in flight; default 30s.
	Settle time.Duration
	// Window is how many recent leaves are kept to check a checkpoint that
	// lands after messages it does not cover; default 65536.
	Window int
	// MaxFindings bounds the findings kept (all are counted); default 1000.
	MaxFindings int
	// Extent is what the stream itself said it held when the verification
	// began; nil for a copy, which is judged by its messages alone. With
	// it, a start past sequence 1 is judged by what accounts for it, and an
	// empty stream that held messages fails.
	Extent *Extent
}

// Extent is a live stream's own account of itself.
type Extent struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Msgs     uint64 `json:"messages"`
	// MaxAge is the stream's configured maximum age: only with one may
	// the server drop the oldest messages. Writ's default keeps them all.
	MaxAge time.Duration `json:"max_age,omitempty"`
}

// Report is the outcome of a verification.
type Report struct {
	Messages    uint64    `json:"messages"`
	Requests    uint64    `json:"requests"`    // request histories checked in full
	Checkpoints uint64    `json:"checkpoints"` // checkpoints matched against the tree
	Reevaluated uint64    `json:"reevaluated"` // evaluations re-computed
	FirstSeq    uint64    `json:"first_seq"`
	LastSeq     uint64    `json:"last_seq"`
	LastTime    time.Time `json:"last_time,omitzero"`
	TreeSize    uint64    `json:"tree_size"`
	Root        string    `json:"root"`
	Errors      int       `json:"errors"`
	Warnings    int       `json:"warnings"`
	Findings    []Finding `json:"findings"`
	Dropped     int       `json:"dropped,omitempty"` // findings beyond the limit, counted but not kept
	Stream      *Extent   `json:"stream,omitempty"`  // what the stream said it held, when verified live
}

// OK reports whether everything held: no errors.
func (r *Report) OK() bool { return r.Errors == 0 }

// Verifier checks a stream's messages, given one at a time in stream order.
type Verifier struct {
	o       Options
	checker events.Checker
	tree    *Tree
	lag     *Tree  // the tree without the window's leaves
	window  []leaf // the latest leaves, oldest first
	open    map[string]*entry
	skip    map[string]*entry // histories not checked in full: outside the time range, or begun before the stream's start
	reeval  *reevaluator
	seen    map[string]uint64 // checkpoint digests met, by sequence
	lastSeq uint64
	rep     Report
	// cut is the first sequence read when, with an Extent, it is past 1:
	// the messages before it are gone. cover is the checkpoint that
	// accounts for them, once met.
	cut        uint64
	cover      *cover
	unrecorded uint64          // decisions not re-evaluated: their policy record went with the start
	locks      map[string]held // the trail's lock list as of the message being checked, by locks.Key
}

// cover is a checkpoint that covers the messages gone from the stream's start.
type cover struct {
	seq uint64
	cp  events.Checkpoint
}

// held is a lock in force: the locked event that set it.
type held struct {
	seq    uint64
	target events.LockTarget
}

// input is a principal's message that changed nothing: the pipeline must
// answer it on the record.
type input struct {
	f   Finding
	err error     // what the fold found wrong with it
	at  time.Time // when the stream stored it
	// forged marks a component's event that is not genuine (unsigned, or
	// signed by a key not entitled to it): tampering unless the pipeline
	// refused it on the record, naming its kind and signer.
	forged bool
	signer string
}

type leaf struct {
	seq  uint64
	at   time.Time
	hash []byte
}

type entry struct {
	h series.Any // a request's history folded, or a series'

	pending map[uint64]input // inputs that changed nothing, until answered
	at      time.Time        // when its last message was stored
}

// NewVerifier returns a verifier.
func NewVerifier(o Options) *Verifier {
	if o.Settle == 0 {
		o.Settle = 30 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 1 << 16
	}
	if o.MaxFindings <= 0 {
		o.MaxFindings = 1000
	}
	return &Verifier{
		o: o, checker: events.Checker{Bundle: o.Bundle, MaxBody: o.MaxBody},
		tree: NewTree(), lag: NewTree(), open: map[string]*entry{}, skip: map[string]*entry{},
		reeval: newReevaluator(), seen: map[string]uint64{}, locks: map[string]held{},
	}
}

func (v *Verifier) find(f Finding) {
	if f.Severity == "" {
		f.Severity = SeverityError
	}
	if f.Severity == SeverityError {
		v.rep.Errors++
	} else {
		v.rep.Warnings++
	}
	if len(v.rep.Findings) >= v.o.MaxFindings {
		v.rep.Dropped++
		return
	}
	v.rep.Findings = append(v.rep.Findings, f)
}

// Add checks the next message of the stream.
func (v *Verifier) Add(m events.Message) {
	v.rep.Messages++
	if v.rep.FirstSeq == 0 {
		v.rep.FirstSeq = m.Seq
		if v.o.Extent != nil && m.Seq > 1 {
			// The stream's start moved: Finish judges whether a
			// checkpoint accounts for what went.
			v.cut, v.lastSeq = m.Seq, m.Seq-1
		}
	}
	switch {
	case m.Seq <= v.lastSeq:
		v.find(Finding{Check: CheckOrder, Seq: m.Seq, Problem: fmt.Sprintf("sequence %d after %d: messages reordered or repeated", m.Seq, v.lastSeq)})
	case m.Seq > v.lastSeq+1:
		v.find(Finding{Check: CheckOrder, Seq: m.Seq, Problem: fmt.Sprintf("messages %d to %d are missing", v.lastSeq+1, m.Seq-1)})
	}
	v.lastSeq = max(v.lastSeq, m.Seq)
	if m.Time.Before(v.rep.LastTime) {
		v.find(Finding{Check: CheckOrder, Severity: SeverityWarning, Seq: m.Seq,
			Problem: fmt.Sprintf("stored at %s, before the message ahead of it (%s): a server clock stepped back", m.Time.Format(time.RFC3339Nano), v.rep.LastTime.Format(time.RFC3339Nano))})
	}
	v.rep.LastSeq, v.rep.LastTime = m.Seq, m.Time
	v.addLeaf(m)
	v.check(m)
}

// check judges a message on its own and in its request's history.
func (v *Verifier) check(m events.Message) {
	r := v.checker.Inspect(m, m.Time)
	if r.RequestID == "" {
		v.find(Finding{Check: CheckSubject, Severity: SeverityWarning, Seq: m.Seq,
			Problem: fmt.Sprintf("message on %q is part of no request's history: %v", m.Subject, r.Err)})
		return
	}
	key := r.Domain + "/" + r.RequestID
	if v.skip[key] == nil && v.open[key] == nil {
		switch {
		case r.Kind == events.KindRequested && !v.inRange(m.Time):
			v.skip[key] = &entry{}
		case v.cut > 0 && r.Valid() && events.Prev(r.Data) != "":
			// The history began before the stream's start: what it
			// builds on is gone. A checkpoint or witness series goes on
			// from the first one left; anything else is checked on its own.
			if r.Kind == events.KindCheckpoint || r.Kind == events.KindWitnessed {
				v.open[key] = &entry{h: series.After(r)}
			} else {
				v.skip[key] = &entry{}
			}
		}
	}
	if e := v.skip[key]; e != nil {
		v.checkAlone(e, r)
		return
	}
	e := v.open[key]
	if e == nil {
		e = &entry{}
		v.open[key] = e
		if r.Kind == events.KindRequested {
			v.rep.Requests++
		}
	}
	v.apply(e, r)
}

// checkAlone checks a message of a history not checked in full: a
// component's event on its own, its signature and its signer's
// entitlement; a refusal answers one that is not genuine; a lock counts.
func (v *Verifier) checkAlone(e *entry, r events.Record) {
	switch d := r.Data.(type) {
	case nil:
	case *events.Refused:
		if r.Valid() {
			v.answered(e, d.RefSeq, d.Code, d.RefKind, d.RefSigner)
		}
	case *events.Locked:
		if r.Valid() {
			v.lock(r, d)
		}
	}
	if r.Err != nil && !r.Kind.FromPrincipal() {
		v.hold(e, r, Finding{Check: CheckSignature, Seq: r.Seq, Domain: r.Domain, RequestID: r.RequestID, Kind: r.Kind.String(), Problem: r.Err.Error()}, r.Err)
	}
}

// hold keeps a component's event that is not genuine until the pipeline's
// refusal of it, if one comes.
func (v *Verifier) hold(e *entry, r events.Record, f Finding, err error) {
	if e.pending == nil {
		e.pending = map[uint64]input{}
	}
	e.pending[r.Seq] = input{f: f, err: err, at: r.Time, forged: true, signer: r.Signer}
}

func (v *Verifier) inRange(t time.Time) bool {
	return (v.o.Since.IsZero() || !t.Before(v.o.Since)) && (v.o.Until.IsZero() || t.Before(v.o.Until))
}

func (v *Verifier) addLeaf(m events.Message) {
	h := LeafHash(m)
	_ = v.tree.AppendHash(m.Seq, h)
	v.tree.lastTime = m.Time
	v.window = append(v.window, leaf{seq: m.Seq, at: m.Time, hash: h})
	if len(v.window) > v.o.Window {
		// Move the oldest quarter of the window into the lagging tree.
		n := len(v.window) / 4
		for _, l := range v.window[:n] {
			_ = v.lag.AppendHash(l.seq, l.hash)
			v.lag.lastTime = l.at
		}
		v.window = slices.Delete(v.window, 0, n)
	}
}

// treeAt returns the tree of the first size leaves, when the window still
// reaches back to it.
func (v *Verifier) treeAt(size uint64) (*Tree, bool) {
	if size < v.lag.Size() || size > v.tree.Size() {
		return nil, false
	}
	if size == v.tree.Size() {
		return v.tree, true
	}
	t := v.lag.clone()
	for _, l := range v.window[:size-v.lag.Size()] {
		_ = t.AppendHash(l.seq, l.hash)
		t.lastTime = l.at
	}
	return t, true
}

func (v *Verifier) apply(e *entry, r events.Record) {
	next, err := e.h.Apply(r)
	e.h, e.at = next, r.Time
	f := Finding{Seq: r.Seq, Domain: r.Domain, RequestID: r.RequestID, Kind: r.Kind.String()}
	if err != nil {
		f.Check, f.Problem = checkOf(err), err.Error()
		if r.Kind.FromPrincipal() {
			// Anyone may send bad input: the pipeline must have refused it,
			// on the record.
			if e.pending == nil {
				e.pending = map[uint64]input{}
			}
			f.Check, f.Problem = CheckInput, "input the pipeline never answered: "+f.Problem
			e.pending[r.Seq] = input{f: f, err: err, at: r.Time}
			return
		}
		if errors.Is(err, request.ErrInvalid) {
			// Not genuine: junk or a forgery published to a decision
			// subject, which the fold ignores — or a genuine event
			// altered since. A refusal on the record tells them apart:
			// the pipeline met it as it is now.
			v.hold(e, r, f, err)
			return
		}
		v.find(f)
		return
	}
	switch d := r.Data.(type) {
	case *events.Refused:
		v.answered(e, d.RefSeq, d.Code, d.RefKind, d.RefSigner)
	case *events.Rejected:
		v.answered(e, d.RefSeq, d.Code, "", "")
	case *events.Locked:
		v.lock(r, d)
	case *events.Granted:
		st := e.h.Request
		v.lockedOut(f, "granted to "+st.Requester.ID(), locks.Targets(st.Requester))
	case *events.Redeemed:
		if d.Outcome == events.RedemptionRedeemed {
			st := e.h.Request
			ts := locks.Targets(st.Requester)
			if d.Holder != "" && d.Holder != st.Requester.Key {
				ts = append(ts, events.LockTarget{Type: events.LockKey, Name: d.Holder})
			}
			v.lockedOut(f, "redeemed by "+st.Requester.ID(), ts)
		}
	case *events.Policy:
		v.reeval.add(d)
	case *events.Evaluated:
		if v.cut > 0 && !v.reeval.knows(d) {
			v.unrecorded++ // its policy record went with the stream's start
			break
		}
		v.rep.Reevaluated++
		if problem := v.reeval.check(e.h.Request, d, request.At(r)); problem != "" {
			f.Check, f.Problem = CheckReeval, problem
			v.find(f)
		}
	case *events.Checkpoint:
		v.checkpoint(r, d)
	case *events.Witnessed:
		v.witnessed(r, d)
	}
	v.settle(r.Domain+"/"+r.RequestID, e)
}

// answered clears an input the pipeline refused. The pipeline judges an
// input by the same fold: an input whose chain is broken now but that was
// refused for another reason was chained when the pipeline saw it, so the
// history before it changed since. A component's event that is not
// genuine, refused, is noise someone published: a finding of its own,
// unless the refusal names another kind or signer than the stream holds
// there now.
func (v *Verifier) answered(e *entry, seq uint64, code, kind, signer string) {
	in, ok := e.pending[seq]
	if !ok {
		return
	}
	delete(e.pending, seq)
	f := in.f
	switch {
	case in.forged && (kind != f.Kind || signer != in.signer):
		f.Check = CheckChain
		f.Problem = fmt.Sprintf("the pipeline refused a %s signed by %q here, the stream holds a %s signed by %q now: the message changed", kind, signer, f.Kind, in.signer)
		v.find(f)
	case in.forged:
		f.Check, f.Severity = CheckRefused, SeverityWarning
		f.Problem = fmt.Sprintf("not genuine (%v); the pipeline refused it on the record (%s): junk or a forgery published to the subject, which changed nothing", in.err, code)
		v.find(f)
	case errors.Is(in.err, request.ErrBrokenChain) && code != request.Code(in.err):
		f.Check = CheckChain
		f.Problem = fmt.Sprintf("the pipeline refused it as %s, but its chain is broken now: the history before it changed", code)
		v.find(f)
	}
}

// lock applies a locked event to the trail's lock list.
func (v *Verifier) lock(r events.Record, d *events.Locked) {
	k, err := locks.Key(d.Target)
	switch {
	case err != nil:
	case d.Unlock:
		delete(v.locks, k)
	default:
		v.locks[k] = held{seq: r.Seq, target: d.Target}
	}
}

// lockedOut finds a grant or redemption for a target the trail had locked
// when it was recorded: the lock promises there is none.
func (v *Verifier) lockedOut(f Finding, what string, targets []events.LockTarget) {
	for _, t := range targets {
		k, err := locks.Key(t)
		if err != nil {
			continue
		}
		if l, ok := v.locks[k]; ok {
			f.Check = CheckLock
			f.Problem = fmt.Sprintf("%s while %s %s was locked (locked at #%d, not unlocked since)", what, l.target.Type, l.target.Name, l.seq)
			v.find(f)
			return
		}
	}
}

// settle shrinks a decided request to what later messages are judged by:
// a closed one to its status and the end of its chain; a granted one to
// its grant's hash and lifetime and who asked to revoke it (redemption and
// revocation may follow) — unless a break-glass review still has work
// (open, it needs the flows and votes; denied, the revocation and alert
// it owes are judged by the review).
func (v *Verifier) settle(key string, e *entry) {
	st := e.h.Request
	if e.h.Kind != series.KindRequest || !st.Status.IsTerminal() || len(e.pending) > 0 || st.ReviewActive() {
		return
	}
	small := request.State{Domain: st.Domain, ID: st.ID, Status: st.Status, LastSeq: st.LastSeq, LastDigest: st.LastDigest,
		RevokeAskers: st.RevokeAskers, Requester: st.Requester}
	// A redeemed grant keeps what a revocation while it is in use needs.
	if g := st.Grant; g != nil && (!st.Status.IsClosed() || st.Status == request.StatusRedeemed) {
		small.Grant = &events.Granted{TokenHash: g.TokenHash, NotBefore: g.NotBefore, ExpiresAt: g.ExpiresAt}
	}
	e.h.Request = small
}

func checkOf(err error) string {
	switch {
	case errors.Is(err, request.ErrInvalid):
		return CheckSignature
	case errors.Is(err, request.ErrBrokenChain):
		return CheckChain
	}
	return CheckInvariant
}

func (v *Verifier) checkpoint(r events.Record, c *events.Checkpoint) {
	f := Finding{Check: CheckCheckpoint, Seq: r.Seq, Domain: r.Domain, RequestID: r.RequestID, Kind: r.Kind.String()}
	v.seen[r.Digest] = r.Seq
	if v.o.Stream != "" && c.Stream != v.o.Stream {
		f.Problem = fmt.Sprintf("checkpoint of stream %q found in %q", c.Stream, v.o.Stream)
		v.find(f)
		return
	}
	if v.cut > 0 && v.cover == nil {
		v.rebase(r, c)
		return
	}
	// The leaves covered come before the checkpoint itself.
	if c.TreeSize >= v.tree.Size() {
		f.Problem = fmt.Sprintf("checkpoint covers %d messages, but only %d precede it", c.TreeSize, v.tree.Size()-1)
		v.find(f)
		return
	}
	t, ok := v.treeAt(c.TreeSize)
	if !ok {
		f.Problem = fmt.Sprintf("checkpoint of %d messages lands %d messages after them, beyond the %d this verifier keeps",
			c.TreeSize, v.tree.Size()-c.TreeSize, v.o.Window)
		v.find(f)
		return
	}
	root, _ := t.Root()
	switch {
	case root != c.Root:
		f.Problem = fmt.Sprintf("tree of the first %d messages has root %s, the checkpoint says %s", c.TreeSize, short(root), short(c.Root))
	case t.FirstSeq() != c.FirstSeq || t.LastSeq() != c.LastSeq:
		f.Problem = fmt.Sprintf("checkpoint says sequences %d to %d, the tree holds %d to %d", c.FirstSeq, c.LastSeq, t.FirstSeq(), t.LastSeq())
	case !t.lastTime.Equal(c.LastTime):
		f.Problem = fmt.Sprintf("checkpoint says its last message was stored at %s, the stream says %s", c.LastTime.Format(time.RFC3339Nano), t.lastTime.Format(time.RFC3339Nano))
	}
	if f.Problem != "" {
		v.find(f)
		return
	}
	if back, err := Restore(c); err != nil || back.Size() != c.TreeSize {
		f.Problem = "checkpoint frontier does not give its root"
		v.find(f)
		return
	}
	v.rep.Checkpoints++
}

// rebase continues the tree from the first checkpoint left that covers
// every message gone from the stream's start: the tree of the messages
// before cut cannot be recomputed, but this checkpoint says what it was,
// and every later checkpoint is checked against it and the messages after
// it. The messages it covers that the stream still holds cannot be
// re-hashed; Finish says so.
func (v *Verifier) rebase(r events.Record, c *events.Checkpoint) {
	if c.FirstSeq != 1 || c.LastSeq+1 < v.cut || v.lag.Size() > 0 && v.lag.LastSeq() > c.LastSeq {
		return
	}
	t, err := Restore(c)
	if err != nil {
		v.find(Finding{Check: CheckCheckpoint, Seq: r.Seq, Domain: r.Domain, RequestID: r.RequestID, Kind: r.Kind.String(), Problem: err.Error()})
		return
	}
	base := t.clone()
	var kept []leaf
	for _, l := range v.window {
		if l.seq > c.LastSeq {
			_ = t.AppendHash(l.seq, l.hash)
			t.lastTime = l.at
			kept = append(kept, l)
		}
	}
	v.lag, v.tree, v.window = base, t, kept
	v.cover = &cover{seq: r.Seq, cp: *c}
}

// truncation judges a stream whose start moved past sequence 1. Only a
// maximum age lets the server drop the oldest messages, and only a
// checkpoint left in the stream that covers them says what they were.
func (v *Verifier) truncation() {
	gone := fmt.Sprintf("messages #1 to #%d are gone from the stream's start", v.cut-1)
	f := Finding{Check: CheckTruncation, Seq: v.cut}
	switch c := v.cover; {
	case c == nil:
		f.Problem = gone + ", and no checkpoint left in the stream covers them: removed by a changed limit or a delete, never accounted for"
	case v.o.Extent.MaxAge <= 0:
		f.Problem = gone + fmt.Sprintf(", though the stream has no max age and keeps every message: removed, not expired (checkpoint #%d still records what they were: %d messages, root %s)",
			c.seq, c.cp.TreeSize, short(c.cp.Root))
	default:
		f.Severity = SeverityWarning
		f.Problem = gone + fmt.Sprintf(", expired under the stream's max age (%s); checkpoint #%d covers them (%d messages to #%d, root %s): an archived copy can be checked against it. The %d kept messages it also covers could not be re-hashed",
			v.o.Extent.MaxAge, c.seq, c.cp.TreeSize, c.cp.LastSeq, short(c.cp.Root), c.cp.LastSeq+1-v.cut)
	}
	if v.unrecorded > 0 {
		f.Problem += fmt.Sprintf(" (%d decisions whose policy record went with them were not re-evaluated)", v.unrecorded)
	}
	v.find(f)
}

// witnessed checks another domain's checkpoint this domain recorded: it
// must be genuine, signed by that domain's auditor.
func (v *Verifier) witnessed(r events.Record, w *events.Witnessed) {
	if inner := witnessedCheckpoint(v.checker, w, r.Time); inner.Err != nil {
		v.find(Finding{Check: CheckWitness, Seq: r.Seq, Domain: r.Domain, RequestID: r.RequestID, Kind: r.Kind.String(),
			Problem: fmt.Sprintf("witnessed checkpoint of %s #%d is not genuine: %v", w.Domain, w.Seq, inner.Err)})
	}
}

// witnessedCheckpoint inspects the checkpoint a witness record holds; its
// Err says why it is not a genuine checkpoint of the domain it names.
func witnessedCheckpoint(c events.Checker, w *events.Witnessed, at time.Time) events.Record {
	inner := c.Inspect(events.Message{
		Subject: w.Subject, Seq: w.Seq, Body: []byte(w.Checkpoint),
		Header: map[string][]string{events.HeaderSigner: {w.Signer}, events.HeaderSignature: {w.Signature}},
	}, at)
	if inner.Err == nil && (inner.Kind != events.KindCheckpoint || inner.Domain != w.Domain) {
		inner.Err = fmt.Errorf("a %s of %s, not a checkpoint of %s", inner.Kind, inner.Domain, w.Domain)
	}
	return inner
}

// Finish ends the verification and returns the report.
func (v *Verifier) Finish() *Report {
	v.rep.TreeSize = v.tree.Size()
	v.rep.Root, _ = v.tree.Root()
	if x := v.o.Extent; x != nil {
		v.rep.Stream = x
		switch {
		case v.rep.Messages == 0 && x.LastSeq > 0:
			v.find(Finding{Check: CheckTruncation, Problem: fmt.Sprintf(
				"the stream holds no message, yet it held %d (#1 to #%d): every one was removed, checkpoints included", x.LastSeq, x.LastSeq)})
		case v.cut > 0:
			v.truncation()
		}
		if v.rep.Messages > 0 && x.LastSeq > v.lastSeq {
			v.find(Finding{Check: CheckOrder, Seq: x.LastSeq, Problem: fmt.Sprintf("messages #%d to #%d are gone from the stream's end", v.lastSeq+1, x.LastSeq)})
		}
	}
	for _, h := range v.o.Heads {
		if seq, ok := v.seen[h.Digest]; ok && seq == h.Seq {
			continue
		}
		v.find(Finding{Check: CheckWitness, Seq: h.Seq, Kind: events.KindCheckpoint.String(), Problem: fmt.Sprintf(
			"%s holds checkpoint #%d (%d messages, root %s), which this stream does not: it was truncated, deleted or rewritten",
			h.Source, h.Seq, h.Checkpoint.TreeSize, short(h.Checkpoint.Root))})
	}
	horizon := v.rep.LastTime.Add(-v.o.Settle)
	unanswered := func(e *entry) {
		for _, s := range slices.Sorted(maps.Keys(e.pending)) {
			in := e.pending[s]
			f := in.f
			// A forged decision nobody refused stays an error: in flight
			// or not, it may be a genuine event altered.
			if !in.forged && in.at.After(horizon) {
				f.Severity, f.Problem = SeverityWarning, "in flight at the end: "+f.Problem
			}
			v.find(f)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(v.skip)) {
		unanswered(v.skip[k])
	}
	for _, k := range slices.Sorted(maps.Keys(v.open)) {
		e := v.open[k]
		unanswered(e)
		st := e.h.Request
		if (st.Status == request.StatusRequested || st.Status.AwaitsGrant()) && e.at.Before(horizon) {
			v.find(Finding{Check: CheckProgress, Severity: SeverityWarning, Seq: st.LastSeq, Domain: st.Domain, RequestID: st.ID,
				Problem: fmt.Sprintf("left %s: the pipeline never took it further", st.Status)})
		}
	}
	return &v.rep
}

func short(h string) string {
	if len(h) > 19 {
		return h[:19]
	}
	return h
}

// MarshalFindings writes findings as JSON lines.
func MarshalFindings(fs []Finding) []byte {
	var out []byte
	for _, f := range fs {
		b, _ := json.Marshal(f)
		out = append(append(out, b...), '\n')
	}
	return out
}
