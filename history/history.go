package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/fifo"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

// ErrConflict means another writer extended the history first.
var ErrConflict = store.ErrConflict

// IsConflict reports whether an append failed because the history moved on.
func IsConflict(err error) bool { return store.IsConflict(err) }

// ErrBehind is returned by Load when every read in the time given ended
// before the sequence it had to reach.
var ErrBehind = store.ErrBehind

// maxUnknown bounds how often Extend reads again after an append whose
// outcome it did not learn, to look for it.
const maxUnknown = 2

// maxConflicts bounds how often Extend reads again because other writers
// keep appending first.
const maxConflicts = 16

// Log reads and extends the histories in one audit stream.
type Log struct {
	js      jetstream.JetStream
	stream  string
	reader  store.Reader
	home    string
	checker events.Checker
	clock   func() time.Time
	maxBody int
	seen    *fifo.Cache[string, uint64]
	// appendOnce makes one append attempt; tests replace it to lose an
	// acknowledgement.
	appendOnce func(ctx context.Context, out events.Outgoing, last uint64, filter string) (uint64, error)
}

// Options configure a Log.
type Options struct {
	JS     jetstream.JetStream // appends, and direct reads through its API prefix
	Stream string
	// Home is the domain whose JetStream the connection reaches directly.
	// Another domain's history is read in its own JetStream domain (named
	// as the domain) across leafnodes. "" reads every domain through the
	// connection's JetStream.
	Home    string
	Checker events.Checker   // the trust bundle and limits events are judged by
	Clock   func() time.Time // default time.Now
	// Monotonic makes reads monotonic: the Log remembers, for the last
	// Remember requests it wrote or read (0: 16384), the last sequence it
	// knows each has, and a later read never shows less (a replica that
	// answers behind is asked again). For a client that reads what it
	// wrote; a component reaches the message it was handed (Reach.Seq)
	// instead, and never waits on a memory that a removed message would
	// make wrong for good.
	Monotonic bool
	Remember  int
}

// New returns a Log on a stream.
func New(o Options) *Log {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Remember <= 0 {
		o.Remember = 16384
	}
	var seen *fifo.Cache[string, uint64]
	if o.Monotonic {
		seen = fifo.New[string, uint64](o.Remember)
	}
	maxBody := o.Checker.MaxBody
	if maxBody <= 0 {
		maxBody = events.DefaultMaxBody
	}
	l := &Log{
		js:      o.JS,
		stream:  o.Stream,
		reader:  store.Reader{NC: o.JS.Conn(), Stream: o.Stream, APIPrefix: store.APIPrefixOf(o.JS.Options())},
		home:    o.Home,
		checker: o.Checker,
		clock:   o.Clock,
		maxBody: maxBody,
		seen:    seen,
	}
	l.appendOnce = func(ctx context.Context, out events.Outgoing, last uint64, filter string) (uint64, error) {
		return store.Append(ctx, l.js, l.stream, out, last, filter)
	}
	return l
}

// Reader reads domain's audit stream, wherever it lives (see Options.Home).
func (l *Log) Reader(domain string) store.Reader {
	r := l.reader
	if l.home != "" && domain != l.home && domain != "*" {
		r.APIPrefix = store.DomainAPI(domain)
	}
	return r
}

// Checker judges events by the Log's trust bundle and limits.
func (l *Log) Checker() events.Checker { return l.checker }

// History is a request's history, inspected and folded; or the history
// of a series with an id of its own (a lock, a state change, the guard's
// alerts…), which Series folds.
type History struct {
	Domain, ID string
	Records    []events.Record
	// State is the request folded; for a series' history, only where it
	// ends and what was refused in it (Series.Request), which is what an
	// append needs.
	State request.State
	// Series is the history folded by what its first record opens: a
	// request's (Series.Request is State), or a series' (Series.Lock()…).
	Series series.Any
	Errs   map[uint64]error // why each record changed nothing
	Now    time.Time        // when it was read: the time it was judged at
}

// Record returns the record stored at seq.
func (h *History) Record(seq uint64) (events.Record, bool) {
	for _, r := range h.Records {
		if r.Seq == seq {
			return r, true
		}
	}
	return events.Record{}, false
}

// Reach says how far a read must reach before it is believed.
type Reach struct {
	// Seq is a sequence the history is known to hold (the message being
	// handled); 0: none. What this Log wrote or read of the request
	// before counts too.
	Seq uint64
	// Wait is how long to read again while the history ends before that:
	// past it, store.ErrBehind. 0: until ctx ends.
	Wait time.Duration
	// Digest, when set, is a message the history may hold (one heard of
	// as it was published, before the stream stored it, or never): Load
	// reads again for up to Wait until it holds it, and then returns the
	// history as it is — a message noticed may have been refused.
	Digest string
}

