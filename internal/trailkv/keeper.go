package trailkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/internal/store"
)

// Keeper makes a bucket hold the trail's word on every key the trail
// speaks for. Only the component that owns the bucket runs one: it
// applies each event it records (Apply), and puts back what anyone else
// changes (Run).
type Keeper[V any] struct {
	Index  *Index[V]
	NC     *nats.Conn // reads the bucket's stream for a comparison
	Bucket func(context.Context) (jetstream.KeyValue, error)
	// Value is the bucket value the trail's word asks for, or false when
	// it asks for no entry (an unlock, a deletion).
	Value func(V) ([]byte, bool)
	What  string // what the bucket holds, for log lines: "lock", "resource state"
	Log   *slog.Logger
	Clock func() time.Time
	// Every is how often the whole bucket is compared with the trail
	// (default 30s); a change in the bucket is looked at as it happens.
	Every time.Duration
	// Grace is how long the writer of a new event has to apply it
	// (default 2s): a difference with an event younger than that is put
	// right quietly, since it is most likely that write on its way.
	Grace time.Duration
	// DropUnbacked deletes an entry no event in the trail records, rather
	// than leave it (and report it): for a bucket whose entries grant
	// something when present (resource state a policy reads), an entry
	// nobody recorded must not count.
	DropUnbacked bool

	mu       sync.Mutex
	unbacked map[string]uint64 // key → revision already reported
}

// Outcome is what Apply found and did.
type Outcome uint8

// Outcomes.
const (
	Agreed   Outcome = iota + 1 // the bucket held the trail's word already
	Written                     // the keeper wrote the trail's word
	Unbacked                    // the bucket holds an entry the trail does not speak for; left as it is
	Unknown                     // neither the trail nor the bucket has the key
)

// maxRounds bounds Apply's retries when other writers keep changing the
// key under it.
const maxRounds = 8

// ErrBusy is returned when the key kept changing under Apply.
var ErrBusy = errors.New("trailkv: the bucket entry kept changing")

