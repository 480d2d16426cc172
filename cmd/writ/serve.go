package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	idconnect "github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/dirlock"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/pipeline"
)

func runInit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("init", "init [--dir DIR] [--domain NAME] [--port N] [--replicas N] | init --upgrade [--dir DIR]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "directory to create the setup in; env WRIT_HOME")
	domain := fs.String("domain", "acme", "name of the domain (lower case letters, digits, dashes)")
	port := fs.Int("port", 4222, "port of the embedded NATS on 127.0.0.1; give each setup on one machine its own")
	replicas := fs.Int("replicas", 1, "replicas of the audit and timer streams: 3 on a three-node NATS cluster")
	upgrade := fs.Bool("upgrade", false, "give a setup made by an earlier 'writ init' server-enforced roles: the server's keys, and its creds re-issued with their roles")
	serverConf := fs.String("server-config", "", "also write FILE: the nats-server configuration that gives your own NATS the embedded server's guarantees (operator mode with this domain's account, JetStream domain, sync_interval: always); for an existing setup, only that")
	storeDir := fs.String("store-dir", "/data/jetstream", "with --server-config: where that server keeps JetStream")
	authOnly := fs.Bool("auth-only", false, "with --server-config: only the authentication settings, for a server configuration that includes the file (a cluster node's)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *upgrade {
		return upgradeSetup(*dir, stdout)
	}
	if *serverConf != "" && config.Exists(*dir) {
		return writeServerConf(*dir, *serverConf, *storeDir, *authOnly, stdout)
	}
	if *port < 1 || *port > 65535 {
		return usageError("--port %d: want 1 to 65535", *port)
	}
	if *replicas < 1 || *replicas > 5 {
		return usageError("--replicas %d: want 1 to 5", *replicas)
	}
	cfg, err := config.Init(*dir, *domain)
	if err != nil {
		if errors.Is(err, config.ErrExists) {
			return fmt.Errorf("%w; remove it or choose another --dir", err)
		}
		return err
	}
	if listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)); cfg.Listen != listen || cfg.Stream.Replicas != *replicas {
		cfg.Listen, cfg.Stream.Replicas = listen, *replicas
		if err := cfg.Validate(); err != nil {
			return err
		}
		if err := cfg.Save(*dir); err != nil {
			return err
		}
	}
	describeSetup(stdout, cfg)
	if *serverConf != "" { // for NATS servers of its own: no embedded one
		return writeServerConf(*dir, *serverConf, *storeDir, *authOnly, stdout)
	}
	fmt.Fprintf(stdout, "  NATS          nats://%s ('writ serve --dir %s' listens there)\n", cfg.Listen, *dir)
	return nil
}

func writeServerConf(dir, path, storeDir string, authOnly bool, stdout io.Writer) error {
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	conf, err := cfg.ServerConf(storeDir, authOnly)
	if errors.Is(err, config.ErrNoServerAuth) {
		return fmt.Errorf("%s: %w; %s", dir, err, config.UpgradeHint(dir))
	} else if err != nil {
		return err
	}
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return err
	}
	if authOnly {
		fmt.Fprintf(stdout, "Wrote %s: the authentication of domain %q for nats-server; include it from each node's configuration (as deploy/nats.conf does for docker-compose.yml).\n", path, cfg.Domain)
	} else {
		fmt.Fprintf(stdout, "Wrote %s: the nats-server configuration for domain %q (run: nats-server -c %s).\n", path, cfg.Domain, path)
	}
	fmt.Fprintf(stdout, "Run each Writ replica with 'writ serve --dir %s --server URL' (it connects with %s, every component's rights and no more).\n", dir, cfg.Path(config.ComponentsCreds))
	if uid, gid := os.Getuid(), os.Getgid(); uid >= 0 {
		fmt.Fprintf(stdout, "Its keys and creds are readable by their owner alone (uid %d, gid %d): run the replicas as that user (docker-compose.yml: export WRIT_UID=%d WRIT_GID=%d).\n", uid, gid, uid, gid)
	}
	fmt.Fprintf(stdout, "Clients then connect with their own creds: writ request --dir %s --server URL --creds %s ...\n", dir, filepath.Join(dir, config.PrincipalCreds("carol")))
	return nil
}

func upgradeSetup(dir string, stdout io.Writer) error {
	if !config.Exists(dir) {
		return fmt.Errorf("no Writ setup in %s to upgrade; 'writ init --dir %s' makes a new one", dir, dir)
	}
	files, err := config.Upgrade(dir)
	if errors.Is(err, config.ErrUpToDate) {
		fmt.Fprintf(stdout, "%s already has server-enforced roles: nothing to do.\n", dir)
		return nil
	}
	if err != nil {
		return fmt.Errorf("upgrade %s: %w", dir, err)
	}
	fmt.Fprintf(stdout, "Upgraded %s: its NATS server now admits only this domain's identities, each limited to its role.\n", dir)
	for _, f := range files {
		fmt.Fprintf(stdout, "  re-issued  %s\n", f)
	}
	fmt.Fprintln(stdout, "Hand the re-issued creds to whoever holds the old ones: creds issued before have no rights on the server.")
	fmt.Fprintf(stdout, "The operator's creds (%s) have every right: keep them for break-glass use.\n", filepath.Join(dir, config.OperatorCreds))
	return nil
}