// ErrNotAnID is returned for an id that is not one subject token: a
// wildcard (*, >) or a dotted id would read or extend other histories.
var ErrNotAnID = errors.New("not a request id")

// CheckID refuses what cannot name one history: an id is a subject token
// (a UUID, for what Writ makes; junk published under any literal token
// has a history worth reading too).
func CheckID(id string) error {
	if id == "" || strings.ContainsAny(id, ".*> \t\r\n") {
		return fmt.Errorf("%q is %w", id, ErrNotAnID)
	}
	return nil
}

// HandedWait is how long a consumer handed a message reads its history
// again for it (Reach.Wait) before it gives the message back for later:
// the replica that answered is milliseconds behind the one that delivered.
const HandedWait = 128 * time.Millisecond

// Load reads a request's history, inspects each message and folds them
// once. A history with no message yet is empty, its State naming domain
// and id; a read never shows less of a request than this Log wrote or
// read of it before.
func (l *Log) Load(ctx context.Context, domain, id string, reach Reach) (*History, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	if reach.Digest == "" {
		return l.load(ctx, domain, id, reach)
	}
	giveUp := time.Now().Add(reach.Wait)
	var h *History
	// A message never stored is no wait for the cluster: nobody is told.
	err := store.Retry(store.WithWaiter(ctx, nil), func(ctx context.Context) error {
		var err error
		if h, err = l.load(ctx, domain, id, reach); err != nil {
			return err
		}
		if time.Now().Before(giveUp) && !h.holds(reach.Digest) {
			return fmt.Errorf("%w: %s/%s without the message noticed", ErrBehind, domain, id)
		}
		return nil
	})
	return h, err
}

// holds reports whether the history holds the message with digest d.
func (h *History) holds(d string) bool {
	for _, r := range h.Records {
		if r.Digest == d {
			return true
		}
	}
	return false
}

func (l *Log) load(ctx context.Context, domain, id string, reach Reach) (*History, error) {
	floor := max(reach.Seq, l.known(domain, id))
	msgs, err := l.Reader(domain).LoadReaching(ctx, events.RequestFilter(domain, id), floor, reach.Wait)
	if err != nil {
		return nil, err
	}
	now := l.clock()
	records := make([]events.Record, len(msgs))
	for i, m := range msgs {
		records[i] = l.checker.Inspect(m, now)
	}
	h := fold(domain, id, records, now)
	if len(msgs) > 0 {
		l.note(domain, id, msgs[len(msgs)-1].Seq)
	}
	return h, nil
}

// fold folds inspected records: by what they hold, since a series' id is
// not a request's, and a request published under one is not taken for one.
func fold(domain, id string, records []events.Record, now time.Time) *History {
	h := &History{Domain: domain, ID: id, Now: now, Records: records}
	h.Series, h.Errs = series.Fold[series.Any](records)
	h.State = h.Series.Request
	if h.State.ID == "" {
		// No event yet: what is appended starts this id's history.
		h.State.Domain, h.State.ID = domain, id
	}
	return h
}

// Until is the history as it stood once the record at seq was stored:
// its records up to seq, folded. (The notifier tells of an event by the
// facts as of that event.)
func (h *History) Until(seq uint64) *History {
	i := 0
	for i < len(h.Records) && h.Records[i].Seq <= seq {
		i++
	}
	return fold(h.Domain, h.ID, h.Records[:i:i], h.Now)
}

// Author is who signs what a writer appends: its key, and the CloudEvents
// source naming it.
type Author struct {
	Key    nkeys.KeyPair
	Source string
}

// Event is what a writer appends: its kind, data and, for a kind a
// history may hold several of, its ordinal.
type Event struct {
	Kind    events.Kind
	Ordinal string
	Data    any
	// Cond, when set, is what Extend appends on instead of the history
	// still ending where it was read: for an event decided on something
	// besides its history. One append carries one condition.
	Cond *Cond
}

// Cond is a condition an append is made on: the last message on Filter
// is at sequence Seq (0: there is none). Another message there first is
// ErrConflict, as for a history.
type Cond struct {
	Filter string
	Seq    uint64
}

// Append seals e as by and appends it to the history of domain/id if the
// history still ends at sequence last (0: it has no event yet). Another
// writer first is ErrConflict; a body over the stream's limit is
// events.ErrOversized, and nothing is appended.
func (l *Log) Append(ctx context.Context, domain, id string, last uint64, by Author, e Event) (uint64, error) {
	seq, _, err := l.append(ctx, domain, id, last, events.RequestFilter(domain, id), by, e)
	return seq, err
}

