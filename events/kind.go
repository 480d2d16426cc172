package events

import (
	"fmt"
	"slices"

	"github.com/writ-dev/writ/identity"
)

// Kind is the kind of an event, the last token of its subject.
type Kind uint8

// The event kinds. The zero value means none.
const (
	KindNone Kind = iota
	KindRequested
	KindRejected
	KindEvaluated
	KindVoted
	KindApproved
	KindDenied
	KindExpired
	KindGranted
	KindRefused
	KindRedeemed
	KindRevoked
	KindRevoke // a principal asks to revoke; the approval component decides
	KindLock   // a principal asks to lock (or unlock) a principal, key or domain
	KindLocked // the approval component locked (or unlocked) it
	KindEscalated
	KindAlerted    // something people must look at: break-glass use, an overdue review
	KindReviewed   // a break-glass grant's after-the-fact review is complete
	KindPolicy     // a policy set and flows, as loaded, recorded once under an id of their own
	KindCheckpoint // a signed Merkle tree head over the whole audit stream
	KindWitnessed  // another domain's checkpoint, as this domain's auditor saw it
	KindState      // a principal asks to set (or delete) a resource's or a domain's state
	KindStated     // the approval component recorded the state change, then applied it
	KindCounted    // the approval component counted a vote that decided nothing yet
)

// The CloudEvents types, one per kind and version. These are the wire names;
// never derive them from Go identifiers.
const (
	TypeRequested  = "writ.request.requested.v1"
	TypeRejected   = "writ.request.rejected.v1"
	TypeEvaluated  = "writ.request.evaluated.v1"
	TypeVoted      = "writ.request.voted.v1"
	TypeApproved   = "writ.request.approved.v1"
	TypeDenied     = "writ.request.denied.v1"
	TypeExpired    = "writ.request.expired.v1"
	TypeGranted    = "writ.request.granted.v1"
	TypeRefused    = "writ.request.refused.v1"
	TypeRedeemed   = "writ.request.redeemed.v1"
	TypeRevoked    = "writ.request.revoked.v1"
	TypeRevoke     = "writ.request.revoke.v1"
	TypeLock       = "writ.request.lock.v1"
	TypeLocked     = "writ.request.locked.v1"
	TypeEscalated  = "writ.request.escalated.v1"
	TypeAlerted    = "writ.request.alerted.v2"  // v2: the review-denied alert
	TypeReviewed   = "writ.request.reviewed.v2" // v2: an outcome, approved or denied
	TypePolicy     = "writ.request.policy.v1"
	TypeCheckpoint = "writ.audit.checkpoint.v1"
	TypeWitnessed  = "writ.audit.witnessed.v1"
	TypeState      = "writ.request.state.v1"
	TypeStated     = "writ.request.stated.v1"
	TypeCounted    = "writ.request.counted.v1"
)

// kindDef is everything Writ says about one kind of event. kinds holds
// one row per kind, and is the only table of them: String, Type, Types,
// ParseKind, NewData, RoleFor and FromPrincipal read it; internal/access
// derives the roles' publish rights from it and consumers the auditor's
// filter; tests hold the schemas, the golden payloads and the tables
// other packages keep for their own concerns to it.
type kindDef struct {
	name string // the subject token
	// typ is the current CloudEvents type; its schema is schemas/<typ>.json.
	typ string
	// older are earlier versions of typ that the trail still holds and
	// readers still accept; nothing writes them any more. A reviewed.v1
	// is an approved review (v1 had no denial); an alerted.v1 is an
	// alerted.v2 without the review-denied alert.
	older []string
	data  func() any // a new, empty value of the kind's data
	// Who signs it: a principal (an ask: a request, a vote, …); or the
	// component of role; or, for a refusal, any of the domain's
	// components (role "").
	principal bool
	role      identity.Role
}

func data[T any]() func() any { return func() any { return new(T) } }

