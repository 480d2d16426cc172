package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func ms(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	ten := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for p, want := range map[float64]int{0: 1, 10: 1, 11: 2, 50: 5, 90: 9, 91: 10, 99: 10, 99.9: 10, 100: 10} {
		assert.Equal(t, time.Duration(want)*time.Millisecond, Percentile(ten, p), "p%v", p)
	}
	// A whole rank stays whole: 99.9% of 1000 is rank 999, not 1000.
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i + 1)
	}
	assert.Equal(t, time.Duration(999), Percentile(thousand, 99.9))
	assert.Equal(t, time.Duration(990), Percentile(thousand, 99))
	assert.Equal(t, time.Duration(500), Percentile(thousand, 50))
	assert.Equal(t, time.Duration(1), Percentile(thousand, 0.1))
	assert.Zero(t, Percentile(nil, 50))
}

func TestStatsSummarize(t *testing.T) {
	// Unsorted on purpose; Summarize must not reorder its input.
	in := ms(40, 10, 30, 20, 50, 1000, 60, 70, 80, 90, 100, 110)
	orig := append([]time.Duration(nil), in...)
	s := Summarize(in)
	assert.Equal(t, orig, in)
	assert.Equal(t, Summary{
		Count: 12,
		Min:   10 * time.Millisecond,
		P50:   60 * time.Millisecond,  // rank 6
		P90:   110 * time.Millisecond, // rank ⌈10.8⌉ = 11
		P99:   1000 * time.Millisecond,
		P999:  1000 * time.Millisecond, // fewer than 1000 values: the maximum
		Max:   1000 * time.Millisecond,
		Mean:  (10 + 20 + 30 + 40 + 50 + 60 + 70 + 80 + 90 + 100 + 110 + 1000) * time.Millisecond / 12,
	}, s)
	assert.Equal(t, Summary{}, Summarize(nil))
	one := Summarize(ms(7))
	assert.Equal(t, 7*time.Millisecond, one.P999)
	assert.Equal(t, one.Min, one.Max)
}

func TestStatsCompare(t *testing.T) {
	limit := &Result{OK: 10, Throughput: 1000, Latency: Summary{Min: 1, P50: 2, P90: 4, P99: 8, P999: 8, Max: 10, Mean: 3}}
	writ := &Result{OK: 10, Throughput: 250, Latency: Summary{Min: 3, P50: 8, P90: 12, P99: 16, P999: 16, Max: 40, Mean: 9}}
	assert.Equal(t, &Ratio{Throughput: 0.25, Min: 3, P50: 4, P90: 3, P99: 2, P999: 2, Max: 4, Mean: 3}, compare(limit, writ))
	assert.Nil(t, compare(limit, &Result{}), "nothing to compare when no request succeeded")
	assert.Nil(t, compare(nil, writ))
}

func TestStatsDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "-", 812 * time.Microsecond: "812µs", 1234 * time.Microsecond: "1.23ms",
		12345 * time.Microsecond: "12.3ms", 123456 * time.Microsecond: "123ms", 1500 * time.Millisecond: "1.50s",
	} {
		assert.Equal(t, want, dur(d))
	}
}

func TestBenchDriveCountsAndBounds(t *testing.T) {
	var calls atomic.Int64
	one := func(ctx context.Context) error {
		if calls.Add(1)%3 == 0 {
			return errors.New("refused")
		}
		return nil
	}
	var seen []int
	res := drive(context.Background(), load{n: 30, inflight: 4, timeout: time.Second, progress: func(d int) { seen = append(seen, d) }}, one)
	assert.Equal(t, int64(30), calls.Load(), "exactly n requests")
	assert.Equal(t, 30, res.Requests)
	assert.Equal(t, 10, res.Errors)
	assert.Equal(t, 20, res.OK)
	assert.Equal(t, 20, res.Latency.Count)
	assert.Len(t, res.ErrorSamples, maxErrorSamples)
	assert.Len(t, seen, 30)
	assert.Equal(t, 30, seen[len(seen)-1])

	// Each request gets its own deadline; one that runs out is an error.
	res = drive(context.Background(), load{n: 2, inflight: 2, timeout: time.Millisecond}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	assert.Equal(t, 2, res.Errors)
	assert.Zero(t, res.Throughput)

	// Once ctx ends nothing more is sent.
	ctx, cancel := context.WithCancel(context.Background())
	calls.Store(0)
	res = drive(ctx, load{n: 1000, inflight: 1, timeout: time.Second}, func(context.Context) error {
		if calls.Add(1) == 5 {
			cancel()
		}
		return nil
	})
	assert.Equal(t, int64(5), calls.Load())
	assert.Equal(t, 5, res.OK)
}
