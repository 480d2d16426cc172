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
// Kind says which. Request is the fold of a request's history; for a
// series it holds the series' Tip only (Domain, ID, LastSeq, LastDigest,
// Answered), with status none: where the history ends and what was refused
// in it, which is what a component appending to any history needs. The
// series' own fold is Lock, StateChange… (the zero value for a history of
// another kind).
type Any struct {
	Kind    Kind
	Request request.State
	series  any // the series' fold, by Kind: a Lock, a StateChange…; nil for a request
}

// Lock is the fold of a lock's history.
func (a Any) Lock() Lock { return of[Lock](a) }

// StateChange is the fold of a state change's history.
func (a Any) StateChange() StateChange { return of[StateChange](a) }

// Policy is the fold of a policy record's history.
func (a Any) Policy() PolicyRecord { return of[PolicyRecord](a) }

// Checkpoints is the fold of a checkpoint series.
func (a Any) Checkpoints() Checkpoints { return of[Checkpoints](a) }

// Witness is the fold of a witness's series.
func (a Any) Witness() Witness { return of[Witness](a) }

// Guard is the fold of the guard's series.
func (a Any) Guard() Guard { return of[Guard](a) }

func of[S any](a Any) S {
	s, _ := a.series.(S)
	return s
}

// fold is a series' fold, with its tip.
type fold[S any] interface {
	Folder[S]
	tip() Tip
}

func (t Tip) tip() Tip { return t }

// Apply folds one record of the history, with the fold its first record
// called for; the error says why the record changed nothing.
func (a Any) Apply(r events.Record) (Any, error) {
	if a.Kind == KindNone {
		a.Kind = Of(r)
	}
	switch a.Kind {
	case KindLock:
		return step[Lock](a, r)
	case KindStateChange:
		return step[StateChange](a, r)
	case KindPolicy:
		return step[PolicyRecord](a, r)
	case KindCheckpoints:
		return step[Checkpoints](a, r)
	case KindWitness:
		return step[Witness](a, r)
	case KindGuard:
		return step[Guard](a, r)
	}
	var err error
	a.Request, err = request.Apply(a.Request, r)
	return a, err
}

// step folds r into a's series, of type S, and keeps its tip in Request.
func step[S fold[S]](a Any, r events.Record) (Any, error) {
	s, err := of[S](a).Apply(r)
	t := s.tip()
	a.series = s
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
	t := Tip{LastDigest: events.Prev(r.Data)}
	switch a.Kind {
	case KindLock:
		a.series = Lock{Tip: t}
	case KindStateChange:
		a.series = StateChange{Tip: t}
	case KindPolicy:
		a.series = PolicyRecord{Tip: t}
	case KindCheckpoints:
		a.series = Checkpoints{Tip: t}
	case KindWitness:
		a.series = Witness{Tip: t}
	case KindGuard:
		a.series = Guard{Tip: t}
	}
	a.Request.LastDigest = t.LastDigest
	return a
}
