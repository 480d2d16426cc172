package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/writ-dev/writ/internal/bench"
)

const benchHelp = `Usage: writ bench [--requests N] [--inflight N] [--replicas 1,2,4] [--sync=false] [--review] [--cluster N | --server URL [--creds FILE] [--setup DIR]] [--json]

Measures Writ's auto-approve path (with --review, the two-approver path too)
against two relays on the same server, in the same run, and prints each one's
latencies and requests/s, and Writ's ratio to each:

  limit  a bare JetStream relay: as many persisted messages as Writ's path,
         passed on by durable pull consumers with Writ's consumer settings,
         and nothing else
  floor  the same relay, each hop also doing the cryptography Writ must do
         there: the requester signs its request, each hop verifies the
         message it takes and signs the next, the issuer's hop mints the
         grant, signs it and seals it to the requester, who verifies and
         opens it. The honest limit for a design that signs and checks
         every event: what Writ costs beyond it is its design, not its
         security.
  writ   from publishing a signed request to holding the unsealed grant

Flags:
`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchHelp)
		printFlags(fs.Output(), fs)
	}
	server := fs.String("server", "", "bench on this NATS instead of an embedded one: the bench makes streams of its own there, and deletes them at the end")
	creds := fs.String("creds", "", "credentials for --server (with --setup: default the setup's operator creds, keys/operator.creds)")
	cluster := fs.Int("cluster", 0, "start this many embedded servers as one JetStream cluster on loopback instead of one, replicas and requesters spread over them, e.g. 3")
	setup := fs.String("setup", "", "bench the pipeline 'writ serve --dir DIR' already serves on --server, from outside it: its domain, streams and sample identities; no Writ replica of the bench's own, nothing of Writ's made or deleted")
	syncAlways := fs.Bool("sync", true, "the embedded server writes every message to disk before acknowledging it, as 'writ serve' does; --sync=false: the NATS default, flushed in the background")
	streamReplicas := fs.Int("stream-replicas", 0, "replicas of the bench's streams (default 1, with --cluster N min(N,3)): 3 on a three-node cluster (--server)")
	requests := fs.Int("requests", bench.DefaultRequests, "requests in each phase, on the limit, the floor and Writ each")
	inflight := fs.Int("inflight", bench.DefaultInflight, "requests in flight in the concurrent phases")
	replicas := fs.String("replicas", "1", "Writ replicas: a concurrent phase for each count in this comma-separated list, e.g. 1,2,4")
	review := fs.Bool("review", false, "also the two-approver path, sequential: carol restarts prod/*, bots alice and bob approve at once")
	timeout := fs.Duration("timeout", bench.DefaultTimeout, "bound on the whole run; the phases not done by then are not measured")
	asJSON := fs.Bool("json", false, "print one JSON document instead of the table: the settings and every figure (nanoseconds, requests/s)")
	logLevel := fs.String("log-level", "error", "the replicas' and the embedded server's log on standard error: debug, info, warn or error")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (server, replicas and load alike) to this file, for go tool pprof")
	memProfile := fs.String("memprofile", "", "write a heap profile at the end of the run to this file")
	blockProfile := fs.String("blockprofile", "", "write a profile of where goroutines waited (channels, locks, selects) during the run to this file: every wait is recorded")
	mutexProfile := fs.String("mutexprofile", "", "write a profile of contended locks during the run to this file: every contention is recorded")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("bench takes no arguments, got %q", pos)
	}
	// bench.Run refuses the other combinations of flags; this one it
	// cannot see, --replicas having a default.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *setup != "" && set["replicas"] {
		return usageError("--replicas with --setup: Writ's replicas are the ones serving %s", *setup)
	}
	var counts []int
	if *setup == "" {
		if counts, err = replicaCounts(*replicas); err != nil {
			return err
		}
	}
	if *timeout <= 0 {
		return usageError("--timeout %s: want more than 0", *timeout)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				runtime.GC()
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}()
	}
	// Rates of 1 record every wait: a bench wants where the time went, not
	// a sample of it; both are off again when the run ends. The files are
	// made first, so that a path that cannot be written fails before the
	// run, not after it.
	blockRate := 0
	if *blockProfile != "" {
		f, err := os.Create(*blockProfile)
		if err != nil {
			return err
		}
		blockRate = 1
		runtime.SetBlockProfileRate(blockRate)
		defer runtime.SetBlockProfileRate(0)
		defer writeProfile("block", f) // before the rate is set back
	}
	if *mutexProfile != "" {
		f, err := os.Create(*mutexProfile)
		if err != nil {
			return err
		}
		runtime.SetMutexProfileFraction(1)
		defer runtime.SetMutexProfileFraction(0)
		defer writeProfile("mutex", f) // before the rate is set back
	}
	bar := newBenchBar(stderr, isTerminal(stderr), time.Now)
	log, err := newLogger(bar.above(stderr), *logLevel, "text")
	if err != nil {
		return err
	}
	rep, err := bench.Run(ctx, bench.Options{
		Server: *server, Creds: *creds, Cluster: *cluster, Setup: *setup, Sync: *syncAlways, StreamReplicas: *streamReplicas,
		Requests: *requests, Inflight: *inflight, Replicas: counts, Review: *review, Timeout: *timeout,
		Progress: bar.update, Logger: log, BlockProfileRate: blockRate,
	})
	bar.clear()
	if errors.Is(err, bench.ErrInvalid) {
		return usageError("%v", err)
	}
	if rep != nil {
		var werr error
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			werr = enc.Encode(rep)
		} else {
			werr = rep.WriteTable(stdout)
		}
		err = errors.Join(err, werr)
	}
	return err
}

// writeProfile writes the named runtime profile (pprof.Lookup) to f, in
// the format go tool pprof reads, and closes f.
func writeProfile(name string, f *os.File) {
	defer f.Close()
	_ = pprof.Lookup(name).WriteTo(f, 0)
}

// replicaCounts parses --replicas: "1,2,4".
func replicaCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > bench.MaxReplicas {
			return nil, usageError("--replicas %q: want counts of 1 to %d, comma-separated", s, bench.MaxReplicas)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchBar is progressBar for a bench: it counts requests, draws for any
// total (a phase of a few hundred requests can take a while), names the
// phase, and starts its rate and ETA over with each phase.
type benchBar struct {
	*progressBar
	phase string
}

func newBenchBar(w io.Writer, tty bool, now func() time.Time) *benchBar {
	return &benchBar{progressBar: newProgressBar(w, tty, now)}
}

func (b *benchBar) update(p bench.Progress) {
	if !b.tty {
		return
	}
	now := b.now()
	if p.Phase != b.phase {
		b.phase, b.start = p.Phase, now
	}
	if now.Sub(b.last) < progressEvery {
		return
	}
	b.last, b.shown = now, true
	line := strings.ReplaceAll(b.render(uint64(p.Done), uint64(p.Total), now.Sub(b.start)), "events", "requests")
	fmt.Fprint(b.w, "\r"+p.Phase+"  "+line+"\x1b[K")
}
