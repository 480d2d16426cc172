package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/redeem"
)

// stopTimeout bounds how long a replica, or the clean-up on a server, may
// take to stop.
const stopTimeout = 30 * time.Second

// env is what a run starts: the server, or a connection to one; the bench
// domain (or a served setup's), its streams and the relay's; and the
// connections and replicas on them. close stops all of it, last started
// first.
type env struct {
	o   Options
	log *slog.Logger
	dir string // temporary: the domain's files, the embedded store
	// urls are the client URLs of the embedded nodes, or the server given:
	// connection k prefers the k-th (modulo their number).
	urls   []string
	creds  string
	admin  *nats.Conn // setup and clean-up
	js     jetstream.JetStream
	rt     *config.Runtime
	domain string
	relay  string // the relay's stream
	// relaySubjects prefixes the relay's subjects: the run's own, also on
	// a served setup's server.
	relaySubjects string
	// owned are the streams this run made on a server it does not own,
	// deleted at close; buckets are the KV buckets it made there (the
	// pipeline's shared buckets, when they were missing).
	owned   []string
	buckets []string
	pools   []*pool
	closers []func()
	// slow counts, for the limit's connections, the floor's and Writ's,
	// the times the client library dropped messages a subscription could
	// not take (a slow consumer): a dropped delivery comes back after the
	// ack wait.
	slow struct{ limit, floor, writ atomic.Int64 }
}

// open starts the server or cluster (unless o.Server names one), sets up a
// bench domain in a temporary directory, or loads o.Setup's, and makes the
// streams the run needs. On error it has stopped what it started.
func open(ctx context.Context, o Options, log *slog.Logger) (_ *env, err error) {
	e := &env{o: o, log: log, creds: o.Creds}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "writ-bench-*"); err != nil {
		return nil, err
	}
	e.onClose(func() { _ = os.RemoveAll(e.dir) })
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	upper := "WRITBENCH_" + strings.ToUpper(tag)
	e.relay, e.relaySubjects = upper+"_RELAY", "writbench.bench-"+tag
	if o.Setup != "" {
		err = e.openServed(ctx)
	} else {
		err = e.openOwn(ctx, "bench-"+tag, upper)
	}
	if err != nil {
		return nil, err
	}
	if o.Cluster > 0 {
		// A cluster just formed may not place the stream yet.
		err = await(ctx, "the relay's stream", func(ctx context.Context) (bool, error) {
			err := e.relayStream(ctx)
			return err == nil, err
		})
	} else {
		err = e.relayStream(ctx)
	}
	if err != nil {
		return nil, err
	}
	if o.Cluster > 0 {
		return e, e.awaitStreams(ctx)
	}
	return e, nil
}

// openOwn sets up a bench domain named domain, on the embedded server or
// cluster it starts, or on o.Server, with streams named upper of its own.
func (e *env) openOwn(ctx context.Context, domain, upper string) error {
	o := e.o
	e.domain = domain
	if _, err := config.Init(filepath.Join(e.dir, "writ"), e.domain); err != nil {
		return err
	}
	cfg, err := config.Load(filepath.Join(e.dir, "writ"))
	if err != nil {
		return err
	}
	// Streams of its own, so that a bench on a shared server touches
	// nothing else; no auditor (see Components).
	cfg.Stream.Name, cfg.Stream.Timers, cfg.Stream.Replicas = upper, upper+"_TIMERS", o.StreamReplicas
	cfg.Audit = nil
	if err := cfg.Save(cfg.Dir()); err != nil {
		return err
	}
	if e.rt, err = cfg.Open(); err != nil {
		return err
	}

	switch {
	case o.Server != "":
		e.urls = []string{o.Server}
	case o.Cluster > 0:
		if err := e.startCluster(ctx, o.Cluster); err != nil {
			return err
		}
	default:
		srv, err := embedded.Start(embedded.Options{
			Port: -1, StoreDir: filepath.Join(e.dir, "jetstream"), SyncAlways: o.Sync,
			Name: "writ-bench", JetStreamDomain: e.domain, Logger: e.log, BlockProfileRate: o.BlockProfileRate,
		})
		if err != nil {
			return err
		}
		e.onClose(srv.Shutdown)
		e.urls = []string{srv.ClientURL()}
	}
	if err := e.openAdmin(); err != nil {
		return err
	}
	if o.Server != "" {
		e.owned = []string{e.relay, cfg.Stream.Timers, cfg.Stream.Name}
		if err := e.noteBuckets(ctx); err != nil {
			return err
		}
	}
	// Ensure waits, within its deadline, for a cluster still settling its
	// peers.
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	return pipeline.Ensure(ctx, e.admin, e.rt)
}

// openAdmin connects the setup's connection, and deletes, at close, what
// the run made on a server it does not own.
func (e *env) openAdmin() error {
	var err error
	if e.admin, err = e.conn("setup", 0); err != nil {
		return err
	}
	if e.js, err = jetstream.New(e.admin); err != nil {
		return err
	}
	if e.o.Server != "" {
		e.onClose(e.cleanServer)
	}
	return nil
}

