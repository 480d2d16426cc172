package events

import (
	"fmt"
	"slices"
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

var kindNames = [...]string{
	KindNone:       "",
	KindRequested:  "requested",
	KindRejected:   "rejected",
	KindEvaluated:  "evaluated",
	KindVoted:      "voted",
	KindApproved:   "approved",
	KindDenied:     "denied",
	KindExpired:    "expired",
	KindGranted:    "granted",
	KindRefused:    "refused",
	KindRedeemed:   "redeemed",
	KindRevoked:    "revoked",
	KindRevoke:     "revoke",
	KindLock:       "lock",
	KindLocked:     "locked",
	KindEscalated:  "escalated",
	KindAlerted:    "alerted",
	KindReviewed:   "reviewed",
	KindPolicy:     "policy",
	KindCheckpoint: "checkpoint",
	KindWitnessed:  "witnessed",
	KindState:      "state",
	KindStated:     "stated",
	KindCounted:    "counted",
}

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

var kindTypes = [...]string{
	KindRequested:  TypeRequested,
	KindRejected:   TypeRejected,
	KindEvaluated:  TypeEvaluated,
	KindVoted:      TypeVoted,
	KindApproved:   TypeApproved,
	KindDenied:     TypeDenied,
	KindExpired:    TypeExpired,
	KindGranted:    TypeGranted,
	KindRefused:    TypeRefused,
	KindRedeemed:   TypeRedeemed,
	KindRevoked:    TypeRevoked,
	KindRevoke:     TypeRevoke,
	KindLock:       TypeLock,
	KindLocked:     TypeLocked,
	KindEscalated:  TypeEscalated,
	KindAlerted:    TypeAlerted,
	KindReviewed:   TypeReviewed,
	KindPolicy:     TypePolicy,
	KindCheckpoint: TypeCheckpoint,
	KindWitnessed:  TypeWitnessed,
	KindState:      TypeState,
	KindStated:     TypeStated,
	KindCounted:    TypeCounted,
}

// olderTypes are earlier versions of a kind's type that the trail still
// holds and readers still accept; nothing writes them any more. A
// reviewed.v1 is an approved review (v1 had no denial); an alerted.v1 is
// an alerted.v2 without the review-denied alert.
var olderTypes = map[string]Kind{
	"writ.request.alerted.v1":  KindAlerted,
	"writ.request.reviewed.v1": KindReviewed,
}

// Accepts reports whether an event of kind k may carry the CloudEvents
// type typ: the current one, or an earlier version still read.
func (k Kind) Accepts(typ string) bool {
	return k != KindNone && (typ == k.Type() || olderTypes[typ] == k)
}

// Types lists the CloudEvents types an event of kind k may carry: the
// current one first, then the earlier versions still read.
func (k Kind) Types() []string {
	t := k.Type()
	if t == "" {
		return nil
	}
	out := []string{t}
	for old, ok := range olderTypes {
		if ok == k {
			out = append(out, old)
		}
	}
	slices.Sort(out[1:])
	return out
}

// String returns the subject token of the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Type returns the current CloudEvents type of the kind.
func (k Kind) Type() string {
	if k == KindNone || int(k) >= len(kindTypes) {
		return ""
	}
	return kindTypes[k]
}

// ParseKind returns the kind named by a subject token.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s && k != int(KindNone) {
			return Kind(k), nil
		}
	}
	return KindNone, fmt.Errorf("unknown kind %q", s)
}

// FromPrincipal reports whether events of this kind are signed by a
// principal (requester or approver) rather than a pipeline component.
func (k Kind) FromPrincipal() bool {
	return k == KindRequested || k == KindVoted || k == KindRevoke || k == KindLock || k == KindState
}
