package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a run. Zero values take the defaults shown.
type Options struct {
	// Server is the NATS URL to bench against; "" starts an embedded
	// server with JetStream on a random loopback port, its store in a
	// temporary directory. On a server of its own choosing the run makes
	// streams and consumers of its own, and deletes them at the end.
	Server string
	Creds  string // credentials for Server; with Setup, default the setup's
	// Cluster, 2 or more, starts that many embedded servers instead of one,
	// as one JetStream cluster on loopback: the scaling curve of replicas
	// on replicated streams, each replica and requester connected to a
	// node of its own. Not with Server.
	Cluster int
	// Setup is the directory of a Writ setup already served on Server
	// (`writ serve --dir Setup`, embedded server or not): the run benches
	// that pipeline, from outside it, with the setup's domain, streams and
	// sample identities. It starts no Writ replica and makes or deletes
	// nothing of Writ's; the relay's stream is still its own. Replicas and
	// StreamReplicas must be unset: they are the served pipeline's.
	Setup string
	// Sync makes the embedded server write every message to disk before
	// acknowledging it (sync_always, what `writ serve` does); false is the
	// NATS default, which flushes in the background. Ignored with Server.
	Sync bool
	// StreamReplicas are the replicas of every stream; default 1, or
	// min(Cluster, 3) on a cluster.
	StreamReplicas int
	Requests       int           // requests a phase and path; default 2000
	Inflight       int           // requests in flight in concurrent phases; default 64
	Replicas       []int         // Writ replicas, one concurrent phase each; default [1]
	Review         bool          // also the two-approver path
	Timeout        time.Duration // the whole run but its clean-up; default 5m
	RequestTimeout time.Duration // one request; default 30s
	// Warmup is how many requests each path makes before it is measured;
	// default a tenth of Requests, at least 8 and at most 200.
	Warmup int
	// Progress hears how far each phase is, from one goroutine at a time.
	// Optional.
	Progress func(Progress)
	Logger   *slog.Logger // the replicas' and the server's complaints; nil: none
	// BlockProfileRate is what an embedded server sets the process's
	// block profile rate to when it starts (it sets one, 0 unless told):
	// a caller profiling the run passes the rate it set.
	BlockProfileRate int
}

// Progress is how far one path of one phase is.
type Progress struct {
	Phase       string // e.g. "writ concurrent, 2 replicas"
	Done, Total int
}

// Defaults and bounds.
const (
	DefaultRequests = 2000
	DefaultInflight = 64
	DefaultTimeout  = 5 * time.Minute
	MaxRequests     = 1_000_000
	MaxInflight     = 4096
	MaxReplicas     = 16
	MaxCluster      = 7
)

// ErrInvalid is what the error of options that cannot run matches, with
// the sentinel of each problem below.
var ErrInvalid = errors.New("invalid bench options")

// The problems of options that cannot run.
var (
	ErrClusterWithServer   = errors.New("a cluster is of embedded servers: not with a server of yours")
	ErrClusterSize         = fmt.Errorf("want 2 to %d nodes (0: one server, no cluster)", MaxCluster)
	ErrOverReplicated      = errors.New("more stream replicas than the cluster has nodes")
	ErrSetupNeedsServer    = errors.New("a served setup needs the server it is served on")
	ErrSetupReplicas       = errors.New("Writ replicas are served elsewhere with a setup")
	ErrSetupStreamReplicas = errors.New("stream replicas are the served setup's")
	ErrOutOfRange          = errors.New("out of range")
	ErrNegative            = errors.New("timeouts and warm-up must not be negative")
)

