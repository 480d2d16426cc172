package series

import (
	"fmt"
	"maps"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// Tip is what every series' fold holds, whatever the series records: its
// id, where its history ends (the next event chains to LastDigest and is
// appended expecting LastSeq), and what components refused in it.
type Tip struct {
	Domain     string
	ID         string
	LastSeq    uint64
	LastDigest string
	// Answered maps the sequence of each message a component refused (or
	// rejected) to the reason code, as request.State.Answered does.
	Answered map[uint64]string
}

// next advances the tip over r, the record after it, and reports whether
// r is the series' own fold's to judge: a trustworthy record that chains to
// the one before (request.Link), and not a component's answer to an input
// (refused, or rejected: a request published under a series' id), which
// the tip records and which changes nothing else.
func (t *Tip) next(r events.Record) (own bool, err error) {
	prev := t.LastDigest
	t.LastSeq, t.LastDigest = r.Seq, r.Digest
	if t.ID == "" {
		t.Domain, t.ID = r.Domain, r.RequestID
	}
	if err := request.Link(prev, r); err != nil {
		return false, err
	}
	switch d := r.Data.(type) {
	case *events.Refused:
		t.answer(d.RefSeq, d.Code)
		return false, nil
	case *events.Rejected:
		t.answer(d.RefSeq, d.Code)
		return false, nil
	}
	return true, nil
}

// answer records a refusal in a copy of the map: the state Apply was given
// may be shared, and must not see it.
func (t *Tip) answer(seq uint64, code string) {
	m := make(map[uint64]string, len(t.Answered)+1)
	maps.Copy(m, t.Answered)
	m[seq] = code
	t.Answered = m
}

// notHere is the error for a record of a kind the series does not hold.
func notHere(k events.Kind, series string) error {
	return fmt.Errorf("%w: a %s event in %s history", request.ErrIllegal, k, series)
}

// Folder is a fold as a method: the state after one more record, or the
// state with only its tip advanced and the error that says why the record
// changed nothing else.
type Folder[S any] interface {
	Apply(r events.Record) (S, error)
}

// Fold applies every record in order to the zero state and returns the
// state together with the error of each record that changed nothing, by
// sequence.
func Fold[S Folder[S]](records []events.Record) (S, map[uint64]error) {
	var s S
	var errs map[uint64]error
	for _, r := range records {
		var err error
		if s, err = s.Apply(r); err != nil {
			if errs == nil {
				errs = make(map[uint64]error)
			}
			errs[r.Seq] = err
		}
	}
	return s, errs
}