var kinds = [...]kindDef{
	KindNone:       {},
	KindRequested:  {name: "requested", typ: TypeRequested, data: data[Requested](), principal: true},
	KindRejected:   {name: "rejected", typ: TypeRejected, data: data[Rejected](), role: identity.RolePolicy},
	KindEvaluated:  {name: "evaluated", typ: TypeEvaluated, data: data[Evaluated](), role: identity.RolePolicy},
	KindVoted:      {name: "voted", typ: TypeVoted, data: data[Voted](), principal: true},
	KindApproved:   {name: "approved", typ: TypeApproved, data: data[Approved](), role: identity.RoleApproval},
	KindDenied:     {name: "denied", typ: TypeDenied, data: data[Denied](), role: identity.RoleApproval},
	KindExpired:    {name: "expired", typ: TypeExpired, data: data[Expired](), role: identity.RoleApproval},
	KindGranted:    {name: "granted", typ: TypeGranted, data: data[Granted](), role: identity.RoleIssuer},
	KindRefused:    {name: "refused", typ: TypeRefused, data: data[Refused]()}, // by any component
	KindRedeemed:   {name: "redeemed", typ: TypeRedeemed, data: data[Redeemed](), role: identity.RoleRedeemer},
	KindRevoked:    {name: "revoked", typ: TypeRevoked, data: data[Revoked](), role: identity.RoleApproval},
	KindRevoke:     {name: "revoke", typ: TypeRevoke, data: data[Revoke](), principal: true},
	KindLock:       {name: "lock", typ: TypeLock, data: data[Lock](), principal: true},
	KindLocked:     {name: "locked", typ: TypeLocked, data: data[Locked](), role: identity.RoleApproval},
	KindEscalated:  {name: "escalated", typ: TypeEscalated, data: data[Escalated](), role: identity.RoleApproval},
	KindAlerted:    {name: "alerted", typ: TypeAlerted, older: []string{"writ.request.alerted.v1"}, data: data[Alerted](), role: identity.RoleApproval},
	KindReviewed:   {name: "reviewed", typ: TypeReviewed, older: []string{"writ.request.reviewed.v1"}, data: data[Reviewed](), role: identity.RoleApproval},
	KindPolicy:     {name: "policy", typ: TypePolicy, data: data[Policy](), role: identity.RolePolicy},
	KindCheckpoint: {name: "checkpoint", typ: TypeCheckpoint, data: data[Checkpoint](), role: identity.RoleAuditor},
	KindWitnessed:  {name: "witnessed", typ: TypeWitnessed, data: data[Witnessed](), role: identity.RoleAuditor},
	KindState:      {name: "state", typ: TypeState, data: data[State](), principal: true},
	KindStated:     {name: "stated", typ: TypeStated, data: data[Stated](), role: identity.RoleApproval},
	KindCounted:    {name: "counted", typ: TypeCounted, data: data[Counted](), role: identity.RoleApproval},
}

// def returns k's row, the empty one for KindNone or a kind out of range.
func (k Kind) def() kindDef {
	if int(k) < len(kinds) {
		return kinds[k]
	}
	return kindDef{}
}

// Kinds lists every kind, KindNone excluded, in order.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kinds)-1)
	for k := KindNone + 1; int(k) < len(kinds); k++ {
		out = append(out, k)
	}
	return out
}

// Accepts reports whether an event of kind k may carry the CloudEvents
// type typ: the current one, or an earlier version still read.
func (k Kind) Accepts(typ string) bool {
	return k != KindNone && (typ == k.Type() || slices.Contains(k.def().older, typ))
}

// Types lists the CloudEvents types an event of kind k may carry: the
// current one first, then the earlier versions still read.
func (k Kind) Types() []string {
	t := k.Type()
	if t == "" {
		return nil
	}
	out := append([]string{t}, k.def().older...)
	slices.Sort(out[1:])
	return out
}

// String returns the subject token of the kind.
func (k Kind) String() string {
	if int(k) < len(kinds) {
		return kinds[k].name
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Type returns the current CloudEvents type of the kind.
func (k Kind) Type() string { return k.def().typ }

// ParseKind returns the kind named by a subject token.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if kinds[k].name == s {
			return k, nil
		}
	}
	return KindNone, fmt.Errorf("unknown kind %q", s)
}

// FromPrincipal reports whether events of this kind are signed by a
// principal (requester or approver) rather than a pipeline component.
func (k Kind) FromPrincipal() bool { return k.def().principal }

// RoleFor returns the component role entitled to emit events of kind k, or
// "" for principal kinds and for refusals, which any component may emit.
func RoleFor(k Kind) identity.Role { return k.def().role }

// fromAnyComponent reports whether any of a domain's components may sign
// events of kind k (a refusal of what it was handed).
func (k Kind) fromAnyComponent() bool {
	d := k.def()
	return d.typ != "" && !d.principal && d.role == ""
}

// NewData returns a new, empty value of the data type of kind k (a
// *Requested for KindRequested, …), or nil for a kind without one.
func NewData(k Kind) any {
	if d := k.def(); d.data != nil {
		return d.data()
	}
	return nil
}
