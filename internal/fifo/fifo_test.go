package fifo_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/internal/fifo"
)

func TestCacheForgetsTheOldestFirst(t *testing.T) {
	c := fifo.New[string, int](3)
	for i, k := range []string{"a", "b", "c"} {
		c.Put(k, i)
	}
	c.Put("a", 10) // held already: keeps its place, as the oldest
	assert.Equal(t, 3, c.Len())
	c.Put("d", 3)
	_, ok := c.Get("a")
	assert.False(t, ok, "the oldest went")
	for k, want := range map[string]int{"b": 1, "c": 2, "d": 3} {
		v, ok := c.Get(k)
		assert.True(t, ok, k)
		assert.Equal(t, want, v, k)
	}
	c.Put("e", 4)
	c.Put("f", 5)
	_, ok = c.Get("c")
	assert.False(t, ok, "then the next oldest, round the ring")
	assert.Equal(t, 3, c.Len())

	one := fifo.New[int, int](0)
	one.Put(1, 1)
	one.Put(2, 2)
	assert.Equal(t, 1, one.Len(), "a size below 1 is 1")
}

func TestCacheIsSafeForConcurrentUse(t *testing.T) {
	c := fifo.New[int, int](64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				c.Put(g*1000+i, i)
				c.Get(i)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 64, c.Len())
}

func TestUpdateIsOneStep(t *testing.T) {
	c := fifo.New[string, int](4)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Update("n", func(old int, _ bool) int { return old + 1 })
			}
		})
	}
	wg.Wait()
	n, ok := c.Get("n")
	assert.True(t, ok)
	assert.Equal(t, 8000, n, "no update lost")
	c.Update("fresh", func(old int, ok bool) int {
		assert.False(t, ok)
		assert.Zero(t, old)
		return 7
	})
	v, _ := c.Get("fresh")
	assert.Equal(t, 7, v)
}
