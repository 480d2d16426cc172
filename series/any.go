package series

import (
	"fmt"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// Kind is what a history records: a request, or one of the series.
type Kind uint8

// The kinds of history. The zero value means none yet.
const (
	KindNone Kind = iota
	KindRequest
	KindLock
	KindStateChange
	KindPolicy
	KindCheckpoints
	KindWitness
	KindGuard
)

var kindNames = [...]string{"none", "request", "lock", "state change", "policy record", "checkpoints", "witness", "guard"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Of says what the history whose first record is r records. A series
// opens with its own first event, appended to an id with no history (an
// ask, a policy record, a checkpoint…), and a request with its request: so
// the first record, trustworthy or not, says which fold judges the rest.
// Anything that opens no series is a request's history.
func Of(r events.Record) Kind {
	switch r.Kind {
	case events.KindLock, events.KindLocked:
		return KindLock
	case events.KindState, events.KindStated:
		return KindStateChange
	case events.KindPolicy:
		return KindPolicy
	case events.KindCheckpoint:
		return KindCheckpoints
	case events.KindWitnessed:
		return KindWitness
	case events.KindAlerted:
		if a, ok := r.Data.(*events.Alerted); (ok && events.IsGuardAlert(a.Alert)) || r.RequestID == events.GuardID(r.Domain) {
			return KindGuard
		}
	}
	return KindRequest
}

// Any is a history folded by the fold its first record calls for (Of):
// Kind says which, and the field of that name holds it.
//
// Request is the fold of a request's history. For a series it holds the
// series' Tip only (Domain, ID, LastSeq, LastDigest, Answered), with
// status none: where the history ends and what was refused in it, which
// is what a component appending to any history needs.
type Any struct {
	Kind        Kind
	Request     request.State
	Lock        Lock
	StateChange StateChange
	Policy      PolicyRecord
	Checkpoints Checkpoints
	Witness     Witness
	Guard       Guard
}

// Apply folds one record of the history, with the fold its first record
// called for; the error says why the record changed nothing.
func (a Any) Apply(r events.Record) (Any, error) {
	if a.Kind == KindNone {
		a.Kind = Of(r)
	}
	var err error
	var t Tip
	switch a.Kind {
	case KindLock:
		a.Lock, err = a.Lock.Apply(r)
		t = a.Lock.Tip
	case KindStateChange:
		a.StateChange, err = a.StateChange.Apply(r)
		t = a.StateChange.Tip
	case KindPolicy:
		a.Policy, err = a.Policy.Apply(r)
		t = a.Policy.Tip
	case KindCheckpoints:
		a.Checkpoints, err = a.Checkpoints.Apply(r)
		t = a.Checkpoints.Tip
	case KindWitness:
		a.Witness, err = a.Witness.Apply(r)
		t = a.Witness.Tip
	case KindGuard:
		a.Guard, err = a.Guard.Apply(r)
		t = a.Guard.Tip
	default:
		a.Request, err = request.Apply(a.Request, r)
		return a, err
	}
	a.Request = request.State{Domain: t.Domain, ID: t.ID, LastSeq: t.LastSeq, LastDigest: t.LastDigest, Answered: t.Answered}
	return a, err
}

// Tip is where the history ends and what was refused in it, whatever it
// records.
func (a Any) Tip() Tip {
	s := a.Request
	return Tip{Domain: s.Domain, ID: s.ID, LastSeq: s.LastSeq, LastDigest: s.LastDigest, Answered: s.Answered}
}

// After returns the empty fold of r's history as if it ended at the record
// r chains to: to judge a history from r on when what came before r is
// gone (the stream's start moved past it).
func After(r events.Record) Any {
	a := Any{Kind: Of(r)}
	prev := events.Prev(r.Data)
	switch a.Kind {
	case KindLock:
		a.Lock.LastDigest = prev
	case KindStateChange:
		a.StateChange.LastDigest = prev
	case KindPolicy:
		a.Policy.LastDigest = prev
	case KindCheckpoints:
		a.Checkpoints.LastDigest = prev
	case KindWitness:
		a.Witness.LastDigest = prev
	case KindGuard:
		a.Guard.LastDigest = prev
	}
	a.Request.LastDigest = prev
	return a
}
