package kvwatch

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Cache is a bucket's entries, each decoded once as it arrives.
type Cache[T any] struct {
	open   func(context.Context) (jetstream.KeyValue, error)
	decode func(key string, value []byte) T
	mu     sync.RWMutex
	m      map[string]T
	ready  chan struct{}
	once   sync.Once
}

// New returns a cache of the bucket open returns; Run fills it.
func New[T any](open func(context.Context) (jetstream.KeyValue, error), decode func(key string, value []byte) T) *Cache[T] {
	return &Cache[T]{open: open, decode: decode, m: map[string]T{}, ready: make(chan struct{})}
}

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
	defer func() { _ = kw.Stop() }()
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
				c.m[e.Key()] = c.decode(e.Key(), e.Value())
			} else {
				delete(c.m, e.Key())
			}
			c.mu.Unlock()
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
