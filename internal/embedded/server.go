package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configure the embedded server.
type Options struct {
	Host       string // default 127.0.0.1
	Port       int    // -1 picks a free port; 0 means the NATS default, 4222
	StoreDir   string // JetStream file store; required
	SyncAlways bool   // fsync every write (production durability; slower)
	Name       string
	Logger     *slog.Logger // server log lines at debug level and above; nil: silent

	// JetStreamDomain names this server's JetStream domain, so that other
	// servers reach its streams as $JS.<domain>.API across leafnodes.
	JetStreamDomain string
	// Leaf links this server to other domains' servers. Nil: no leafnodes.
	Leaf *Leaf
	// Cluster makes this server one node of a JetStream cluster (then Name
	// is required, and unique in the cluster). Nil: a standalone server.
	Cluster *Cluster
	// Auth makes every connection authenticate with a user JWT and gives it
	// the permissions the JWT carries. Nil: the server trusts every
	// connection (tests of the server itself only).
	Auth *Auth
	// BlockProfileRate is the process's block profile rate
	// (runtime.SetBlockProfileRate) once the server has started: a server
	// sets the rate at start, to 0 unless told, so a caller profiling
	// where its goroutines wait passes its rate here.
	BlockProfileRate int
}

// Cluster joins embedded servers on one machine into a NATS cluster with
// clustered JetStream: what tests use to run replicated (R3) streams. Like
// client connections, routes are on loopback only: they carry no
// authentication either.
type Cluster struct {
	Name   string   // the cluster's name, the same on every node
	Port   int      // route listen port on the server's host; -1 picks a free one
	Routes []string // nats-route://127.0.0.1:PORT of the nodes (its own may be listed)
}

func (c *Cluster) options(o *server.Options) error {
	if c.Name == "" {
		return errors.New("embedded: a cluster needs a name")
	}
	if o.ServerName == "" {
		return errors.New("embedded: a cluster node needs a server name (Options.Name), unique in the cluster")
	}
	if c.Port == 0 {
		return errors.New("embedded: a cluster node needs a route port (-1 for any)")
	}
	if c.Port > 0 {
		if err := free(o.Host, c.Port); err != nil {
			return fmt.Errorf("embedded: cluster port: %w", err)
		}
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return fmt.Errorf("embedded: route %q: not a nats-route://host:port URL", r)
		}
		if !IsLoopback(u.Hostname()) {
			return fmt.Errorf("%w: route %q", ErrNotLoopback, r)
		}
		o.Routes = append(o.Routes, u)
	}
	o.Cluster.Name, o.Cluster.Host, o.Cluster.Port = c.Name, o.Host, c.Port
	return nil
}

// free reports ErrPortInUse when host:port is taken: the server would say
// so only in its log.
func free(host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %s (%v)", ErrPortInUse, addr, err)
	}
	return l.Close()
}

// Leaf is the leafnode side of federation: a hub listens for other
// domains' servers, a spoke connects to hubs. Only what must cross does:
// requests and votes into any domain, every domain's events out to
// requesters who wait for them, direct reads of a domain's history, and
// replies; never timers, and never another domain's component events into
// this one.
//
// A link is authenticated as any connection is (Options.Auth, which a
// server with leafnodes needs): a spoke presents leaf creds its hub's
// account issued, whose user JWT carries what the spoke may send into the
// hub and hear from it (access.Leaf), and the hub's server enforces those
// permissions. No secret is shared: a hub has no users of its own, and a
// remote URL carries no user or password.
type Leaf struct {
	Domain  string   // this server's Writ domain
	Listen  string   // hub: leafnode listen address, loopback
	Remotes []string // spoke: hub URLs, nats-leaf://host:port
	Others  []string // spoke: the other domains it trusts, whose component events it never forwards
	Account string   // spoke: its own account's public key, where the link lands
	Creds   string   // spoke: the leaf .creds file the hub issued for it
}

// ErrLeafAuth is returned for leafnodes that would link without the
// identities Options.Auth gives: a server without authentication, a spoke
// without leaf creds, or a remote URL with a user and secret in it.
var ErrLeafAuth = errors.New("embedded: leafnode authentication")