// AppendSealed is Append, and also returns the event as sealed and
// appended (for a writer that goes on from what it wrote: events.Sealed).
func (l *Log) AppendSealed(ctx context.Context, domain, id string, last uint64, by Author, e Event) (uint64, events.Outgoing, error) {
	return l.append(ctx, domain, id, last, events.RequestFilter(domain, id), by, e)
}

// AppendSeries is Append for a series of one kind kept under an id of its
// own (checkpoints, witness records): only that kind's subject counts as
// the history, so that junk published under the id with another kind
// cannot stop the series.
// It also returns the event as appended (a checkpoint is kept as the
// series' last).
func (l *Log) AppendSeries(ctx context.Context, domain, id string, last uint64, by Author, e Event) (uint64, events.Outgoing, error) {
	return l.append(ctx, domain, id, last, events.Subject(domain, id, e.Kind), by, e)
}

func (l *Log) append(ctx context.Context, domain, id string, last uint64, filter string, by Author, e Event) (uint64, events.Outgoing, error) {
	if err := CheckID(id); err != nil {
		return 0, events.Outgoing{}, err
	}
	out, err := events.Seal(events.Draft{
		Domain: domain, RequestID: id, Kind: e.Kind, Ordinal: e.Ordinal,
		Source: by.Source, Time: l.clock(), Data: e.Data,
	}, by.Key)
	if err != nil {
		return 0, out, err
	}
	// Every reader refuses a body over the limit: appending one would
	// record what nobody trusts.
	if len(out.Body) > l.maxBody {
		return 0, out, fmt.Errorf("%w: %s of %d bytes, limit %d", events.ErrOversized, e.Kind, len(out.Body), l.maxBody)
	}
	seq, err := l.appendOnce(ctx, out, last, filter)
	if err != nil {
		return 0, out, err
	}
	// The next reader of this history need not check it again.
	l.checker.Remember(out, seq)
	l.note(domain, id, seq)
	return seq, out, nil
}

// Build says what to append next to a history, from what it holds: nil
// for nothing.
type Build func(h *History) (*Event, error)

// Extended is what Extend did.
type Extended struct {
	Seq     uint64   // where the event is stored; 0 when Build asked for nothing
	Event   *Event   // what Build asked for; nil for nothing
	History *History // the history Build decided on (the event not in it)
}

// Extend reads the history of domain/id as far as reach says, asks build
// what to append, and appends it as by. When another writer appended
// first, it reads the history again and asks build again (at most 16
// times; then ErrConflict). An append whose outcome was not learned (no
// acknowledgement) is looked for when the history is read again: found,
// it is the outcome, and it is not made twice. Errors from build and from
// reading are returned as they are.
func (l *Log) Extend(ctx context.Context, domain, id string, reach Reach, by Author, build Build) (Extended, error) {
	mine := map[string]*Event{} // message ids this call sealed: what build asked for
	unknown := 0                // appends whose outcome was not learned
	for range maxConflicts {
		h, err := l.Load(ctx, domain, id, reach)
		if err != nil {
			return Extended{}, err
		}
		for _, r := range h.Records {
			if e := mine[r.Envelope.ID]; r.Valid() && e != nil {
				// An earlier attempt landed; its acknowledgement was lost.
				return Extended{Seq: r.Seq, Event: e, History: h}, nil
			}
		}
		e, err := build(h)
		if err != nil || e == nil {
			return Extended{Event: e, History: h}, err
		}
		last, filter := h.State.LastSeq, events.RequestFilter(domain, id)
		if e.Cond != nil {
			last, filter = e.Cond.Seq, e.Cond.Filter
		}
		seq, out, err := l.append(ctx, domain, id, last, filter, by, *e)
		if out.MsgID != "" {
			mine[out.MsgID] = e
		}
		switch {
		case err == nil:
			return Extended{Seq: seq, Event: e, History: h}, nil
		case IsConflict(err):
			continue
		case store.IsUnknownOutcome(err) && ctx.Err() == nil && unknown < maxUnknown:
			// Each append already waited through what the cluster may
			// cure (store.Retry): look for it once more, then say so.
			unknown++
			continue
		}
		return Extended{Event: e, History: h}, err
	}
	return Extended{}, ErrConflict
}

func (l *Log) known(domain, id string) uint64 {
	if l.seen == nil {
		return 0
	}
	seq, _ := l.seen.Get(domain + "/" + id)
	return seq
}

// note remembers that domain/id holds sequence seq (Monotonic).
func (l *Log) note(domain, id string, seq uint64) {
	if l.seen == nil {
		return
	}
	l.seen.Update(domain+"/"+id, func(old uint64, _ bool) uint64 { return max(old, seq) })
}
