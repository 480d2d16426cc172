package trailkv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// Entry is the trail's latest word on a key.
type Entry[V any] struct {
	Seq    uint64    // stream sequence of the event
	Time   time.Time // when the stream stored it
	Domain string
	ID     string // the history it belongs to
	Value  V
}

// FoldFunc reads a valid event of the index's kind: the bucket key it
// speaks for and what it says, or false when it speaks for none.
type FoldFunc[V any] func(r events.Record) (key string, v V, ok bool)

// ErrBehind is returned by Sync when the stream's answers do not reach
// the sequence asked for in time (a replica behind its leader).
var ErrBehind = errors.New("trailkv: the trail's answers stay behind")

// Index is the trail's latest word per key for one kind of event, read
// with batched direct gets (no consumer): Sync reads what was appended
// since the last one.
type Index[V any] struct {
	reader  store.Reader
	checker events.Checker
	kind    events.Kind
	filter  string
	fold    FoldFunc[V]

	mu      sync.RWMutex
	next    uint64 // the first stream sequence not read yet
	entries map[string]Entry[V]
	counted map[string]struct{} // histories whose event counted

	smu     sync.Mutex // one read at a time
	started atomic.Uint64
	done    atomic.Uint64
	ready   chan struct{}
	once    sync.Once
}

// NewIndex returns an index of kind's events in every domain of the
// stream reader reads; checker judges them. Sync (or Run) fills it.
func NewIndex[V any](reader store.Reader, checker events.Checker, kind events.Kind, fold FoldFunc[V]) *Index[V] {
	return &Index[V]{
		reader: reader, checker: checker, kind: kind, filter: events.KindFilter(kind), fold: fold,
		next: 1, entries: map[string]Entry[V]{}, counted: map[string]struct{}{}, ready: make(chan struct{}),
	}
}

// Sync reads the trail from where the last read ended, and returns once a
// read that began after the call has ended: whatever the stream stored
// before Sync was called is then in the index. With floor > 0 it also
// waits for the read to reach that stream sequence (an event of the
// index's kind the caller knows is stored: a replica answering the read
// may be behind).
func (x *Index[V]) Sync(ctx context.Context, floor uint64) error {
	want := x.started.Load() + 1
	x.smu.Lock()
	defer x.smu.Unlock()
	if x.done.Load() >= want && x.reached(floor) {
		return nil // a read that began after the call has ended
	}
	n := x.started.Add(1)
	giveUp := time.Now().Add(5 * time.Second)
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		x.mu.RLock()
		from := x.next
		x.mu.RUnlock()
		msgs, err := x.reader.Load(ctx, x.filter, from)
		if err != nil {
			return fmt.Errorf("trailkv: read %s: %w", x.filter, err)
		}
		x.apply(msgs)
		if x.reached(floor) {
			break
		}
		if time.Now().Add(pause).After(giveUp) {
			return fmt.Errorf("%w: %s ends before sequence %d", ErrBehind, x.filter, floor)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrBehind, ctx.Err())
		case <-time.After(pause):
		}
	}
	x.done.Store(n)
	x.once.Do(func() { close(x.ready) })
	return nil
}

func (x *Index[V]) reached(floor uint64) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return floor == 0 || x.next > floor
}

func (x *Index[V]) apply(msgs []events.Message) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, m := range msgs {
		x.next = max(x.next, m.Seq+1)
		r := x.checker.Inspect(m, m.Time)
		if !r.Valid() || r.Kind != x.kind {
			continue
		}
		id := r.Domain + "/" + r.RequestID
		if _, dup := x.counted[id]; dup {
			continue
		}
		key, v, ok := x.fold(r)
		if !ok {
			continue
		}
		x.counted[id] = struct{}{}
		if cur, has := x.entries[key]; has && cur.Seq >= m.Seq {
			continue
		}
		x.entries[key] = Entry[V]{Seq: m.Seq, Time: m.Time, Domain: r.Domain, ID: r.RequestID, Value: v}
	}
}

// GetAt returns the trail's latest word on key, as Get does, and read, the
// stream sequence of the last event on the index's Filter it has read (0:
// none), as of one moment. An append made on the condition that the last
// event on Filter is still at read is made only while that word is still
// the latest (a merge adds to the entry it read, and to no older one).
func (x *Index[V]) GetAt(key string) (e Entry[V], ok bool, read uint64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok = x.entries[key]
	return e, ok, x.next - 1
}

// Filter is the subject filter of the events the index reads.
func (x *Index[V]) Filter() string { return x.filter }

// Get returns the trail's latest word on key, if it has one.
func (x *Index[V]) Get(key string) (Entry[V], bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.entries[key]
	return e, ok
}

// Entries returns a copy of every key's latest word.
func (x *Index[V]) Entries() map[string]Entry[V] {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return maps.Clone(x.entries)
}

// Started returns how many reads have begun; a read numbered above it
// begins after this call.
func (x *Index[V]) Started() uint64 { return x.started.Load() }

// Done returns the number of the last read that ended.
func (x *Index[V]) Done() uint64 { return x.done.Load() }

// Ready reports whether a first read has ended.
func (x *Index[V]) Ready() bool {
	select {
	case <-x.ready:
		return true
	default:
		return false
	}
}

// WaitReady waits until a first read has ended.
func (x *Index[V]) WaitReady(ctx context.Context) error {
	select {
	case <-x.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run reads the trail at once, then every every and whenever kick
// delivers, until ctx ends. A failed read is tried again on the next turn.
func (x *Index[V]) Run(ctx context.Context, every time.Duration, kick <-chan struct{}, log *slog.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := x.Sync(ctx, 0); err != nil && ctx.Err() == nil {
			log.Warn("could not read the trail", "kind", x.kind.String(), "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-kick:
		}
	}
}
