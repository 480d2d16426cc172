package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/internal/gen"
	"github.com/writ-dev/writ/internal/writtest"
)

// TestVerifyLargeStream measures `writ audit verify` as a user runs it — a
// process of its own, reading the stream from the server — on a stream of
// WRIT_LARGE_REQUESTS generated requests (30,000 make over 100,000
// events) with checkpoints along it, and logs its rate and peak RSS. It
// runs only when WRIT_LARGE_REQUESTS is set: it takes minutes.
func TestVerifyLargeStream(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("WRIT_LARGE_REQUESTS"))
	if err != nil || n <= 0 {
		t.Skip("set WRIT_LARGE_REQUESTS (e.g. 30000) to run")
	}
	bin := filepath.Join(t.TempDir(), "writ")
	build := exec.Command("go", "build", "-o", bin, "../cmd/writ")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	e := writtest.Start(t, writtest.Options{NoServe: true})
	ctx := context.Background()
	cp := &audit.Checkpointer{NC: e.NC, Stream: "WRIT", Domain: e.Domain, Key: e.Runtime.AuditorKey, Bundle: e.Runtime.Bundle}
	events := 0
	for done := 0; done < n; {
		batch := min(5000, n-done)
		sum, err := gen.Generate(ctx, e, genOptions(batch, uint64(done+1)))
		require.NoError(t, err)
		events += sum.Events
		done += batch
		_, err = cp.Checkpoint(ctx)
		require.NoError(t, err)
	}
	t.Logf("generated %d requests, %d events", n, events)

	start := time.Now()
	cmd := exec.Command(bin, "audit", "verify", "--json", "--server", e.Server.ClientURL(),
		"--trust", filepath.Join(e.Dir, "trust.json"), "--domain", e.Domain, "--dir", t.TempDir())
	cmd.Stderr = os.Stderr
	if d := os.Getenv("WRIT_LARGE_GODEBUG"); d != "" {
		cmd.Env = append(os.Environ(), "GODEBUG="+d)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Start())
	// The process's own high-water mark, read while it runs: the rusage of
	// a child started by a large parent counts the parent's pages.
	var hwm atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if kib := vmHWM(cmd.Process.Pid); kib > hwm.Load() {
				hwm.Store(kib)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	err = cmd.Wait()
	close(done)
	wg.Wait()
	elapsed := time.Since(start)
	out := []byte(stdout.String())
	require.NoError(t, err, string(out))
	var rep audit.Report
	require.NoError(t, json.Unmarshal(out, &rep))
	require.True(t, rep.OK(), "%v", rep.Findings)
	rss := hwm.Load()
	t.Logf("verified %d messages (%d requests in full, %d checkpoints, %d re-evaluations) in %s: %.0f messages/s, peak RSS %.1f MiB",
		rep.Messages, rep.Requests, rep.Checkpoints, rep.Reevaluated, elapsed.Round(time.Millisecond),
		float64(rep.Messages)/elapsed.Seconds(), float64(rss)/1024)
}

// vmHWM is a process's peak resident set, in KiB, from /proc (0 when gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
