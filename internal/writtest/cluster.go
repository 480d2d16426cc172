package writtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/pipeline"
)

// ClusterName is the NATS cluster name of Cluster installations.
const ClusterName = "writ-test"

// ClusterEnv is a Writ installation on a JetStream cluster of embedded
// servers on loopback: what `writ serve --server` meets in production, with
// its streams replicated, and any number of Writ replicas.
type ClusterEnv struct {
	T        testing.TB
	Domain   string
	Dir      string
	Runtime  *config.Runtime // stream.replicas: up to 3
	Replicas int             // the streams' replicas
	Logger   *slog.Logger
	Nodes    []*Node
	// NC is the test's own connection, which knows every node and
	// reconnects for ever; Client is on it.
	NC     *nats.Conn
	Client *client.Client

	base     *Env // the setup's files
	mu       sync.Mutex
	replicas []*Replica
}

// Node is one server of the cluster. Its ports and store stay the same
// across Kill and Restart.
type Node struct {
	Name   string
	Port   int // client port
	Store  string
	Server *embedded.Server // nil while down
	opts   embedded.Options
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Cluster starts n embedded servers (n ≥ 3 for R3) on reserved loopback
// ports, each routed to every node, waits for the JetStream meta leader,
// and creates the streams with min(n, 3) replicas through pipeline.Ensure,
// from a configuration that says so. It starts no Writ replica: see Serve.
func Cluster(t testing.TB, n int, o Options) *ClusterEnv {
	t.Helper()
	require.GreaterOrEqual(t, n, 1)
	base := setup(t, Domain, o)
	replicas := min(n, 3)
	cfg, err := config.Load(base.Dir)
	require.NoError(t, err)
	cfg.Stream.Replicas = replicas
	require.NoError(t, cfg.Save(base.Dir))
	base.open()
	c := &ClusterEnv{T: t, Domain: base.Domain, Dir: base.Dir, Runtime: base.Runtime, Replicas: replicas, Logger: base.Logger, base: base}
	t.Cleanup(c.Close)

	opts, err := embedded.LoopbackCluster(ClusterName, "n", n, func(name string) string { return filepath.Join(base.Dir, "jetstream", name) })
	require.NoError(t, err)
	auth, err := c.Runtime.Config.ServerAuth()
	require.NoError(t, err)
	for _, o := range opts {
		o.JetStreamDomain = c.Domain
		o.Auth = auth
		c.Nodes = append(c.Nodes, &Node{Name: o.Name, Port: o.Port, Store: o.StoreDir, opts: o})
	}
	// Started at once: a node listens before its peers are up, and waits
	// for them only for JetStream.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	c.NC = c.Connect(0)
	c.AwaitJetStream(time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Ensure waits for a cluster still settling its peers after the meta
	// leader's election.
	require.NoError(t, pipeline.Ensure(ctx, c.NC, c.Runtime))
	for _, s := range []string{c.Runtime.Config.Stream.Name, c.Runtime.Config.Stream.Timers} {
		c.AwaitStreamLeader(s, time.Minute)
	}
	c.Client, err = client.New(c.NC, client.Options{Bundle: c.Runtime.Bundle, MaxBody: c.Runtime.Config.Limits.MaxEventBytes, Home: c.Domain})
	require.NoError(t, err)
	return c
}

func (c *ClusterEnv) start(i int) error {
	n := c.Nodes[i]
	o := n.opts
	if os.Getenv("WRIT_TEST_LOG") != "" {
		o.Logger = c.Logger.With("node", n.Name)
	}
	s, err := embedded.Start(o)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	n.Server = s
	return nil
}

// URLs lists every node's client URL, starting with node first.
func (c *ClusterEnv) URLs(first int) []string {
	var urls []string
	for k := range c.Nodes {
		urls = append(urls, c.Nodes[(first+k)%len(c.Nodes)].URL())
	}
	return urls
}

// Connect opens a connection that prefers node first and knows every
// other, reconnecting for ever (the way a Writ replica or a client should
// be configured against a cluster). It is closed at the end of the test.
func (c *ClusterEnv) Connect(first int, opts ...nats.Option) *nats.Conn {
	c.T.Helper()
	nc := c.connect(first, opts...)
	c.T.Cleanup(nc.Close)
	return nc
}

// connect connects as the operator (the test reads and tampers with what
// no other role may), unless opts say who else.
func (c *ClusterEnv) connect(first int, opts ...nats.Option) *nats.Conn {
	c.T.Helper()
	operator, err := connect.Creds(c.Runtime.Config.Path(config.OperatorCreds))
	require.NoError(c.T, err)
	nc, err := nats.Connect(strings.Join(c.URLs(first), ","), append(append(operator,
		nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
	), opts...)...)
	require.NoError(c.T, err)
	return nc
}

// NewClient is a client on its own connection preferring node first.
func (c *ClusterEnv) NewClient(first int) *client.Client {
	c.T.Helper()
	cl, err := client.New(c.Connect(first), client.Options{Bundle: c.Runtime.Bundle, MaxBody: c.Runtime.Config.Limits.MaxEventBytes, Home: c.Domain})
	require.NoError(c.T, err)
	return cl
}

// Identity loads a sample identity's creds.
func (c *ClusterEnv) Identity(name string) *identity.Identity { return c.base.Identity(name) }

// Request submits a request as name for the test domain, through Client,
// asking again (a new request) until the stream acknowledges one, for up
// to a minute: a cluster may be electing a leader.
func (c *ClusterEnv) Request(name string, s client.Spec) string {
	c.T.Helper()
	if s.Domain == "" {
		s.Domain = c.Domain
	}
	who := c.Identity(name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var id string
	require.NoError(c.T, retry(ctx, func() error {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		defer acancel()
		var err error
		id, err = c.Client.Request(actx, who, s)
		return err
	}))
	return id
}

// Kill stops node i. In-process, a kill is an orderly shutdown: the node
// hands over the raft groups it leads before it goes.
func (c *ClusterEnv) Kill(i int) {
	c.T.Helper()
	n := c.Nodes[i]
	require.NotNil(c.T, n.Server, "node %s is already down", n.Name)
	n.Server.Shutdown()
	n.Server = nil
}

// Restart starts node i again on its ports and store. It does not wait for
// JetStream (there may be no quorum yet): see AwaitJetStream.
func (c *ClusterEnv) Restart(i int) {
	c.T.Helper()
	n := c.Nodes[i]
	require.Nil(c.T, n.Server, "node %s is running", n.Name)
	require.NoError(c.T, c.start(i))
}

// Up lists the nodes that run.
func (c *ClusterEnv) Up() []int {
	var up []int
	for i, n := range c.Nodes {
		if n.Server != nil {
			up = append(up, i)
		}
	}
	return up
}

// AwaitJetStream waits until every running node is current with a meta
// leader.
func (c *ClusterEnv) AwaitJetStream(timeout time.Duration) {
	c.T.Helper()
	require.Eventually(c.T, func() bool {
		for _, i := range c.Up() {
			if !c.Nodes[i].Server.JetStreamCurrent() {
				return false
			}
		}
		return true
	}, timeout, 20*time.Millisecond, "JetStream meta leader")
}

// StreamLeader is the index of the node that leads stream, or -1 when it
// has no leader (or the question cannot be answered now).
func (c *ClusterEnv) StreamLeader(stream string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	js, err := jetstream.New(c.NC)
	if err != nil {
		return -1
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return -1
	}
	return slices.IndexFunc(c.Nodes, func(n *Node) bool { return n.Name == info.Cluster.Leader && n.Server != nil })
}

// AwaitStreamLeader waits until stream has a leader among the running
// nodes with every running replica current, and returns the leader's index.
func (c *ClusterEnv) AwaitStreamLeader(stream string, timeout time.Duration) int {
	c.T.Helper()
	leader := -1
	require.Eventually(c.T, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		js, err := jetstream.New(c.NC)
		if err != nil {
			return false
		}
		s, err := js.Stream(ctx, stream)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		cl := s.CachedInfo().Cluster
		leader = slices.IndexFunc(c.Nodes, func(n *Node) bool { return n.Name == cl.Leader && n.Server != nil })
		if leader < 0 {
			return false
		}
		for _, p := range cl.Replicas {
			running := slices.ContainsFunc(c.Nodes, func(n *Node) bool { return n.Name == p.Name && n.Server != nil })
			if running && !p.Current {
				return false
			}
		}
		return true
	}, timeout, 50*time.Millisecond, "a leader of stream %s", stream)
	return leader
}

// AwaitCurrent waits until every stream and every consumer has a leader
// among the running nodes and each of their running replicas is current:
// what an operator waits for before restarting the next node in a rolling
// restart, since taking one down while another catches up leaves a group
// without a quorum.
func (c *ClusterEnv) AwaitCurrent(timeout time.Duration) {
	c.T.Helper()
	var behind string
	check := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		js, err := jetstream.New(c.NC)
		if err != nil {
			behind = err.Error()
			return false
		}
		running := func(node string) bool {
			return slices.ContainsFunc(c.Nodes, func(n *Node) bool { return n.Name == node && n.Server != nil })
		}
		if behind, err = embedded.Behind(ctx, js, running); err != nil {
			behind = err.Error()
			return false
		}
		return behind == ""
	}
	for deadline := time.Now().Add(timeout); !check(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			require.FailNow(c.T, "not every stream and consumer is current", "after %s: %s", timeout, behind)
		}
	}
}

