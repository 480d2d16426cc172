package kvwatch

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Cache is a bucket's entries, each decoded once as it arrives.
type Cache[T any] struct {
	open    func(context.Context) (jetstream.KeyValue, error)
	decode  func(e jetstream.KeyValueEntry) T
	changed func(e jetstream.KeyValueEntry)
	mu      sync.RWMutex
	m       map[string]T
	ready   chan struct{}
	once    sync.Once
}

// New returns a cache of the bucket open returns; Run fills it. decode
// turns an entry (its key, value and revision) into what the cache keeps.
func New[T any](open func(context.Context) (jetstream.KeyValue, error), decode func(e jetstream.KeyValueEntry) T) *Cache[T] {
	return &Cache[T]{open: open, decode: decode, m: map[string]T{}, ready: make(chan struct{})}
}

// OnChange makes Run call fn with every entry it applies (a put, a delete
// or a purge), after the cache holds it. Call it before Run; fn must not
// block.
func (c *Cache[T]) OnChange(fn func(e jetstream.KeyValueEntry)) { c.changed = fn }

// Run watches the bucket until ctx ends.
func (c *Cache[T]) Run(ctx context.Context) error {
	kv, err := c.open(ctx)
	if err != nil {
		return err
	}
	kw, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("kvwatch: watch: %w", err)
	}
	defer stop(ctx, kw)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return nil
			}
			if e == nil { // the initial values are all in
				c.once.Do(func() { close(c.ready) })
				continue
			}
			c.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut {
				c.m[e.Key()] = c.decode(e)
			} else {
				delete(c.m, e.Key())
			}
			c.mu.Unlock()
			if c.changed != nil {
				c.changed(e)
			}
		}
	}
}

// Ready reports whether the initial entries are loaded.
func (c *Cache[T]) Ready() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// WaitReady waits until the initial entries are loaded.
func (c *Cache[T]) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns the entry of key, if there is one.
func (c *Cache[T]) Get(key string) (T, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[key]
	return v, ok
}

// Keys returns the keys the cache holds now.
func (c *Cache[T]) Keys() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.m))
	for k := range c.m {
		out = append(out, k)
	}
	return out
}

// stop ends a watch that is still wanted. One whose ctx ended is ended by
// the client already; stopping it again would ask the server to delete
// its consumer, a request some roles may not make, whose answer never
// comes (the shutdown would wait out the request's timeout).
func stop(ctx context.Context, kw jetstream.KeyWatcher) {
	if ctx.Err() == nil {
		_ = kw.Stop()
	}
}
