package locks

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/kvwatch"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/trailkv"
)

// Bucket is the KV bucket of the lock list: part of the wire contract.
const Bucket = "writ-locks"

// Errors.
var (
	ErrLocked   = errors.New("locked")
	ErrNotReady = errors.New("the lock list is not loaded yet")
	ErrTarget   = errors.New("bad lock target")
)

// Key is the bucket key of a target.
func Key(t events.LockTarget) (string, error) {
	switch t.Type {
	case events.LockPrincipal:
		d, n, ok := strings.Cut(t.Name, "/")
		if !ok || !identity.ValidDomainName(d) || n == "" {
			return "", fmt.Errorf("%w: a principal is domain/name", ErrTarget)
		}
		// Hex keeps distinct names distinct (bob.smith, bob_smith, bob@smith).
		return "principal." + d + "." + hex.EncodeToString([]byte(n)), nil
	case events.LockKey:
		if !nkeys.IsValidPublicUserKey(t.Name) {
			return "", fmt.Errorf("%w: %q is not a user public key", ErrTarget, t.Name)
		}
		return "key." + t.Name, nil
	case events.LockDomain:
		if !identity.ValidDomainName(t.Name) {
			return "", fmt.Errorf("%w: %q is not a domain name", ErrTarget, t.Name)
		}
		return "domain." + t.Name, nil
	}
	return "", fmt.Errorf("%w: type %q", ErrTarget, t.Type)
}

func bucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return ensure(ctx, js, 1)
}

// Ensure creates the bucket, with replicas copies (those of the audit
// stream, on a cluster), if it does not exist yet.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := ensure(ctx, js, replicas)
	return err
}

// BucketConfig is the bucket's configuration, with replicas copies: what
// Ensure creates and what Writ's guard (consumers.Guard) holds it to.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "writ lock list", History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	}
}

func ensure(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := kvwatch.Bucket(ctx, js, BucketConfig(replicas))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Lock is the trail's word on a target: the last locked event about it.
type Lock struct {
	Target events.LockTarget
	Locked bool // false: unlocked
	By     events.PrincipalRef
	Reason string
}

// Index is the lock list as the trail records it.
type Index = trailkv.Index[Lock]

// NewIndex returns the trail's lock list, read with reader and judged by
// checker: every domain's valid locked events in the stream, the last one
// about a target winning.
func NewIndex(reader store.Reader, checker events.Checker) *Index {
	return trailkv.NewIndex(reader, checker, events.KindLocked, func(r events.Record) (string, Lock, bool) {
		d, ok := r.Data.(*events.Locked)
		if !ok {
			return "", Lock{}, false
		}
		key, err := Key(d.Target)
		if err != nil {
			return "", Lock{}, false
		}
		return key, Lock{Target: d.Target, Locked: !d.Unlock, By: d.By, Reason: d.Reason}, true
	})
}

// Keeper writes the trail's lock list into the bucket.
type Keeper = trailkv.Keeper[Lock]

// NewKeeper returns the keeper of the bucket, for the approval component:
// the only writer of the bucket.
func NewKeeper(nc *nats.Conn, js jetstream.JetStream, index *Index, log *slog.Logger, clock func() time.Time) *Keeper {
	return &Keeper{
		Index:  index,
		NC:     nc,
		Bucket: func(ctx context.Context) (jetstream.KeyValue, error) { return bucket(ctx, js) },
		Value: func(l Lock) ([]byte, bool) {
			if !l.Locked {
				return nil, false
			}
			return []byte(l.Reason), true
		},
		What: "lock", Log: log, Clock: clock,
	}
}

// SyncEvery is how often a List reads the trail when nothing prompts it.
const SyncEvery = 5 * time.Second

// List is the lock list a component or a redeemer checks. The trail's
// locked events are the authority; the bucket is how a change arrives at
// once. Where the trail has a word on a target, that word holds, whatever
// the bucket says: an entry deleted from the bucket unlocks nobody, and an
// entry put there by hand locks nobody the trail unlocked. A target the
// trail says nothing of is locked while the bucket holds it (an entry an
// earlier Writ wrote). The trail is read when it has news: a locked event
// published, a bucket entry changed, a check about a target the bucket or
// the trail locks; and every SyncEvery.
type List struct {
	nc    *nats.Conn
	kv    *kvwatch.Cache[string]
	trail *Index
	news  chan *nats.Msg // locked events as they are published
	kick  chan struct{}
	log   *slog.Logger
	// changed is told of every bucket change (OnChange).
	changed func()

	mu      sync.Mutex
	gone    map[string]uint64 // key → trail reads begun when its bucket entry went away
	sub     *nats.Subscription
	dropped int // news the client dropped, as last seen
	// pending is the number of the first trail read that must end before
	// a check may answer from memory: one begun after news was last heard.
	// Every check waits for it, not only the one that heard the news.
	pending atomic.Uint64
}

// NewList returns a lock list; Run fills it. js and reader must use nc,
// the connection of the component that checks: a locked event published
// reaches it before any later input does. reader reads the audit stream,
// checker judges its events.
func NewList(nc *nats.Conn, js jetstream.JetStream, reader store.Reader, checker events.Checker, log *slog.Logger) *List {
	open := func(ctx context.Context) (jetstream.KeyValue, error) { return bucket(ctx, js) }
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &List{
		nc:    nc,
		kv:    kvwatch.New(open, func(e jetstream.KeyValueEntry) string { return string(e.Value()) }),
		trail: NewIndex(reader, checker),
		news:  make(chan *nats.Msg, 256),
		kick:  make(chan struct{}, 1),
		log:   log,
		gone:  map[string]uint64{},
	}
	l.kv.OnChange(func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			l.mu.Lock()
			l.gone[e.Key()] = l.trail.Started()
			l.mu.Unlock()
		}
		select { // read the trail soon: it has news, or should have
		case l.kick <- struct{}{}:
		default:
		}
		if l.changed != nil {
			l.changed()
		}
	})
	return l
}

