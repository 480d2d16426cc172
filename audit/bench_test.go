package audit_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/internal/gen"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
)

// BenchmarkVerifyStream verifies a stream of generated, genuine histories
// with a checkpoint at its end, read from the server as `writ audit
// verify` reads it. WRIT_BENCH_REQUESTS sets its size (default 3,000
// requests, about 10,000 events; 30,000 gives over 100,000). It reports
// events verified per second and the largest heap seen while verifying.
func BenchmarkVerifyStream(b *testing.B) {
	n := 3000
	if v, err := strconv.Atoi(os.Getenv("WRIT_BENCH_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	e := writtest.Start(b, writtest.Options{NoServe: true})
	ctx := context.Background()
	sum, err := gen.Generate(ctx, e, genOptions(n, 7))
	require.NoError(b, err)
	cp := &audit.Checkpointer{NC: e.NC, Stream: "WRIT", Domain: e.Domain, Key: e.Runtime.AuditorKey, Bundle: e.Runtime.Bundle}
	_, err = cp.Checkpoint(ctx)
	require.NoError(b, err)
	b.Logf("generated %d requests, %d events in %s (%.0f events/s)", n, sum.Events, sum.Elapsed.Round(time.Millisecond), sum.Rate())

	reader := store.Reader{NC: e.NC, Stream: "WRIT"}
	var peak atomic.Uint64
	var events uint64
	start := time.Now()
	for b.Loop() {
		runtime.GC()
		stop := sampleHeap(&peak)
		rep, err := audit.VerifyStream(ctx, reader, audit.Options{Bundle: e.Runtime.Bundle}, nil)
		stop()
		require.NoError(b, err)
		require.True(b, rep.OK(), "%v", rep.Findings)
		require.EqualValues(b, 1, rep.Checkpoints)
		events += rep.Messages
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}

// sampleHeap records the largest heap in use until the returned stop.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// genOptions generates histories as they would be stored now: decided when
// stored (the verifier checks that), so without expired ones, which the
// generator can only date back.
func genOptions(n int, seed uint64) gen.Options {
	return gen.Options{Requests: n, Seed: seed, Span: time.Second,
		Mix: gen.Mix{gen.AutoGranted: 50, gen.Approved: 25, gen.PolicyDenied: 15, gen.ApproverDenied: 10}}
}