func describeSetup(w io.Writer, cfg *config.Config) {
	dir := cfg.Dir()
	fmt.Fprintf(w, "Created a Writ setup for domain %q in %s:\n", cfg.Domain, dir)
	fmt.Fprintf(w, "  config        %s\n", filepath.Join(dir, config.FileName))
	fmt.Fprintf(w, "  trust bundle  %s\n", cfg.Path(cfg.Trust))
	fmt.Fprintf(w, "  policies      %s\n", cfg.Path(cfg.Policies))
	fmt.Fprintf(w, "  flows         %s\n", cfg.Path(cfg.Flows))
	fmt.Fprintf(w, "  identities    %s (", filepath.Join(dir, config.CredsDir))
	for i, s := range config.SampleIdentities {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s: %s", s.Name, strings.Join(s.Groups, ","))
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  services      %s (read-only: audit commands), %s (consumes grants)\n", cfg.Path(config.ReaderCreds), cfg.Path(config.RedeemerCreds))
	fmt.Fprintf(w, "  keys          %s (secret: keep them private; %s has every right on NATS, for break-glass use only)\n", filepath.Join(dir, config.KeysDir), filepath.Base(config.OperatorCreds))
}

// syncSetting is --sync when given, else the configuration's sync_always.
func syncSetting(fs *flag.FlagSet, flagValue, configured bool) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "sync" })
	if set {
		return flagValue
	}
	return configured
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve [--dir DIR] [--listen HOST:PORT | --port N] [--server URL --creds FILE] [--components LIST]", stderr)
	dir := fs.String("dir", envOr("WRIT_HOME", defaultDir), "Writ directory; created with a development setup if missing; env WRIT_HOME")
	listen := fs.String("listen", "", "embedded NATS address (default: the config's, 127.0.0.1:4222)")
	port := fs.Int("port", 0, "embedded NATS port on 127.0.0.1 (-1: any free port)")
	server := fs.String("server", envOr("NATS_URL", ""), "use this NATS instead of the embedded one; env NATS_URL")
	creds := fs.String("creds", "", "credentials for --server")
	components := fs.String("components", "", "comma-separated components to run: policy, approval, issuer, auditor (signed checkpoints of the audit stream, when the configuration has \"audit\"), notifier (webhooks, when it has \"notify\") (default: the configuration's components, else every one it configures)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text, or json: one JSON object a line")
	httpAddr := fs.String("http", "", "answer /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:9180 (default: the config's http, else none)")
	syncAlways := fs.Bool("sync", true, "embedded NATS writes every event to disk before acknowledging it (the config's sync_always, true for new setups); --sync=false for development only: faster, but a power loss can lose acknowledged events")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server and pipeline, from start until serve stops, to this file (for go tool pprof): where an idle or a busy setup spends")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file when serve stops (for go tool pprof)")
	if _, err := parse(fs, args); err != nil {
		return err
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
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
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

	if !config.Exists(*dir) {
		cfg, err := config.Init(*dir, "acme")
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "No Writ setup found: created a development setup.")
		describeSetup(stdout, cfg)
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		return err
	}
	rt, err := cfg.Open()
	if err != nil {
		return fmt.Errorf("load %s: %w", *dir, err)
	}
	names := cfg.Components // the flag, when given, overrides the file
	if *components != "" {
		names = strings.Split(*components, ",")
	}

	var nc *nats.Conn
	var srv *embedded.Server
	var connect func(string) (*nats.Conn, error) // each component's own connection; nil: nc
	if *server != "" {
		opts := []nats.Option{nats.Name("writ serve"), nats.MaxReconnects(-1)}
		if c := firstNonEmpty(*creds, cfg.Path(cfg.Creds)); c != "" {
			copts, err := idconnect.Creds(c)
			if err != nil {
				return err
			}
			opts = append(opts, copts...)
			warnIfRewrites(log, c, cfg.Stream.Name)
		} else {
			log.Warn("no --creds for --server: the components connect with whatever rights the server gives a connection without credentials")
		}
		if nc, err = nats.Connect(*server, opts...); err != nil {
			return fmt.Errorf("connect to %s: %w", *server, err)
		}
		fmt.Fprintf(stdout, "Using NATS at %s\n", *server)
	} else {
		addr := firstNonEmpty(*listen, cfg.Listen)
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return usageError("--listen %q: %v", addr, err)
		}
		portNum, _ := strconv.Atoi(p)
		if *port != 0 {
			portNum = *port
		}
		// One embedded server per store: a second one on the same
		// directory would open the same JetStream files.
		lock, err := dirlock.Acquire(cfg.Dir(), serveLock, "starting")
		var held *dirlock.HeldError
		if errors.As(err, &held) {
			return fmt.Errorf("another 'writ serve' is running on %s: %w. Stop it first%s, or give this one a setup of its own with 'writ init --dir OTHER --port N'", *dir, held, stopHint(held))
		} else if err != nil {
			return err
		}
		defer lock.Release()
		auth, err := cfg.ServerAuth()
		if errors.Is(err, config.ErrNoServerAuth) {
			return fmt.Errorf("%s: %w; %s", *dir, err, config.UpgradeHint(*dir))
		} else if err != nil {
			return err
		}
		leaf, err := rt.Leaf()
		if err != nil {
			return err
		}
		srv, err = embedded.Start(embedded.Options{
			Host: host, Port: portNum, StoreDir: cfg.Path(cfg.StoreDir),
			SyncAlways: syncSetting(fs, *syncAlways, cfg.SyncAlways), Name: "writ-" + cfg.Domain,
			Logger: log, JetStreamDomain: cfg.Domain, Leaf: leaf, Auth: auth,
		})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		// serve's own connection (stream setup, health) holds the rights
		// of the components it runs; each component gets its own.
		if connect, err = pipeline.RoleConnector(rt, "", log, srv.Connect); err != nil {
			return err
		}
		if nc, err = serveConn(rt, srv, names); err != nil {
			return err
		}
		durability := "every write on disk before it is acknowledged"
		if !syncSetting(fs, *syncAlways, cfg.SyncAlways) {
			durability = "writes flushed in batches: development only, a power loss can lose acknowledged events"
		}
		if err := lock.SetNote(srv.ClientURL()); err != nil {
			log.Warn("the serve lock file does not say where this server listens", "err", err)
		}
		fmt.Fprintf(stdout, "NATS with JetStream listening on %s (store: %s; %s)\n", srv.ClientURL(), cfg.Path(cfg.StoreDir), durability)
	}
	defer nc.Close()

	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = pipeline.Ensure(setupCtx, nc, rt)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the cluster
		}
		return err
	}
	// Operations endpoints (health, readiness, metrics), when asked for.
	opsSrv, err := newOpsServer(firstNonEmpty(*httpAddr, cfg.HTTP), nc, cfg, srv, log)
	if err != nil {
		return err
	}
	p, err := pipeline.Build(nc, rt, pipeline.Options{Components: names, Logger: log, Observer: opsSrv.observer(), Connect: connect})
	if err != nil {
		return err
	}
	stopOps, err := opsSrv.start(ctx, p, stdout)
	if err != nil {
		return err
	}
	defer stopOps()
	fmt.Fprintf(stdout, "Writ serving domain %q on stream %s: %s. Ctrl-C stops.\n",
		cfg.Domain, cfg.Stream.Name, strings.Join(p.Names(), ", "))
	err = p.Run(ctx)
	fmt.Fprintln(stdout, "Stopping: consumers drained.")
	// Flush what the consumers acknowledged before the server goes away.
	if ferr := nc.FlushTimeout(5 * time.Second); ferr != nil && err == nil && srv == nil {
		err = ferr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// serveLock is the file in the setup directory that a serving process
// holds locked.
const serveLock = "serve.lock"

func stopHint(h *dirlock.HeldError) string {
	if h.Holder.PID == 0 {
		return ""
	}
	return fmt.Sprintf(" (Ctrl-C where it runs, or kill %d)", h.Holder.PID)
}

// serveConn connects serve itself to the embedded server with the union
// of the rights of the components it runs.
func serveConn(rt *config.Runtime, srv *embedded.Server, names []string) (*nats.Conn, error) {
	if len(names) == 0 {
		names = pipeline.Defaults(rt)
	}
	roles := make([]access.Role, len(names))
	for i, n := range names {
		roles[i] = access.Role(n)
	}
	account, err := identity.LoadSeed(rt.Config.Path(config.AccountSeed))
	if err != nil {
		return nil, err
	}
	opts, err := pipeline.RoleOptions(rt.Config, account, "", roles...)
	if err != nil {
		return nil, err
	}
	return srv.Connect(append(opts, nats.Name("writ serve"), nats.MaxReconnects(-1))...)
}

// warnIfRewrites logs a warning when the creds serve runs with could
// rewrite or remove the audit stream: a component needs none of that.
func warnIfRewrites(log *slog.Logger, creds, stream string) {
	id, err := identity.LoadCreds(creds)
	if err != nil {
		return // the connection will say what is wrong with them
	}
	uc, err := jwt.DecodeUserClaims(id.JWT)
	if err != nil {
		return
	}
	if uc.Permissions.Pub.Empty() && uc.Permissions.Sub.Empty() {
		log.Warn("the --creds carry no permissions of their own: the account's defaults apply, which may let anyone holding them update, purge or delete the audit stream; issue component creds with 'writ identity issue --role policy,approval,issuer'", "creds", creds)
		return
	}
	if calls := access.Rewrites(uc.Permissions, stream); len(calls) > 0 {
		log.Warn("the --creds may rewrite or remove the audit stream, which no component needs; issue component creds with 'writ identity issue --role policy,approval,issuer'", "creds", creds, "allowed", strings.Join(calls, ", "))
	}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