// validate checks the options and changes nothing: a zero value means
// its default (withDefaults).
func (o Options) validate() error {
	var errs []error
	switch {
	case o.Cluster != 0 && o.Server != "":
		errs = append(errs, ErrClusterWithServer)
	case o.Cluster < 0 || o.Cluster == 1 || o.Cluster > MaxCluster:
		// One node elects no meta leader: a single server is no cluster.
		errs = append(errs, fmt.Errorf("cluster %d: %w", o.Cluster, ErrClusterSize))
	case o.Cluster > 0 && o.StreamReplicas > o.Cluster:
		errs = append(errs, fmt.Errorf("%w: %d on %d nodes", ErrOverReplicated, o.StreamReplicas, o.Cluster))
	}
	if o.Setup != "" {
		switch {
		case o.Server == "":
			errs = append(errs, ErrSetupNeedsServer)
		case len(o.Replicas) > 0:
			errs = append(errs, ErrSetupReplicas)
		case o.StreamReplicas != 0:
			errs = append(errs, ErrSetupStreamReplicas)
		}
	}
	d := o.withDefaults()
	if d.Requests < 1 || d.Requests > MaxRequests {
		errs = append(errs, fmt.Errorf("requests %d: %w, want 1 to %d", d.Requests, ErrOutOfRange, MaxRequests))
	}
	if d.Inflight < 1 || d.Inflight > MaxInflight {
		errs = append(errs, fmt.Errorf("in flight %d: %w, want 1 to %d", d.Inflight, ErrOutOfRange, MaxInflight))
	}
	for _, r := range d.Replicas {
		if r < 1 || r > MaxReplicas {
			errs = append(errs, fmt.Errorf("replicas %d: %w, want 1 to %d", r, ErrOutOfRange, MaxReplicas))
		}
	}
	if d.StreamReplicas < 1 || d.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("stream replicas %d: %w, want 1 to 5", d.StreamReplicas, ErrOutOfRange))
	}
	if d.Timeout < 0 || d.RequestTimeout < 0 || d.Warmup < 0 {
		errs = append(errs, ErrNegative)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// withDefaults returns the options with their defaults filled in.
func (o Options) withDefaults() Options {
	if o.StreamReplicas == 0 && o.Cluster > 0 {
		o.StreamReplicas = min(o.Cluster, 3)
	}
	if o.Setup != "" {
		// The served pipeline's replicas and streams are its own; the relay
		// runs one replica, as one `writ serve` does.
		o.Replicas, o.StreamReplicas = []int{1}, 1
	}
	if o.StreamReplicas == 0 {
		o.StreamReplicas = 1
	}
	if o.Requests == 0 {
		o.Requests = DefaultRequests
	}
	if o.Inflight == 0 {
		o.Inflight = DefaultInflight
	}
	if len(o.Replicas) == 0 {
		o.Replicas = []int{1}
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = min(max(o.Requests/10, 8), 200)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ErrFailed is returned, with the report, when any measured request
// failed: not granted, or out of time.
var ErrFailed = errors.New("bench: requests failed")

// Run measures every phase and returns the report, also when it stops
// early (its Incomplete says why) or requests failed (ErrFailed). It
// stops everything it started before it returns, on ctx's end too.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	e, err := open(ctx, o, o.Logger)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r := &runner{e: e, o: o, rep: &Report{Settings: settings(o, e)}}
	err = r.run(ctx)
	if err != nil && ctx.Err() != nil {
		r.rep.Incomplete = fmt.Sprintf("stopped in %s: %v", r.at, context.Cause(ctx))
	}
	for _, p := range r.rep.Phases {
		for _, res := range []*Result{p.Limit, p.Floor, p.Writ} {
			if res != nil {
				r.rep.Errors += res.Errors
			}
		}
	}
	if err == nil && r.rep.Errors > 0 {
		err = fmt.Errorf("%w: %d of the requests measured", ErrFailed, r.rep.Errors)
	}
	return r.rep, err
}

func settings(o Options, e *env) Settings {
	s := Settings{
		Server: "embedded", Cluster: o.Cluster, Storage: "file", Sync: SyncDefault,
		StreamReplicas: e.rt.Config.Stream.Replicas, Replicas: o.Replicas, Requests: o.Requests, Inflight: o.Inflight,
		Warmup: o.Warmup, Review: o.Review, Components: Components, Workers: e.rt.Config.Limits.Workers,
		Go: runtime.Version(), NATSServer: e.admin.ConnectedServerVersion(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), Started: time.Now().UTC(),
	}
	switch {
	case o.Server != "":
		s.Server, s.Sync = o.Server, SyncServer
	case o.Sync:
		s.Sync = SyncAlways
	}
	if o.Setup != "" {
		// What runs there is the served process's business.
		s.Setup, s.Domain, s.Stream = o.Setup, e.domain, e.rt.Config.Stream.Name
		s.Replicas, s.Components = nil, nil
	}
	return s
}

// runner runs the phases in turn, each path's replicas scaled to the
// phase, limit first, then the floor, then Writ.
type runner struct {
	e   *env
	o   Options
	rep *Report
	at  string // the phase running, for a run cut short

	writ     *writ
	writPool *pool
	limit    bound // the bare relay
	floor    bound // the relay with the cryptography
	hops     int   // persisted messages of an auto-approved request
	payload  int   // the mean size of its events
}

// bound is a relay that a path is compared with, running: the bare relay
// (the limit) or the floor.
type bound struct {
	rl   *relay
	pool *pool
	req  requestFunc
}

// startBound starts a relay of hops for the path, as name, with n
// replicas: the bare relay without fl, the floor with it.
func (e *env) startBound(name string, hops, payload, n int, fl *floor) (bound, error) {
	rl, p, req, err := e.startRelay(name, hops, payload, n, fl)
	return bound{rl: rl, pool: p, req: req}, err
}

func (r *runner) run(ctx context.Context) error {
	e := r.e
	var err error
	if r.writ, err = e.requesters(); err != nil {
		return err
	}
	bot, err := e.identity("deploy-bot")
	if err != nil {
		return err
	}
	auto := r.writ.request(bot, autoSpec, nil)

	// Writ first, to learn how large its events are: the relay's messages
	// are as large. A served setup's replicas run elsewhere: no pool.
	if r.o.Setup == "" {
		r.writPool = e.pool("writ", e.replica)
	}
	if err := r.writPool.scale(r.o.Replicas[0]); err != nil {
		return err
	}
	var mu sync.Mutex
	learn := r.writ.request(bot, autoSpec, func(sizes []int) {
		mu.Lock()
		defer mu.Unlock()
		r.hops, r.payload = len(sizes), mean(sizes)
	})
	if err := r.warm(ctx, "writ", r.o.Inflight, learn); err != nil {
		return err
	}
	r.rep.Settings.RelayPayload = r.payload

	if r.limit, err = e.startBound("relay", r.hops-1, r.payload, r.o.Replicas[0], nil); err != nil {
		return err
	}
	fl, err := newFloor(floorAuto, e.domain, autoSpec, r.payload)
	if err != nil {
		return err
	}
	if r.floor, err = e.startBound("floor", fl.hops(), r.payload, r.o.Replicas[0], fl); err != nil {
		return err
	}
	if err := r.warmBounds(ctx, r.o.Inflight, r.limit, r.floor); err != nil {
		return err
	}

	if err := r.phase(ctx, "sequential", r.o.Replicas[0], 1, r.limit, r.floor, r.hops, auto); err != nil {
		return err
	}
	for i, n := range r.o.Replicas {
		if i > 0 && n != r.o.Replicas[i-1] {
			if err := r.scale(n); err != nil {
				return err
			}
			if err := r.warmBounds(ctx, r.o.Inflight, r.limit, r.floor); err != nil {
				return err
			}
			if err := r.warm(ctx, "writ", r.o.Inflight, auto); err != nil {
				return err
			}
		}
		if err := r.phase(ctx, "concurrent", n, r.o.Inflight, r.limit, r.floor, r.hops, auto); err != nil {
			return err
		}
	}
	if r.o.Review {
		return r.review(ctx)
	}
	return nil
}

// review measures the two-approver path, sequentially. Its limit is a
// relay as long as the path's critical path: the request, the evaluation,
// one vote, the approval and the grant, five messages in a row (the other
// vote is written alongside, not after). Its floor is as long, its third
// message the two approvers' votes.
func (r *runner) review(ctx context.Context) error {
	e := r.e
	if err := errors.Join(r.limit.pool.scale(0), r.floor.pool.scale(0)); err != nil {
		return err
	}
	n := r.o.Replicas[0]
	if err := r.writPool.scale(n); err != nil {
		return err
	}
	carol, err := e.identity("carol")
	if err != nil {
		return err
	}
	bctx, stop := context.WithCancel(ctx)
	var bots approvers
	wait, err := bots.start(bctx, e)
	if err != nil {
		stop()
		return err
	}
	defer func() { stop(); wait() }()
	var hops int
	var mu sync.Mutex
	req := r.writ.request(carol, reviewSpec, func(sizes []int) {
		mu.Lock()
		defer mu.Unlock()
		hops = len(sizes)
	})
	limit, err := e.startBound("review relay", 4, r.payload, n, nil)
	if err != nil {
		return err
	}
	defer limit.pool.stopAll()
	fl, err := newFloor(floorReview, e.domain, reviewSpec, r.payload)
	if err != nil {
		return err
	}
	floor, err := e.startBound("review floor", fl.hops(), r.payload, n, fl)
	if err != nil {
		return err
	}
	defer floor.pool.stopAll()
	if err := r.warmBounds(ctx, 1, limit, floor); err != nil {
		return err
	}
	if err := r.warm(ctx, "writ review", 1, req); err != nil {
		return errors.Join(err, bots.err())
	}
	err = r.phase(ctx, "review", n, 1, limit, floor, hops, req)
	return errors.Join(err, bots.err())
}

// scale runs n replicas of Writ, of the relay and of the floor.
func (r *runner) scale(n int) error {
	return errors.Join(r.writPool.scale(n), r.limit.pool.scale(n), r.floor.pool.scale(n))
}

// warmBounds warms the limit and the floor up.
func (r *runner) warmBounds(ctx context.Context, inflight int, limit, floor bound) error {
	if err := r.warm(ctx, "limit", inflight, limit.req); err != nil {
		return err
	}
	return r.warm(ctx, "floor", inflight, floor.req)
}

// warm makes Warmup requests, unmeasured; any failure stops the run.
func (r *runner) warm(ctx context.Context, what string, inflight int, one requestFunc) error {
	r.at = what + " warm-up"
	res := drive(ctx, r.load(r.o.Warmup, inflight, r.at), one)
	if err := ctx.Err(); err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("bench: %s: %d of %d requests failed, e.g. %s", r.at, res.Errors, res.Requests, res.ErrorSamples[0])
	}
	return nil
}

// phase measures the limit, then the floor, then Writ, with n replicas
// each and inflight requests at a time, and records them.
func (r *runner) phase(ctx context.Context, name string, n, inflight int, limit, floor bound, hops int, writ requestFunc) error {
	p := Phase{Name: name, Replicas: n, Inflight: inflight, Hops: hops, LimitHops: limit.rl.hops + 1, FloorHops: floor.rl.hops + 1}
	if r.o.Setup != "" {
		p.Replicas = 0 // served elsewhere; the relay runs one
	}
	label := p.label()
	r.at = "limit " + label
	lim := r.measure(ctx, inflight, limit.req, &r.e.slow.limit)
	p.Limit = &lim
	if err := ctx.Err(); err != nil {
		r.rep.Phases = append(r.rep.Phases, p)
		return err
	}
	r.at = "floor " + label
	fl := r.measure(ctx, inflight, floor.req, &r.e.slow.floor)
	p.Floor = &fl
	if err := ctx.Err(); err != nil {
		r.rep.Phases = append(r.rep.Phases, p)
		return err
	}
	r.at = "writ " + label
	w := r.measure(ctx, inflight, writ, &r.e.slow.writ)
	p.Writ = &w
	p.Ratio, p.FloorRatio = compare(p.Limit, p.Writ), compare(p.Floor, p.Writ)
	r.rep.Phases = append(r.rep.Phases, p)
	return errors.Join(ctx.Err(), r.e.poolsErr())
}

// measure drives Requests requests, and counts the slow consumers on the
// path's connections meanwhile.
func (r *runner) measure(ctx context.Context, inflight int, one requestFunc, slow *atomic.Int64) Result {
	before := slow.Load()
	res := drive(ctx, r.load(r.o.Requests, inflight, r.at), one)
	res.SlowConsumers = slow.Load() - before
	return res
}

func (r *runner) load(n, inflight int, label string) load {
	l := load{n: n, inflight: inflight, timeout: r.o.RequestTimeout}
	if r.o.Progress != nil {
		l.progress = func(done int) { r.o.Progress(Progress{Phase: label, Done: done, Total: n}) }
	}
	return l
}

func mean(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	s := 0
	for _, x := range xs {
		s += x
	}
	return s / len(xs)
}
