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
	"github.com/writ-dev/writ/request"
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
	skip    map[string]bool // requests outside the time range
	reeval  *reevaluator
	seen    map[string]uint64 // checkpoint digests met, by sequence
	lastSeq uint64
	rep     Report
}

// input is a principal's message that changed nothing: the pipeline must
// answer it on the record.
type input struct {
	f   Finding
	err error     // what the fold found wrong with it
	at  time.Time // when the stream stored it
}

type leaf struct {
	seq  uint64
	at   time.Time
	hash []byte
}

type entry struct {
	st      request.State
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
		tree: NewTree(), lag: NewTree(), open: map[string]*entry{}, skip: map[string]bool{},
		reeval: newReevaluator(), seen: map[string]uint64{},
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
	if v.skip[key] {
		// Outside the time range, a component's event is still checked
		// on its own: its signature and its signer's entitlement.
		if r.Err != nil && !r.Kind.FromPrincipal() {
			v.find(Finding{Check: CheckSignature, Seq: r.Seq, Domain: r.Domain, RequestID: r.RequestID, Kind: r.Kind.String(), Problem: r.Err.Error()})
		}
		return
	}
	e := v.open[key]
	if e == nil {
		if r.Kind == events.KindRequested && !v.inRange(m.Time) {
			v.skip[key] = true
			return
		}
		e = &entry{}
		v.open[key] = e
		if r.Kind == events.KindRequested {
			v.rep.Requests++
		}
	}
	v.apply(e, r)
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
	next, err := request.Apply(e.st, r)
	e.st, e.at = next, r.Time
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
		v.find(f)
		return
	}
	switch d := r.Data.(type) {
	case *events.Refused:
		v.answered(e, d.RefSeq, d.Code)
	case *events.Rejected:
		v.answered(e, d.RefSeq, d.Code)
	case *events.Policy:
		v.reeval.add(d)
	case *events.Evaluated:
		v.rep.Reevaluated++
		if problem := v.reeval.check(e.st, d, request.At(r)); problem != "" {
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
// history before it changed since.
func (v *Verifier) answered(e *entry, seq uint64, code string) {
	in, ok := e.pending[seq]
	if !ok {
		return
	}
	delete(e.pending, seq)
	if errors.Is(in.err, request.ErrBrokenChain) && code != request.Code(in.err) {
		f := in.f
		f.Check = CheckChain
		f.Problem = fmt.Sprintf("the pipeline refused it as %s, but its chain is broken now: the history before it changed", code)
		v.find(f)
	}
}

// settle shrinks a decided request to what later messages are judged by:
// a closed one to its status and the end of its chain; a granted one to
// its grant's hash and lifetime and who asked to revoke it (redemption and
// revocation may follow) — unless a break-glass review is still open,
// which needs the flows and votes.
func (v *Verifier) settle(key string, e *entry) {
	st := e.st
	if !st.Status.IsTerminal() || len(e.pending) > 0 || st.ReviewOpen() {
		return
	}
	small := request.State{Domain: st.Domain, ID: st.ID, Status: st.Status, LastSeq: st.LastSeq, LastDigest: st.LastDigest,
		RevokeAskers: st.RevokeAskers}
	if g := st.Grant; g != nil && !st.Status.IsClosed() {
		small.Grant = &events.Granted{TokenHash: g.TokenHash, NotBefore: g.NotBefore, ExpiresAt: g.ExpiresAt}
	}
	e.st = small
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
	for _, h := range v.o.Heads {
		if seq, ok := v.seen[h.Digest]; ok && seq == h.Seq {
			continue
		}
		v.find(Finding{Check: CheckWitness, Seq: h.Seq, Kind: events.KindCheckpoint.String(), Problem: fmt.Sprintf(
			"%s holds checkpoint #%d (%d messages, root %s), which this stream does not: it was truncated, deleted or rewritten",
			h.Source, h.Seq, h.Checkpoint.TreeSize, short(h.Checkpoint.Root))})
	}
	horizon := v.rep.LastTime.Add(-v.o.Settle)
	for _, k := range slices.Sorted(maps.Keys(v.open)) {
		e := v.open[k]
		for _, s := range slices.Sorted(maps.Keys(e.pending)) {
			in := e.pending[s]
			f := in.f
			if in.at.After(horizon) {
				f.Severity, f.Problem = SeverityWarning, "in flight at the end: "+f.Problem
			}
			v.find(f)
		}
		st := e.st
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
