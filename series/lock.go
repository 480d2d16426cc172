package series

import (
	"fmt"
	"maps"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// Lock is a lock's history folded (client.Lock opens it): a principal's ask
// to lock or unlock a target, then the approval component's answer, the
// locked event (Done) or a refusal (in Answered).
type Lock struct {
	Tip
	Ask    *events.Lock
	AskSeq uint64
	Done   *events.Locked
}

// Apply folds one record of a lock's history.
func (l Lock) Apply(r events.Record) (Lock, error) {
	if own, err := l.next(r); !own {
		return l, err
	}
	switch d := r.Data.(type) {
	case *events.Lock:
		// A lock lives on an id of its own: the ask, then the answer.
		if l.Ask != nil {
			return l, fmt.Errorf("%w: a lock has an id of its own: a second ask on it", request.ErrIllegal)
		}
		l.Ask, l.AskSeq = d, r.Seq
	case *events.Locked:
		if l.Ask == nil || l.Done != nil {
			return l, fmt.Errorf("%w: locked without an ask, or twice", request.ErrIllegal)
		}
		if d.Target != l.Ask.Target || d.Unlock != l.Ask.Unlock || d.By != l.Ask.By {
			return l, fmt.Errorf("%w: the lock applied is not the one asked for", request.ErrUnjustified)
		}
		l.Done = d
	default:
		return l, notHere(r.Kind, "a lock's")
	}
	return l, nil
}

// Settled reports whether the ask has its answer: locked (or unlocked), or
// refused.
func (l Lock) Settled() bool { return l.Done != nil || refused(l.Tip, l.Ask != nil, l.AskSeq) }

// refused reports whether an ask was refused: the ask itself, or, when no
// genuine ask opened the history (the one sent was not trustworthy), what
// was sent in its place.
func refused(t Tip, asked bool, askSeq uint64) bool {
	if asked {
		return t.Answered[askSeq] != ""
	}
	return len(t.Answered) > 0
}

// StateChange is a state change's history folded (client.SetState opens
// it): a principal's ask to set or delete a resource's or a domain's state,
// then the approval component's answer, the stated event (Done) or a
// refusal (in Answered).
type StateChange struct {
	Tip
	Ask    *events.State
	AskSeq uint64
	Done   *events.Stated
}

// Apply folds one record of a state change's history.
func (c StateChange) Apply(r events.Record) (StateChange, error) {
	if own, err := c.next(r); !own {
		return c, err
	}
	switch d := r.Data.(type) {
	case *events.State:
		// A state change lives on an id of its own, like a lock.
		if c.Ask != nil {
			return c, fmt.Errorf("%w: a state change has an id of its own: a second ask on it", request.ErrIllegal)
		}
		c.Ask, c.AskSeq = d, r.Seq
	case *events.Stated:
		if c.Ask == nil || c.Done != nil {
			return c, fmt.Errorf("%w: state applied without an ask, or twice", request.ErrIllegal)
		}
		if !stateAnswers(c.Ask, d) {
			return c, fmt.Errorf("%w: the change applied is not the one asked for", request.ErrUnjustified)
		}
		c.Done = d
	default:
		return c, notHere(r.Kind, "a state change's")
	}
	return c, nil
}

// Settled reports whether the ask has its answer: applied, or refused.
func (c StateChange) Settled() bool { return c.Done != nil || refused(c.Tip, c.Ask != nil, c.AskSeq) }

// stateAnswers reports whether an applied state change is the one asked
// for: the same entry and operation, and the attributes asked for (a merge
// keeps others besides).
func stateAnswers(a *events.State, d *events.Stated) bool {
	if d.Path != a.Path || d.Op != a.Op || d.By != a.By || d.Reason != a.Reason {
		return false
	}
	if a.Op != events.StateSet {
		return len(d.Attrs) == 0
	}
	if !a.Merge {
		return maps.Equal(d.Attrs, a.Attrs)
	}
	for k, v := range a.Attrs {
		if got, ok := d.Attrs[k]; !ok || got != v {
			return false
		}
	}
	return true
}
