package series

import (
	"fmt"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// PolicyRecord is a policy record's history folded: the policy set and
// flows the policy component loaded, recorded once under an id derived
// from their digests (events.PolicyID), so that every evaluation can be
// re-run from the trail.
type PolicyRecord struct {
	Tip
	Record *events.Policy
}

// Apply folds one record of a policy record's history.
func (p PolicyRecord) Apply(r events.Record) (PolicyRecord, error) {
	if own, err := p.next(r); !own {
		return p, err
	}
	d, ok := r.Data.(*events.Policy)
	switch {
	case !ok:
		return p, notHere(r.Kind, "a policy record's")
	case p.Record != nil:
		return p, fmt.Errorf("%w: a policy record has an id of its own, once", request.ErrIllegal)
	}
	p.Record = d
	return p, nil
}

// Checkpoints is a domain's checkpoint series folded (events.CheckpointID):
// signed heads of its audit stream's Merkle tree, each covering at least
// what the one before it covered, of the same stream.
type Checkpoints struct {
	Tip
	Last *events.Checkpoint
}

// Apply folds one record of a checkpoint series.
func (c Checkpoints) Apply(r events.Record) (Checkpoints, error) {
	if own, err := c.next(r); !own {
		return c, err
	}
	d, ok := r.Data.(*events.Checkpoint)
	if !ok {
		return c, notHere(r.Kind, "a checkpoint series'")
	}
	if l := c.Last; l != nil && (d.TreeSize < l.TreeSize || d.LastSeq < l.LastSeq || d.Stream != l.Stream) {
		return c, fmt.Errorf("%w: checkpoint of %d messages after one of %d", request.ErrIllegal, d.TreeSize, l.TreeSize)
	}
	c.Last = d
	return c, nil
}

// Witness is a witness's series folded (events.WitnessID): another
// domain's checkpoints as this domain's auditor recorded them, of that one
// domain, each later in its stream than the one before.
type Witness struct {
	Tip
	Last *events.Witnessed
}

// Apply folds one record of a witness's series.
func (w Witness) Apply(r events.Record) (Witness, error) {
	if own, err := w.next(r); !own {
		return w, err
	}
	d, ok := r.Data.(*events.Witnessed)
	if !ok {
		return w, notHere(r.Kind, "a witness series'")
	}
	if l := w.Last; l != nil && (d.Domain != l.Domain || d.Seq <= l.Seq) {
		return w, fmt.Errorf("%w: witnessed %s #%d after %s #%d", request.ErrIllegal, d.Domain, d.Seq, l.Domain, l.Seq)
	}
	w.Last = d
	return w, nil
}

// Guard is the guard's series folded (events.GuardID): its alerts that
// what Writ relies on was weakened, and restored. Restored answers a
// weakened; weakened may follow weakened (what is wrong changed).
type Guard struct {
	Tip
	Last *events.Alerted // weakened, or restored
}

// Apply folds one record of the guard's series.
func (g Guard) Apply(r events.Record) (Guard, error) {
	if own, err := g.next(r); !own {
		return g, err
	}
	d, ok := r.Data.(*events.Alerted)
	switch {
	case !ok:
		return g, notHere(r.Kind, "the guard's")
	case !events.IsGuardAlert(d.Alert):
		return g, fmt.Errorf("%w: a %s alert in the guard's history", request.ErrIllegal, d.Alert)
	case d.Alert == events.AlertRestored && (g.Last == nil || g.Last.Alert != events.AlertWeakened):
		return g, fmt.Errorf("%w: restored with nothing weakened", request.ErrIllegal)
	}
	g.Last = d
	return g, nil
}
