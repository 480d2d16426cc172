package restart

import (
	"context"
	"log/slog"
	"time"
)

// Backoff is a schedule of pauses between the runs of a loop that keeps
// stopping: First before the first restart, doubling up to Max.
type Backoff struct {
	First time.Duration // the pause before the first restart; > 0
	Max   time.Duration // the longest pause; ≥ First
	// Healthy is how long a run must have lasted for the loop to count as
	// having worked: the pause after it is First again. 0: never reset.
	Healthy time.Duration
}

// Default is the schedule of the components' loops: 100 ms, 200 ms, …
// at most 5 s (a loop that keeps failing restarts 5 times in its first
// 2 s, then every 5 s), back to 100 ms after a run of 10 s or more.
var Default = Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second, Healthy: 10 * time.Second}

// Pause returns the pause before the n-th restart of a run of failures,
// counted from 1: First, doubled n-1 times, at most Max.
func (b Backoff) Pause(n int) time.Duration {
	d := b.First
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Loop runs fn until ctx ends, with Default's pauses (see Backoff.Loop).
func Loop(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) {
	Default.Loop(ctx, log, what, fn)
}

// Until runs fn until it succeeds, with Default's pauses (see
// Backoff.Until).
func Until(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	return Default.Until(ctx, log, what, fn)
}

// Loop runs fn until ctx ends. Each time fn returns while ctx is live —
// with an error, or with none, which for a loop that should run until ctx
// ends is a stop all the same — Loop logs a warning naming what and starts
// fn again after a pause of b's schedule. It returns once ctx has ended
// and fn has returned.
func (b Backoff) Loop(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) {
	b.run(ctx, log, what, fn, false)
}

// Until runs fn until it returns nil, then returns nil; each failure is
// logged as a warning naming what, and fn is tried again after a pause of
// b's schedule. When ctx ends first, Until returns ctx's error.
func (b Backoff) Until(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	return b.run(ctx, log, what, fn, true)
}

func (b Backoff) run(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error, once bool) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for failures := 0; ; {
		start := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && once {
			return nil
		}
		if b.Healthy > 0 && time.Since(start) >= b.Healthy {
			failures = 0
		}
		failures++
		pause := b.Pause(failures)
		switch {
		case once:
			log.Warn("failed; trying again", "step", what, "retry_in", pause, "err", err)
		case err == nil:
			log.Warn("stopped; starting it again", "loop", what, "retry_in", pause)
		default:
			log.Warn("stopped; starting it again", "loop", what, "retry_in", pause, "err", err)
		}
		if !Sleep(ctx, pause) {
			return ctx.Err()
		}
	}
}

// Sleep pauses for d or until ctx ends, whichever comes first, and
// reports whether the pause ran its course.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
