package state

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/kvwatch"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/trailkv"
)

// Bucket is the KV bucket of resource and domain state: part of the wire
// contract.
const Bucket = "writ-resource-state"

// DomainToken is the last key token of a domain's own entry.
const DomainToken = "_domain"

// Limits of an entry set through the trail (the state event's schema says
// the same).
const (
	MaxAttrs     = 64   // attributes in one entry
	MaxAttrName  = 128  // bytes in an attribute's name
	MaxAttrValue = 4096 // bytes in an attribute's value
)

// Errors.
var (
	ErrKey       = errors.New("bad state key")
	ErrValue     = errors.New("bad state value")
	ErrNotReady  = errors.New("the state is not loaded yet")
	ErrMalformed = errors.New("malformed entry in the resource-state bucket")
)

// Key is the bucket key of a resource's state; path "" names the domain's
// own entry.
func Key(domain, path string) (string, error) {
	if !identity.ValidDomainName(domain) {
		return "", fmt.Errorf("%w: %q is not a domain name", ErrKey, domain)
	}
	if path == "" {
		return domain + "." + DomainToken, nil
	}
	if !events.ValidResource(path) {
		return "", fmt.Errorf("%w: %q is not a resource path", ErrKey, path)
	}
	var b strings.Builder
	b.WriteString(domain)
	for seg := range strings.SplitSeq(path, "/") {
		b.WriteByte('.')
		if plain(seg) {
			b.WriteString(seg)
		} else {
			b.WriteByte('=')
			b.WriteString(hex.EncodeToString([]byte(seg)))
		}
	}
	return b.String(), nil
}

// plain reports whether a segment stands for itself in a key: it never
// starts with "=" (an encoded segment) or "_" (DomainToken and any later
// reserved token).
func plain(seg string) bool {
	for i, r := range seg {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
		case r == '_' && i > 0:
		default:
			return false
		}
	}
	return seg != ""
}

// ParseKey is the inverse of Key: it returns the domain and the path ("" for
// the domain's own entry). It refuses any key Key would not write.
func ParseKey(key string) (domain, path string, err error) {
	tokens := strings.Split(key, ".")
	if len(tokens) < 2 || !identity.ValidDomainName(tokens[0]) {
		return "", "", fmt.Errorf("%w: %q", ErrKey, key)
	}
	domain = tokens[0]
	if len(tokens) == 2 && tokens[1] == DomainToken {
		return domain, "", nil
	}
	segs := make([]string, 0, len(tokens)-1)
	for _, t := range tokens[1:] {
		switch {
		case plain(t):
			segs = append(segs, t)
		case strings.HasPrefix(t, "="):
			b, err := hex.DecodeString(t[1:])
			// Only the one spelling Key writes: lower-case hex of a
			// segment that is not plain.
			if err != nil || len(b) == 0 || plain(string(b)) || hex.EncodeToString(b) != t[1:] || strings.Contains(string(b), "/") {
				return "", "", fmt.Errorf("%w: %q", ErrKey, key)
			}
			segs = append(segs, string(b))
		default:
			return "", "", fmt.Errorf("%w: %q", ErrKey, key)
		}
	}
	path = strings.Join(segs, "/")
	if !events.ValidResource(path) {
		return "", "", fmt.Errorf("%w: %q", ErrKey, key)
	}
	return domain, path, nil
}

// decode parses a bucket value: a JSON object of strings.
func decode(b []byte) (map[string]string, error) {
	var attrs map[string]string
	if err := json.Unmarshal(b, &attrs); err != nil || attrs == nil {
		return nil, fmt.Errorf("%w: not a JSON object of strings", ErrValue)
	}
	return attrs, checkAttrs(attrs)
}

func checkAttrs(attrs map[string]string) error {
	for k, v := range attrs {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: attribute names are non-empty and, like values, UTF-8", ErrValue)
		}
	}
	return nil
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
		Bucket: Bucket, Description: "writ resource and domain state", History: 5, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	}
}

func ensure(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := kvwatch.Bucket(ctx, js, BucketConfig(replicas))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// CheckAttrs says whether attrs may be asked for: names non-empty, both
// names and values UTF-8, and within the limits.
func CheckAttrs(attrs map[string]string) error {
	if len(attrs) > MaxAttrs {
		return fmt.Errorf("%w: %d attributes; at most %d", ErrValue, len(attrs), MaxAttrs)
	}
	for k, v := range attrs {
		if len(k) > MaxAttrName {
			return fmt.Errorf("%w: attribute name %.20q… is longer than %d bytes", ErrValue, k, MaxAttrName)
		}
		if len(v) > MaxAttrValue {
			return fmt.Errorf("%w: the value of %q is longer than %d bytes", ErrValue, k, MaxAttrValue)
		}
	}
	return checkAttrs(attrs)
}

// Encode is the bucket value of a resource's (or a domain's) attributes.
func Encode(attrs map[string]string) ([]byte, error) {
	if attrs == nil {
		attrs = map[string]string{}
	}
	if err := checkAttrs(attrs); err != nil {
		return nil, err
	}
	b, err := json.Marshal(attrs) // keys sorted: one value, one spelling
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrValue, err)
	}
	return b, nil
}

// Get reads the state of a resource (path "" for the domain's own) from the
// bucket; a resource without state has an empty map.
func Get(ctx context.Context, js jetstream.JetStream, domain, path string) (map[string]string, error) {
	key, err := Key(domain, path)
	if err != nil {
		return nil, err
	}
	var e jetstream.KeyValueEntry
	err = store.Retry(ctx, func(ctx context.Context) error {
		kv, err := bucket(ctx, js)
		if err != nil {
			return err
		}
		e, err = kv.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	attrs, err := decode(e.Value())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, key, err)
	}
	return attrs, nil
}