// componentKinds are the event kinds only a domain's own components emit.
var componentKinds = []string{"rejected", "evaluated", "approved", "denied", "expired", "granted", "refused", "redeemed", "revoked", "locked", "stated"}

func (l *Leaf) options(o *server.Options, auth bool) error {
	if !auth {
		return fmt.Errorf("%w: a server with leafnodes needs authentication (Options.Auth), so that a spoke links with the leaf creds its hub issued", ErrLeafAuth)
	}
	if l.Listen != "" {
		host, p, err := listenAddr(l.Listen)
		if err != nil {
			return err
		}
		o.LeafNode.Host, o.LeafNode.Port = host, p
		o.LeafNode.Compression = noCompression
	}
	if len(l.Remotes) == 0 {
		return nil
	}
	if l.Creds == "" || l.Account == "" {
		return fmt.Errorf("%w: a spoke needs its account and the leaf creds its hub issued", ErrLeafAuth)
	}
	for _, r := range l.Remotes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("embedded: leafnode remote %q: %w", r, err)
		}
		if u.User != nil {
			return fmt.Errorf("%w: leafnode remote %q carries a user and secret: a spoke presents the leaf creds its hub issued instead", ErrLeafAuth, u.Redacted())
		}
		imports, exports := l.denied()
		o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{
			URLs: []*url.URL{u}, LocalAccount: l.Account, Credentials: l.Creds,
			DenyImports: imports, DenyExports: exports, Compression: noCompression,
		})
	}
	return nil
}

// noCompression turns off the leafnode links' compression (nats-server's
// default, s2_auto, keeps an s2 writer of about 5 MB per link, on each
// side): a hub of 99 spokes held half a gigabyte of them, for links that
// carry Writ's events, a few hundred bytes each, mostly signatures, which
// do not compress.
var noCompression = server.CompressionOpts{Mode: server.CompressionOff}

// denied is what a spoke never takes from or sends to its hub. Timers
// never cross. Out: never another trusted domain's component events (only
// that domain's own components emit them). In, this domain's own
// component events would be refused too, but a deny there also stops the
// hub's interest in writ.<domain>.>, so requesters on the hub would hear
// of this domain's decisions only by polling: those are left to the
// signature and entitlement checks, which refuse and record anything
// forged.
func (l *Leaf) denied() (imports, exports []string) {
	imports, exports = []string{"writ-timers.>"}, []string{"writ-timers.>"}
	for _, k := range componentKinds {
		for _, d := range l.Others {
			exports = append(exports, "writ."+d+".*."+k)
		}
	}
	return imports, exports
}

func listenAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("embedded: leafnode listen %q: %w", addr, err)
	}
	if !IsLoopback(host) {
		return "", 0, fmt.Errorf("%w: leafnode listen %q", ErrNotLoopback, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("embedded: leafnode listen %q: %w", addr, err)
	}
	return host, p, nil
}

// ErrNotLoopback is returned for a listen host other than a loopback address.
var ErrNotLoopback = errors.New("embedded: not a loopback address")

// IsLoopback reports whether host is "localhost" or a loopback IP.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrPortInUse is returned when the listen address is taken.
var ErrPortInUse = errors.New("embedded: address already in use")

