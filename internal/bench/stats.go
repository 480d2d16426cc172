package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of latencies. Percentiles are nearest-rank:
// the p-th percentile of n sorted values is the value of rank ⌈p·n/100⌉
// (counting from 1), always one of the values measured, never an
// interpolation. With fewer than 1000 values p99.9 is therefore the
// maximum, and with fewer than 100, p99 too.
type Summary struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"min_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
	Mean  time.Duration `json:"mean_ns"`
}

// Summarize describes samples (it sorts a copy).
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Summary{
		Count: len(s),
		Min:   s[0],
		P50:   Percentile(s, 50),
		P90:   Percentile(s, 90),
		P99:   Percentile(s, 99),
		P999:  Percentile(s, 99.9),
		Max:   s[len(s)-1],
		Mean:  sum / time.Duration(len(s)),
	}
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted,
// which must be sorted ascending; p <= 0 gives the minimum, and an empty
// sample 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// p·n/100 in floating point can land a hair above a whole rank
	// (99.9·1000/100 = 999.0000000000001): a whole rank must stay whole.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}

// ratio is a/b, or 0 when b is 0 (nothing to compare with).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
