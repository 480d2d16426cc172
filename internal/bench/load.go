package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one path's figures in one phase. Latencies are of the requests
// that succeeded; a request that failed or ran out of time is an error.
type Result struct {
	Requests   int           `json:"requests"` // sent
	OK         int           `json:"ok"`
	Errors     int           `json:"errors"`
	Elapsed    time.Duration `json:"elapsed_ns"` // first send to last answer
	Throughput float64       `json:"throughput_rps"`
	Latency    Summary       `json:"latency"`
	// SlowConsumers counts the times, during the phase, that the NATS
	// client dropped messages its subscription could not take on this
	// path's connections; such a delivery comes back only after the ack
	// wait (5 s), and shows in the tail.
	SlowConsumers int64 `json:"slow_consumers"`
	// ErrorSamples are the first few errors, to say what went wrong.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// maxErrorSamples bounds the errors a result keeps.
const maxErrorSamples = 5

// requestFunc makes one request and waits for its outcome, within ctx.
type requestFunc func(ctx context.Context) error

// load is how many requests to make and how.
type load struct {
	n        int           // requests
	inflight int           // at most this many at once (1: sequential)
	timeout  time.Duration // for each request
	progress func(done int)
}

// drive makes l.n requests with one, at most l.inflight at a time, each
// bounded by l.timeout; it stops sending once ctx ends, and returns when
// every request sent has an outcome. Sequential and concurrent phases, limit
// and Writ, all go through here: they are measured alike.
func drive(ctx context.Context, l load, one requestFunc) Result {
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, l.n)
		res  Result
		last time.Time
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range max(min(l.inflight, l.n), 1) {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(l.n) {
				rctx, cancel := context.WithTimeout(ctx, l.timeout)
				t0 := time.Now()
				err := one(rctx)
				end := time.Now()
				cancel()
				mu.Lock()
				res.Requests++
				if err != nil {
					res.Errors++
					if len(res.ErrorSamples) < maxErrorSamples {
						res.ErrorSamples = append(res.ErrorSamples, err.Error())
					}
				} else {
					res.OK++
					lat = append(lat, end.Sub(t0))
				}
				last = end
				done := res.Requests
				if l.progress != nil {
					l.progress(done)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if !last.IsZero() {
		res.Elapsed = last.Sub(start)
	}
	if s := res.Elapsed.Seconds(); s > 0 {
		res.Throughput = float64(res.OK) / s
	}
	res.Latency = Summarize(lat)
	return res
}