// entry is a watched value: its attributes, or why it could not be read,
// and its revision in the bucket.
type entry struct {
	attrs    map[string]string
	err      error
	revision uint64
}

// Watcher keeps the bucket in memory, pushed by the bucket.
type Watcher struct {
	*kvwatch.Cache[entry]
}

// NewWatcher returns a watcher; Run fills it.
func NewWatcher(js jetstream.JetStream) *Watcher {
	open := func(ctx context.Context) (jetstream.KeyValue, error) { return bucket(ctx, js) }
	return &Watcher{kvwatch.New(open, func(e jetstream.KeyValueEntry) entry {
		attrs, err := decode(e.Value())
		if err != nil {
			err = fmt.Errorf("%w: %s: %w", ErrMalformed, e.Key(), err)
		}
		return entry{attrs: attrs, err: err, revision: e.Revision()}
	})}
}

// Get returns a copy of a resource's state: empty when it has none, nil
// when the watcher is not ready, the path is invalid or the entry is
// malformed. Decisions use Lookup, which tells these apart.
func (w *Watcher) Get(domain, path string) map[string]string {
	if path == "" {
		return nil
	}
	attrs, err := w.lookup(domain, path)
	if err != nil {
		return nil
	}
	return attrs
}

// Domain returns a copy of the domain's own state, as Get does.
func (w *Watcher) Domain(domain string) map[string]string {
	attrs, err := w.lookup(domain, "")
	if err != nil {
		return nil
	}
	return attrs
}

// Facts is the state a decision reads: a resource's and its domain's, and
// the bucket revision each entry was read at, by key (0: there was none).
type Facts struct {
	Resource  map[string]string
	Domain    map[string]string
	Revisions map[string]uint64
}

// Lookup returns copies of a resource's state and of its domain's, with
// their revisions. It fails closed: ErrNotReady before the initial state
// is loaded, ErrMalformed when either entry cannot be read (the
// revisions are set then too, so that the error can be traced).
func (w *Watcher) Lookup(domain, path string) (Facts, error) {
	if path == "" {
		return Facts{}, fmt.Errorf("%w: no resource path", ErrKey)
	}
	rk, err := Key(domain, path)
	if err != nil {
		return Facts{}, err
	}
	dk, _ := Key(domain, "")
	if !w.Ready() {
		return Facts{}, ErrNotReady
	}
	f := Facts{Revisions: make(map[string]uint64, 2)}
	var rerr, derr error
	f.Resource, f.Revisions[rk], rerr = w.copyOf(rk)
	f.Domain, f.Revisions[dk], derr = w.copyOf(dk)
	if err := errors.Join(rerr, derr); err != nil {
		return Facts{Revisions: f.Revisions}, err
	}
	return f, nil
}

func (w *Watcher) lookup(domain, path string) (map[string]string, error) {
	key, err := Key(domain, path)
	if err != nil {
		return nil, err
	}
	if !w.Ready() {
		return nil, ErrNotReady
	}
	attrs, _, err := w.copyOf(key)
	return attrs, err
}

// copyOf returns a copy of key's attributes, empty when it has none, and
// its revision.
func (w *Watcher) copyOf(key string) (map[string]string, uint64, error) {
	e, ok := w.Cache.Get(key)
	if !ok {
		return map[string]string{}, 0, nil
	}
	if e.err != nil {
		return nil, e.revision, e.err
	}
	return maps.Clone(e.attrs), e.revision, nil
}

// Word is the trail's latest word on a state entry: its attributes, or
// none (deleted).
type Word struct {
	Attrs   map[string]string
	By      events.PrincipalRef
	Deleted bool
}

// Index is the resource state as the trail records it.
type Index = trailkv.Index[Word]

// NewIndex returns the trail's resource state, read with reader and
// judged by checker: every valid stated event in the stream, the last one
// about an entry winning.
func NewIndex(reader store.Reader, checker events.Checker) *Index {
	return trailkv.NewIndex(reader, checker, events.KindStated, func(r events.Record) (string, Word, bool) {
		d, ok := r.Data.(*events.Stated)
		if !ok {
			return "", Word{}, false
		}
		key, err := Key(r.Domain, d.Path)
		if err != nil {
			return "", Word{}, false
		}
		if d.Op == events.StateDelete {
			return key, Word{By: d.By, Deleted: true}, true
		}
		return key, Word{Attrs: d.Attrs, By: d.By}, true
	})
}

// Keeper writes the trail's resource state into the bucket.
type Keeper = trailkv.Keeper[Word]

// NewKeeper returns the keeper of the bucket, for the approval component:
// the only writer of the bucket.
func NewKeeper(nc *nats.Conn, js jetstream.JetStream, index *Index, log *slog.Logger, clock func() time.Time) *Keeper {
	return &Keeper{
		Index:  index,
		NC:     nc,
		Bucket: func(ctx context.Context) (jetstream.KeyValue, error) { return bucket(ctx, js) },
		Value: func(w Word) ([]byte, bool) {
			if w.Deleted {
				return nil, false
			}
			b, err := Encode(w.Attrs)
			if err != nil {
				// A stated event's attributes passed its schema; one
				// that still cannot be written is no entry at all.
				return nil, false
			}
			return b, true
		},
		What: "resource state", Log: log, Clock: clock,
		// State a policy reads must be recorded: an entry written around
		// the trail (by someone with rights to the bucket, or an earlier
		// Writ) is deleted, not read.
		DropUnbacked: true,
	}
}