// setupTimeout bounds how long a cluster may take to elect its leaders, and
// its first stream operations to succeed.
const setupTimeout = time.Minute

// onClose runs f at close, before what was deferred earlier.
func (e *env) onClose(f func()) { e.closers = append(e.closers, f) }

// close stops everything, last started first.
func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// conn is connect, closed at close.
func (e *env) conn(name string, node int) (*nats.Conn, error) {
	nc, err := e.connect(name, node)
	if err == nil {
		e.onClose(nc.Close)
	}
	return nc, err
}

// connect opens a connection of its own, over TCP even to the embedded
// server: replicas and requesters are separate processes in production. On
// a cluster it prefers node (modulo the nodes) and knows every other.
func (e *env) connect(name string, node int) (*nats.Conn, error) {
	// The relay's and the floor's connections are named for them: their
	// slow consumers are the limit's and the floor's.
	slow := &e.slow.writ
	switch {
	case strings.Contains(name, "relay"):
		slow = &e.slow.limit
	case strings.Contains(name, "floor"):
		slow = &e.slow.floor
	}
	opts := []nats.Option{
		nats.Name("writ bench " + name), nats.Timeout(5 * time.Second),
		// Counted and logged, not printed: the default prints to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				slow.Add(1)
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			e.log.Warn("bench: NATS client error", "connection", name, "subject", subject, "err", err)
		}),
	}
	if e.creds != "" {
		copts, err := connect.Creds(e.creds)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		opts = append(opts, copts...)
	}
	urls := make([]string, len(e.urls))
	for k := range urls {
		urls[k] = e.urls[(node+k)%len(e.urls)]
	}
	if len(urls) > 1 {
		opts = append(opts, nats.DontRandomize())
	}
	url := strings.Join(urls, ",")
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to %s: %w", url, err)
	}
	return nc, nil
}

// nodes is how many servers the run spreads its connections over.
func (e *env) nodes() int { return len(e.urls) }

// sharedBuckets are the pipeline's KV buckets, which pipeline.Ensure makes
// when missing and which other Writ setups on the server may use.
var sharedBuckets = []string{locks.Bucket, state.Bucket, redeem.BucketUsed, redeem.BucketNonces, redeem.BucketRevocations}

// noteBuckets remembers which shared buckets are missing, so that the
// clean-up deletes only those this run made.
func (e *env) noteBuckets(ctx context.Context) error {
	for _, b := range sharedBuckets {
		_, err := e.js.KeyValue(ctx, b)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			e.buckets = append(e.buckets, b)
		case err != nil:
			return fmt.Errorf("bench: bucket %s: %w", b, err)
		}
	}
	return nil
}

// cleanServer deletes the streams and buckets the run made on a server it
// does not own; the durable consumers go with their streams.
func (e *env) cleanServer() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	for _, name := range e.owned {
		if err := e.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			e.log.Warn("bench: could not delete a stream", "stream", name, "err", err)
		}
	}
	for _, b := range e.buckets {
		if err := e.js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			e.log.Warn("bench: could not delete a bucket", "bucket", b, "err", err)
		}
	}
}

// member is one running replica: its connection and how to stop it.
type member struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// pool runs replicas of one thing (a Writ pipeline, a relay), each on its
// own connection, sharing durable consumers, and scales them.
type pool struct {
	e       *env
	name    string
	run     func(ctx context.Context, nc *nats.Conn) error
	members []*member
	mu      sync.Mutex
	failed  error // a replica that stopped by itself
}

func (e *env) pool(name string, run func(ctx context.Context, nc *nats.Conn) error) *pool {
	p := &pool{e: e, name: name, run: run}
	e.pools = append(e.pools, p)
	e.onClose(p.stopAll)
	return p
}

// poolsErr reports any replica that stopped by itself.
func (e *env) poolsErr() error {
	var errs []error
	for _, p := range e.pools {
		errs = append(errs, p.err())
	}
	return errors.Join(errs...)
}

// scale starts or stops replicas until n run, replica k on a connection
// preferring node k. A nil pool runs nothing: Writ served elsewhere.
func (p *pool) scale(n int) error {
	if p == nil {
		return nil
	}
	for len(p.members) > n {
		p.stop(p.members[len(p.members)-1])
		p.members = p.members[:len(p.members)-1]
	}
	for len(p.members) < n {
		k := len(p.members)
		nc, err := p.e.connect(fmt.Sprintf("%s %d", p.name, k+1), k)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := &member{nc: nc, cancel: cancel, done: make(chan error, 1)}
		go func() {
			err := p.run(ctx, nc)
			if ctx.Err() == nil {
				p.mu.Lock()
				p.failed = fmt.Errorf("bench: a %s replica stopped: %v", p.name, err)
				p.mu.Unlock()
			}
			m.done <- err
		}()
		p.members = append(p.members, m)
	}
	return p.err()
}

// err reports a replica that stopped by itself.
func (p *pool) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *pool) stop(m *member) {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(stopTimeout):
		p.e.log.Warn("bench: a replica did not stop in time", "replica", p.name)
	}
	m.nc.Close()
}

func (p *pool) stopAll() { _ = p.scale(0) }