// Server is a running embedded nats-server.
type Server struct {
	ns *server.Server

	links    *links // nil: the server does not federate
	stop     chan struct{}
	watching chan struct{} // closed when the links' watch has ended
	once     sync.Once
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded: a JetStream store directory is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if !IsLoopback(o.Host) {
		// The embedded server has no authentication: anyone who reaches
		// it could publish, or delete the audit stream. Production runs
		// against a NATS with accounts and permissions (--server).
		return nil, fmt.Errorf("%w: %q; the embedded server has no authentication, so it listens on loopback only (use --server for a real NATS deployment)", ErrNotLoopback, o.Host)
	}
	if o.Port == 0 {
		o.Port = server.DEFAULT_PORT
	}
	if o.Port > 0 {
		if err := free(o.Host, o.Port); err != nil {
			return nil, fmt.Errorf("%w; pick another with --port, or stop what is listening there", err)
		}
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: o.SyncAlways,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
		// Writ events are small; a larger body is refused by the checker,
		// but must reach it to be recorded.
		MaxPayload: 1 << 20,
		// A CONNECT carries the user JWT, and a role's permissions make it
		// longer than the default 4 KiB control line.
		MaxControlLine: MaxControlLine,
		ProfBlockRate:  o.BlockProfileRate,
	}
	opts.JetStreamDomain = o.JetStreamDomain
	if o.Auth != nil {
		if err := o.Auth.options(opts); err != nil {
			return nil, err
		}
	}
	if o.Leaf != nil {
		if err := o.Leaf.options(opts, o.Auth != nil); err != nil {
			return nil, err
		}
		if len(o.Leaf.Remotes) > 0 {
			// A hub not reachable is said once (the logger makes it a
			// warning), then every DEFAULT_CONNECT_ERROR_REPORTS
			// attempts (an hour, at one a second), not on every retry;
			// the links' watch says when the link comes up or goes down.
			opts.ConnectErrorReports = server.DEFAULT_CONNECT_ERROR_REPORTS
			opts.ReconnectErrorReports = server.DEFAULT_CONNECT_ERROR_REPORTS
		}
	}
	if o.Cluster != nil {
		if err := o.Cluster.options(opts); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	log := o.Logger
	if log != nil {
		ns.SetLoggerV2(&logger{l: log}, false, false, false)
	} else {
		log = slog.New(slog.DiscardHandler)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded: nats-server on %s:%d did not become ready", o.Host, o.Port)
	}
	s := &Server{ns: ns}
	if o.Leaf != nil {
		s.links = newLinks(o.Leaf, log)
		s.stop, s.watching = make(chan struct{}), make(chan struct{})
		go s.watch(s.stop, s.watching)
	}
	return s, nil
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Connect opens an in-process client connection.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(s.ClientURL(), append([]nats.Option{nats.InProcessServer(s.ns)}, opts...)...)
}

// Name is the server's name (unique in its cluster).
func (s *Server) Name() string { return s.ns.Name() }

// JetStreamCurrent reports whether JetStream is ready here: on a standalone
// server once it runs, on a cluster node once the cluster has a meta leader
// and this node has caught up with it.
func (s *Server) JetStreamCurrent() bool { return s.ns.JetStreamIsCurrent() }

// Shutdown stops the server and waits until it is down. A cluster node
// first hands the leadership of its raft groups to another node.
func (s *Server) Shutdown() {
	if s.links != nil {
		s.once.Do(func() { close(s.stop) })
		<-s.watching
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// logger adapts the server's logger to slog. Its notices (start-up banner
// and the like) are debug lines; Fatalf does not exit: the embedding program
// decides what a fatal server error means.
type logger struct{ l *slog.Logger }

func (g *logger) Noticef(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
func (g *logger) Warnf(f string, v ...any)   { g.l.Warn(fmt.Sprintf(f, v...), "component", "nats") }
func (g *logger) Fatalf(f string, v ...any)  { g.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (g *logger) Errorf(f string, v ...any) {
	if f == leafConnectError && len(v) == 3 {
		// Not an error of this server's: its hub is not up yet, or went
		// away. The server retries every second.
		g.l.Warn(fmt.Sprintf("federation: hub %v not reachable; retrying", v[0]), "component", "federation", "attempt", v[1], "err", v[2])
		return
	}
	g.l.Error(fmt.Sprintf(f, v...), "component", "nats")
}

func (g *logger) Debugf(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
func (g *logger) Tracef(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }

// leafConnectError is the format nats-server logs a failed dial of a
// leafnode remote with (server.connectToRemoteLeafNode), at error level;
// TestLeafLinks keeps it in step with the server.
const leafConnectError = "Error trying to connect as leafnode to remote server %q (attempt %v): %v"

// Leafz is the server's own account of its leafnode links: per link, the
// messages and bytes each way and the subscriptions it carries.
func (s *Server) Leafz() (*server.Leafz, error) {
	return s.ns.Leafz(&server.LeafzOptions{Subscriptions: false})
}

// Subsz is the server's count of subscriptions, with how many were ever
// inserted and removed: interest that comes and goes shows there.
func (s *Server) Subsz() (*server.Subsz, error) {
	return s.ns.Subsz(&server.SubszOptions{})
}
