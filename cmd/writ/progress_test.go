package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// clock is a test clock that moves only when told.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgressBar(t *testing.T) {
	var w bytes.Buffer
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	p := newProgressBar(&w, true, c.now)

	p.update(10, 100_000)
	assert.Empty(t, w.String(), "nothing in the first tenth of a second")
	c.advance(2 * time.Second)
	p.update(20_000, 100_000)
	assert.Equal(t, "\r[====>                   ]  20%  20,000/100,000 events  10,000 events/s  ETA 8s\x1b[K", w.String())

	// At most ten times a second.
	w.Reset()
	for range 50 {
		c.advance(time.Millisecond)
		p.update(20_100, 100_000)
	}
	assert.Empty(t, w.String())
	c.advance(60 * time.Millisecond)
	p.update(21_000, 100_000)
	assert.Equal(t, 1, strings.Count(w.String(), "\r["))

	// Output clears the bar first; the next update draws it again.
	w.Reset()
	out := p.above(&w)
	_, _ = out.Write([]byte("line\n"))
	_, _ = out.Write([]byte("line\n"))
	assert.Equal(t, "\r\x1b[Kline\nline\n", w.String())
	w.Reset()
	c.advance(time.Second)
	p.update(100_000, 100_000)
	assert.Contains(t, w.String(), "[========================] 100%  100,000/100,000 events")
	assert.Contains(t, w.String(), "ETA 0s")
	w.Reset()
	p.clear()
	assert.Equal(t, "\r\x1b[K", w.String(), "cleared at the end")
	w.Reset()
	p.clear()
	assert.Empty(t, w.String(), "once")
}

func TestProgressBarQuiet(t *testing.T) {
	var w bytes.Buffer
	c := &clock{t: time.Now()}
	piped := newProgressBar(&w, false, c.now)
	small := newProgressBar(&w, true, c.now)
	c.advance(time.Second)
	piped.update(50_000, 100_000)
	small.update(1_000, 2_000)
	piped.clear()
	small.clear()
	_, _ = piped.above(&w).Write([]byte("x"))
	assert.Equal(t, "x", w.String(), "no bar when piped, nor for 2,000 messages or fewer")
}

func TestThousands(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", 100000: "100,000"} {
		assert.Equal(t, want, thousands(n))
	}
}
