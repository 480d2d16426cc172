package fifo

import "sync"

// Cache maps keys to values, holding at most its size; adding a new key to
// a full cache drops the key added longest ago.
type Cache[K comparable, V any] struct {
	mu   sync.Mutex
	m    map[K]V
	ring []K // keys in the order they were added
	next int // the oldest, once the ring is full
}

// New returns a cache of at most size entries (at least 1).
func New[K comparable, V any](size int) *Cache[K, V] {
	size = max(size, 1)
	return &Cache[K, V]{m: make(map[K]V, size), ring: make([]K, 0, size)}
}

// Get returns the value for k.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// Put sets the value for k; a key already held keeps its place.
func (c *Cache[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(k, v)
}

// Update sets the value for k to f of the value held (and whether one
// was), in one step: concurrent updates of a key do not lose each other.
func (c *Cache[K, V]) Update(k K, f func(old V, ok bool) V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.m[k]
	c.put(k, f(old, ok))
}

func (c *Cache[K, V]) put(k K, v V) {
	if _, ok := c.m[k]; !ok {
		if len(c.ring) < cap(c.ring) {
			c.ring = append(c.ring, k)
		} else {
			delete(c.m, c.ring[c.next])
			c.ring[c.next] = k
			c.next = (c.next + 1) % len(c.ring)
		}
	}
	c.m[k] = v
}

// Len is how many entries the cache holds.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
