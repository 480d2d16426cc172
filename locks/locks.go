package locks

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/kvwatch"
)

// Bucket is the KV bucket of the lock list: part of the wire contract.
const Bucket = "writ-locks"

// Errors.
var (
	ErrLocked   = errors.New("locks: locked")
	ErrNotReady = errors.New("locks: the lock list is not loaded yet")
	ErrTarget   = errors.New("locks: bad lock target")
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
		return nil, fmt.Errorf("locks: bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// Set locks a target (or, with unlock, lifts its lock).
func Set(ctx context.Context, js jetstream.JetStream, t events.LockTarget, unlock bool, reason string) error {
	key, err := Key(t)
	if err != nil {
		return err
	}
	kv, err := bucket(ctx, js)
	if err != nil {
		return err
	}
	if unlock {
		if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("locks: unlock: %w", err)
		}
		return nil
	}
	if _, err := kv.PutString(ctx, key, reason); err != nil {
		return fmt.Errorf("locks: lock: %w", err)
	}
	return nil
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

// Watcher keeps the lock list in memory, pushed by the bucket.
type Watcher struct {
	*kvwatch.Cache[string]
}

// NewWatcher returns a watcher; Run fills it.
func NewWatcher(js jetstream.JetStream) *Watcher {
	open := func(ctx context.Context) (jetstream.KeyValue, error) { return bucket(ctx, js) }
	return &Watcher{kvwatch.New(open, func(_ string, v []byte) string { return string(v) })}
}

// Check returns ErrLocked (with the reason) when the principal, its key or
// its domain is locked, and ErrNotReady before the list is loaded: it fails
// closed.
func (w *Watcher) Check(p identity.Principal) error {
	if !w.Ready() {
		return ErrNotReady
	}
	for _, t := range Targets(p) {
		key, err := Key(t)
		if err != nil {
			continue
		}
		if reason, ok := w.Get(key); ok {
			return fmt.Errorf("%w: %s %s: %s", ErrLocked, t.Type, t.Name, reason)
		}
	}
	return nil
}