// OnChange makes the list call fn after each change of the bucket (a lock
// applied, lifted, or tampered with): Check then answers with it, reading
// the trail where the bucket names the target. fn must not block. Call it
// before Run.
func (l *List) OnChange(fn func()) { l.changed = fn }

// Run watches the bucket, hears locked events as they are published and
// reads the trail until ctx ends.
func (l *List) Run(ctx context.Context) error {
	sub, err := l.nc.ChanSubscribe(events.KindFilter(events.KindLocked), l.news)
	if err != nil {
		return fmt.Errorf("hear locked events: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Subscribed before the first read: anything published from now on
	// is in that read or announced on news.
	l.mu.Lock()
	l.sub, l.dropped = sub, 0
	l.mu.Unlock()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := l.kv.Run(ctx)
		if err == nil && ctx.Err() == nil {
			// The watch ended under us: end Run, so that it is started
			// again, rather than go on without the push.
			err = errors.New("the bucket watch ended")
		}
		return err
	})
	g.Go(func() error { return l.trail.Run(ctx, SyncEvery, l.kick, l.log) })
	return g.Wait()
}

// Ready reports whether the bucket and the trail have both been read.
func (l *List) Ready() bool { return l.kv.Ready() && l.trail.Ready() }

// WaitReady waits until Ready.
func (l *List) WaitReady(ctx context.Context) error {
	if err := l.kv.WaitReady(ctx); err != nil {
		return err
	}
	return l.trail.WaitReady(ctx)
}

// Targets lists the locks that block p: on the principal, on its user key
// and on its domain (those it has).
func Targets(p identity.Principal) []events.LockTarget {
	var out []events.LockTarget
	for _, t := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: p.ID()},
		{Type: events.LockKey, Name: p.Key},
		{Type: events.LockDomain, Name: p.Domain},
	} {
		if t.Name != "" {
			out = append(out, t)
		}
	}
	return out
}

// Check returns ErrLocked (with the reason) when the principal, its key or
// its domain is locked, and ErrNotReady before the list is loaded or when
// the trail cannot be read: it fails closed. It reads the trail first
// when there is news of it, or when the bucket or the trail has anything
// on one of the three: most checks read nothing.
func (l *List) Check(ctx context.Context, p identity.Principal) error {
	if !l.Ready() {
		return ErrNotReady
	}
	l.heard()
	if l.trail.Done() < l.pending.Load() || l.Cached(p) != nil {
		if err := l.trail.Sync(ctx, 0); err != nil {
			return fmt.Errorf("%w: %v", ErrNotReady, err)
		}
	}
	return l.Cached(p)
}

// heard takes the news of locked events published (or of news lost)
// since it was last asked: a trail read that begins after now must end
// before any check answers from memory (pending). pending is raised
// before the news is taken, so a check that finds no news left (another
// took it) still waits for that read.
func (l *List) heard() {
	l.mu.Lock()
	lost := false
	if l.sub != nil {
		if d, err := l.sub.Dropped(); err == nil && d != l.dropped {
			l.dropped, lost = d, true
		}
	}
	l.mu.Unlock()
	if len(l.news) == 0 && !lost {
		return
	}
	want := l.trail.Started() + 1
	for cur := l.pending.Load(); cur < want && !l.pending.CompareAndSwap(cur, want); cur = l.pending.Load() {
	}
	for more := true; more; {
		select {
		case <-l.news:
		default:
			more = false
		}
	}
}

// Cached is Check without reading anything: the list as last read.
func (l *List) Cached(p identity.Principal) error {
	if !l.Ready() {
		return ErrNotReady
	}
	done := l.trail.Done()
	for _, t := range Targets(p) {
		key, err := Key(t)
		if err != nil {
			continue
		}
		if e, ok := l.trail.Get(key); ok {
			if e.Value.Locked {
				return fmt.Errorf("%w: %s %s: %s (lock %s)", ErrLocked, t.Type, t.Name, e.Value.Reason, e.ID)
			}
			continue // the trail's unlock holds
		}
		if reason, ok := l.kv.Get(key); ok {
			return fmt.Errorf("%w: %s %s: %s", ErrLocked, t.Type, t.Name, reason)
		}
		if l.held(key, done) {
			return fmt.Errorf("%w: %s %s: its lock went from the bucket, and the trail has not been read since", ErrLocked, t.Type, t.Name)
		}
	}
	return nil
}

// held reports whether key's bucket entry went away after the last trail
// read began; it forgets the key once a later read has ended.
func (l *List) held(key string, done uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.gone[key]
	if !ok {
		return false
	}
	if done > at {
		delete(l.gone, key)
		return false
	}
	return true
}