// Apply makes the bucket hold the trail's latest word on key: it reads
// the bucket, then the trail (floor as for Sync), and writes when they
// differ, on the condition that the entry is still the one it read. The
// order matters: the trail read begins after the bucket read, so the
// trail knows every event whose write the bucket showed, and a value it
// writes is never older than the one it replaces.
func (k *Keeper[V]) Apply(ctx context.Context, key string, floor uint64) (Outcome, error) {
	kv, err := k.Bucket(ctx)
	if err != nil {
		return 0, err
	}
	for range maxRounds {
		var cur jetstream.KeyValueEntry
		switch e, err := kv.Get(ctx, key); {
		case err == nil:
			cur = e
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return 0, fmt.Errorf("trailkv: read %s: %w", key, err)
		}
		if err := k.Index.Sync(ctx, floor); err != nil {
			return 0, err
		}
		e, ok := k.Index.Get(key)
		if !ok {
			if cur != nil {
				return Unbacked, nil
			}
			return Unknown, nil
		}
		want, present := k.Value(e.Value)
		switch {
		case present && cur != nil && bytes.Equal(cur.Value(), want), !present && cur == nil:
			return Agreed, nil
		case present && cur == nil:
			_, err = kv.Create(ctx, key, want)
		case present:
			_, err = kv.Update(ctx, key, want, cur.Revision())
		default:
			err = kv.Delete(ctx, key, jetstream.LastRevision(cur.Revision()))
		}
		switch {
		case err == nil:
			return Written, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another writer came between: read both again
		default:
			return 0, fmt.Errorf("trailkv: write %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("%w: %s", ErrBusy, key)
}

// Reconcile compares the whole bucket with the trail: it puts back every
// entry that differs from the trail's word (a warning says which, unless
// the word is too new to tell from its own write on its way) and reports
// each entry the trail does not speak for once per revision.
func (k *Keeper[V]) Reconcile(ctx context.Context) error {
	kv, err := k.Bucket(ctx)
	if err != nil {
		return err
	}
	bucket, err := k.snapshot(ctx, kv)
	if err != nil {
		return err
	}
	// After the snapshot: the trail knows every event behind it.
	if err := k.Index.Sync(ctx, 0); err != nil {
		return err
	}
	trail := k.Index.Entries()
	keys := make([]string, 0, len(bucket)+len(trail))
	for key := range bucket {
		keys = append(keys, key)
	}
	for key := range trail {
		if _, ok := bucket[key]; !ok {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	var errs []error
	for _, key := range keys {
		cur, inBucket := bucket[key]
		e, inTrail := trail[key]
		if !inTrail {
			if err := k.unbacked1(ctx, kv, key, cur.revision); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		want, present := k.Value(e.Value)
		if present == inBucket && (!present || bytes.Equal(cur.value, want)) {
			continue
		}
		if err := k.restore(ctx, key, "compared with the trail"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restore applies the trail's word on key after the bucket was seen to
// differ, and says so.
func (k *Keeper[V]) restore(ctx context.Context, key, how string) error {
	out, err := k.Apply(ctx, key, 0)
	if err != nil {
		return err
	}
	switch out {
	case Written:
		e, _ := k.Index.Get(key)
		level := slog.LevelWarn
		if k.clock().Sub(e.Time) < k.grace() {
			level = slog.LevelDebug // most likely its own write, still on its way
		}
		k.Log.Log(ctx, level, "the "+k.What+" bucket disagreed with the trail; put back as the trail says",
			"key", key, "how", how, "trail_seq", e.Seq, "id", e.ID)
	case Unbacked:
		if kv, err := k.Bucket(ctx); err == nil {
			if cur, err := kv.Get(ctx, key); err == nil {
				return k.unbacked1(ctx, kv, key, cur.Revision())
			}
		}
	}
	return nil
}

// unbacked1 deals with an entry at revision the trail does not speak
// for: deleted (DropUnbacked) or reported once.
func (k *Keeper[V]) unbacked1(ctx context.Context, kv jetstream.KeyValue, key string, revision uint64) error {
	if !k.DropUnbacked {
		k.reportUnbacked(key, revision)
		return nil
	}
	err := kv.Delete(ctx, key, jetstream.LastRevision(revision))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // changed since: looked at again as it happens
	}
	if err != nil {
		return fmt.Errorf("trailkv: delete %s: %w", key, err)
	}
	k.Log.Warn("the "+k.What+" bucket held an entry no event in the trail records; deleted (set it with a recorded ask)",
		"key", key, "revision", revision)
	return nil
}

func (k *Keeper[V]) reportUnbacked(key string, revision uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.unbacked == nil {
		k.unbacked = map[string]uint64{}
	}
	if k.unbacked[key] == revision {
		return
	}
	k.unbacked[key] = revision
	k.Log.Warn("the "+k.What+" bucket holds an entry no event in the trail records; left as it is (an earlier Writ, or someone with rights to the bucket, wrote it)",
		"key", key, "revision", revision)
}

// Run compares the bucket with the trail at once and every Every, and
// looks at each change to the bucket as it happens, until ctx ends.
func (k *Keeper[V]) Run(ctx context.Context) error {
	kv, err := k.Bucket(ctx)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("trailkv: watch %s: %w", k.What, err)
	}
	defer func() {
		if ctx.Err() == nil { // else the client ended it (see kvwatch)
			_ = w.Stop()
		}
	}()
	every := k.Every
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	if err := k.Reconcile(ctx); err != nil && ctx.Err() == nil {
		k.Log.Warn("could not compare the "+k.What+" bucket with the trail", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := k.Reconcile(ctx); err != nil && ctx.Err() == nil {
				k.Log.Warn("could not compare the "+k.What+" bucket with the trail", "err", err)
			}
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil // the client ended the watch with ctx
				}
				return fmt.Errorf("trailkv: the watch of the %s bucket ended", k.What)
			}
			if e == nil {
				continue
			}
			how := "changed in the bucket"
			if e.Operation() != jetstream.KeyValuePut {
				how = "deleted from the bucket"
			}
			if err := k.restore(ctx, e.Key(), how); err != nil && ctx.Err() == nil {
				k.Log.Warn("could not put the "+k.What+" bucket entry back", "key", e.Key(), "err", err)
			}
		}
	}
}

func (k *Keeper[V]) clock() time.Time {
	if k.Clock == nil {
		return time.Now()
	}
	return k.Clock()
}

func (k *Keeper[V]) grace() time.Duration {
	if k.Grace <= 0 {
		return 2 * time.Second
	}
	return k.Grace
}

// entry is a live bucket entry as a snapshot read it.
type entry struct {
	value    []byte
	revision uint64
}

// snapshot reads every live entry of the bucket with direct gets on its
// stream: a watch would create a consumer, and a reader needs none.
func (k *Keeper[V]) snapshot(ctx context.Context, kv jetstream.KeyValue) (map[string]entry, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("trailkv: read the bucket: %w", err)
	}
	bucket := st.Bucket()
	prefix := "$KV." + bucket + "."
	msgs, err := store.Reader{NC: k.NC, Stream: "KV_" + bucket}.Load(ctx, prefix+">", 1)
	if err != nil {
		return nil, fmt.Errorf("trailkv: read the bucket: %w", err)
	}
	out := map[string]entry{}
	for _, m := range msgs { // in stream order: the last of each key wins
		key := strings.TrimPrefix(m.Subject, prefix)
		switch op := m.Header[kvOperation]; {
		case len(op) > 0 && (op[len(op)-1] == "DEL" || op[len(op)-1] == "PURGE"):
			delete(out, key)
		default:
			out[key] = entry{value: m.Body, revision: m.Seq}
		}
	}
	return out, nil
}

// kvOperation is the header that marks a KV delete or purge.
const kvOperation = "KV-Operation"
