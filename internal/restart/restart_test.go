package restart_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/restart"
)

// recorder keeps the records logged, to read the pauses Loop chose.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
	seen chan struct{} // receives once per record, when not nil
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	if r.seen != nil {
		r.seen <- struct{}{}
	}
	return nil
}

// pauses returns the retry_in of every record so far.
func (r *recorder) pauses() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, rec := range r.recs {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "retry_in" {
				out = append(out, a.Value.Duration())
			}
			return true
		})
	}
	return out
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

var errBroken = errors.New("broken")

func TestPause(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{0, 100 * ms}, {1, 100 * ms}, {2, 200 * ms}, {3, 400 * ms}, {6, 3200 * ms}, {7, 5 * time.Second}, {1000, 5 * time.Second}} {
		assert.Equal(t, tt.want, restart.Default.Pause(tt.n), "restart %d", tt.n)
	}
}

// A loop that keeps failing is started again after pauses that double up
// to the bound, and each pause is really waited.
func TestLoopBacksOff(t *testing.T) {
	ms := time.Millisecond
	b := restart.Backoff{First: 10 * ms, Max: 40 * ms}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var starts []time.Time
	b.Loop(ctx, slog.New(rec), "test", func(context.Context) error {
		starts = append(starts, time.Now())
		if len(starts) == 6 {
			cancel()
		}
		return errBroken
	})
	want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 40 * ms, 40 * ms}
	assert.Equal(t, want, rec.pauses())
	require.Len(t, starts, 6)
	for i, w := range want {
		assert.GreaterOrEqual(t, starts[i+1].Sub(starts[i]), w, "pause %d", i+1)
	}
}

// A loop that returns without an error while ctx is live has stopped all
// the same: it is started again.
func TestLoopRestartsALoopThatReturns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	restart.Backoff{First: time.Millisecond, Max: time.Millisecond}.Loop(ctx, nil, "test", func(context.Context) error {
		if runs++; runs == 3 {
			cancel()
		}
		return nil
	})
	assert.Equal(t, 3, runs)
}

// A run that lasted Healthy resets the schedule: the pause after it is
// First again.
func TestLoopResetsAfterAHealthyRun(t *testing.T) {
	ms := time.Millisecond
	b := restart.Backoff{First: ms, Max: time.Hour, Healthy: 30 * ms}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	b.Loop(ctx, slog.New(rec), "test", func(context.Context) error {
		switch runs++; runs {
		case 4:
			time.Sleep(b.Healthy) // ran well, then stopped
		case 6:
			cancel()
		}
		return errBroken
	})
	assert.Equal(t, []time.Duration{ms, 2 * ms, 4 * ms, ms, 2 * ms}, rec.pauses())
}

// The end of ctx stops the loop at once, whether it is running or
// pausing (here, for an hour).
func TestLoopStopsWhenCtxEnds(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		running := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			restart.Loop(ctx, nil, "test", func(ctx context.Context) error {
				close(running)
				<-ctx.Done()
				return ctx.Err()
			})
		}()
		<-running
		cancel()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Loop did not return when ctx ended")
		}
	})
	t.Run("pausing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		rec := &recorder{seen: make(chan struct{}, 1)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			restart.Backoff{First: time.Hour, Max: time.Hour}.Loop(ctx, slog.New(rec), "test",
				func(context.Context) error { return errBroken })
		}()
		<-rec.seen // the failure is logged: the pause begins
		cancel()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Loop did not return when ctx ended during a pause")
		}
	})
}

// A loop that fails at once, every time, for a whole second logs at most
// 4 times in it (runs at 0, 100, 300 and 700 ms), not 10 times a second as
// a fixed 100 ms pause would. Slowness only lowers the count.
func TestPersistentFailureLogsBounded(t *testing.T) {
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	runs := 0
	restart.Loop(ctx, slog.New(rec), "test", func(context.Context) error { runs++; return errBroken })
	assert.LessOrEqual(t, rec.count(), 4)
	assert.GreaterOrEqual(t, rec.count(), 1)
	assert.Equal(t, runs, rec.count(), "each failure in the window is logged")
}

func TestUntil(t *testing.T) {
	t.Run("succeeds", func(t *testing.T) {
		rec := &recorder{}
		runs := 0
		err := restart.Backoff{First: time.Millisecond, Max: time.Millisecond}.Until(context.Background(), slog.New(rec), "test",
			func(context.Context) error {
				if runs++; runs < 3 {
					return errBroken
				}
				return nil
			})
		require.NoError(t, err)
		assert.Equal(t, 3, runs)
		assert.Equal(t, 2, rec.count(), "each failure is logged, the success is not")
	})
	t.Run("ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		rec := &recorder{seen: make(chan struct{}, 1)}
		done := make(chan error, 1)
		go func() {
			done <- restart.Backoff{First: time.Hour, Max: time.Hour}.Until(ctx, slog.New(rec), "test",
				func(context.Context) error { return errBroken })
		}()
		<-rec.seen
		cancel()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(time.Second):
			t.Fatal("Until did not return when ctx ended")
		}
	})
}

func TestSleep(t *testing.T) {
	assert.True(t, restart.Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.False(t, restart.Sleep(ctx, time.Hour))
}