// Replica is one Writ replica (`writ serve --server` with every
// component) on a connection of its own.
type Replica struct {
	NC     *nats.Conn
	Node   int // the node it prefers
	t      testing.TB
	cancel context.CancelFunc
	exited chan struct{}
	err    error // what Run returned, once exited is closed
	once   sync.Once
}

// Serve starts a Writ replica connected first to node (modulo the
// nodes). suffix "" shares the default durable consumers with the other
// replicas; another suffix gives the replica its own copy of every message.
func (c *ClusterEnv) Serve(node int, suffix string) *Replica {
	c.T.Helper()
	node %= len(c.Nodes)
	// Closed by Stop, after the replica has finished: a cleanup of its
	// own would run before the cluster's and cut it short.
	// As a replica of 'writ serve --server' would: every component's
	// rights, for its durable consumers.
	account, err := identity.LoadSeed(c.Runtime.Config.Path(config.AccountSeed))
	require.NoError(c.T, err)
	role, err := pipeline.RoleOptions(c.Runtime.Config, account, suffix, access.Components...)
	require.NoError(c.T, err)
	nc := c.connect(node, append(role, nats.Name(fmt.Sprintf("writ-replica-%d%s", node, suffix)))...)
	p, err := pipeline.Build(nc, c.Runtime, pipeline.Options{Logger: c.Logger.With("replica", node, "suffix", suffix), DurableSuffix: suffix})
	if err != nil {
		nc.Close()
	}
	require.NoError(c.T, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replica{NC: nc, Node: node, t: c.T, cancel: cancel, exited: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx)
		close(r.exited)
	}()
	c.mu.Lock()
	c.replicas = append(c.replicas, r)
	c.mu.Unlock()
	return r
}

// ServeReplicas starts n replicas at once, sharing the durable consumers,
// replica k preferring node k (modulo the nodes).
func (c *ClusterEnv) ServeReplicas(n int) []*Replica {
	c.T.Helper()
	out := make([]*Replica, n)
	for k := range n {
		out[k] = c.Serve(k, "")
	}
	return out
}

// Running reports whether the replica still runs; Err says why not.
func (r *Replica) Running() bool {
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// Err is what the replica's pipeline returned, once it has stopped.
func (r *Replica) Err() error {
	if r.Running() {
		return nil
	}
	return r.err
}

// Stop stops the replica the way Ctrl-C stops `writ serve`: it stops
// fetching, finishes (and acknowledges) the messages it holds, and returns.
// A pipeline that failed on its own is reported.
func (r *Replica) Stop() { r.stop(false) }

// Kill stops the replica abruptly: its connection goes first, so the
// messages it held are neither finished nor acknowledged, and come back to
// another replica after the consumers' AckWait.
func (r *Replica) Kill() { r.stop(true) }

func (r *Replica) stop(kill bool) {
	r.once.Do(func() {
		defer r.NC.Close()
		if kill {
			r.NC.Close()
		}
		r.cancel()
		select {
		case <-r.exited:
			if r.err != nil && !errors.Is(r.err, context.Canceled) && !kill {
				r.t.Errorf("replica on node %d: %v", r.Node, r.err)
			}
		case <-time.After(30 * time.Second):
			r.t.Errorf("replica on node %d did not stop within 30s", r.Node)
		}
	})
}

// Close stops every replica and then every node; it is registered with
// t.Cleanup.
func (c *ClusterEnv) Close() {
	c.mu.Lock()
	rs := c.replicas
	c.replicas = nil
	c.mu.Unlock()
	for _, r := range slices.Backward(rs) {
		r.Stop()
	}
	if c.NC != nil {
		c.NC.Close()
	}
	for _, n := range c.Nodes {
		if n.Server != nil {
			n.Server.Shutdown()
			n.Server = nil
		}
	}
}

// retry calls f until it succeeds or ctx ends, returning its last error.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
