package embedded_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	idconnect "github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
)

// pair is a hub (beta) and a spoke (alpha) as writ init makes them: each
// server's authentication, the leaf creds beta issued for alpha, and each
// domain's operator's connection options.
type pair struct {
	hubAuth, spokeAuth         *embedded.Auth
	spokeAccount, leafCreds    string
	hubOperator, spokeOperator []nats.Option
}

func leafPair(t *testing.T) pair {
	t.Helper()
	var p pair
	root := t.TempDir()
	cfgs := map[string]*config.Config{}
	for _, d := range []string{"alpha", "beta"} {
		c, err := config.Init(filepath.Join(root, d), d)
		require.NoError(t, err)
		cfgs[d] = c
	}
	var err error
	p.hubAuth, err = cfgs["beta"].ServerAuth()
	require.NoError(t, err)
	p.spokeAuth, err = cfgs["alpha"].ServerAuth()
	require.NoError(t, err)
	account, err := identity.LoadSeed(cfgs["alpha"].Path(config.AccountSeed))
	require.NoError(t, err)
	p.spokeAccount, err = account.PublicKey()
	require.NoError(t, err)
	hubAccount, err := identity.LoadSeed(cfgs["beta"].Path(config.AccountSeed))
	require.NoError(t, err)
	creds, err := cfgs["beta"].IssueRole(hubAccount, config.RoleSpec{Roles: []access.Role{access.Leaf}, Name: "alpha", Spoke: "alpha"})
	require.NoError(t, err)
	p.leafCreds = filepath.Join(root, "alpha", "leaf-beta.creds")
	require.NoError(t, os.WriteFile(p.leafCreds, creds, 0o600))
	p.hubOperator, err = idconnect.Creds(cfgs["beta"].Path(config.OperatorCreds))
	require.NoError(t, err)
	p.spokeOperator, err = idconnect.Creds(cfgs["alpha"].Path(config.OperatorCreds))
	require.NoError(t, err)
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// records is a slog handler that keeps what is logged.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// find returns the records at level whose message starts with prefix.
func (r *records) find(level slog.Level, prefix string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.list {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

func (r *records) await(t *testing.T, level slog.Level, prefix string) {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.find(level, prefix)) > 0 }, 10*time.Second, 10*time.Millisecond, "no %s %q logged", level, prefix)
}

func linkTo(t *testing.T, s *embedded.Server, hub bool, peer string) embedded.LeafLink {
	t.Helper()
	links := s.LeafLinks()
	i := slices.IndexFunc(links, func(l embedded.LeafLink) bool { return l.Hub == hub && l.Peer == peer })
	require.GreaterOrEqual(t, i, 0, "no link to %s in %+v", peer, links)
	return links[i]
}

func awaitLink(t *testing.T, s *embedded.Server, hub bool, peer string, up bool, within time.Duration) embedded.LeafLink {
	t.Helper()
	var l embedded.LeafLink
	require.Eventually(t, func() bool {
		l = linkTo(t, s, hub, peer)
		return l.Up == up
	}, within, 5*time.Millisecond, "link to %s never up=%v: %+v", peer, up, l)
	return l
}

// A spoke started before its hub: its link is listed, not up, and the hub
// not reachable is a warning, not an error on every retry. Then the hub
// comes: both sides list the link up, and what crosses is counted. The
// hub goes: the spoke sees it within a second; back: a reconnect.
func TestLeafLinks(t *testing.T) {
	port := freePort(t)
	hubAddr := fmt.Sprintf("127.0.0.1:%d", port)
	log := &records{}
	p := leafPair(t)
	spoke, err := embedded.Start(embedded.Options{
		Port: -1, StoreDir: t.TempDir(), JetStreamDomain: "alpha", Name: "alpha", Logger: slog.New(log), Auth: p.spokeAuth,
		Leaf: &embedded.Leaf{Domain: "alpha", Remotes: []string{"nats-leaf://" + hubAddr}, Account: p.spokeAccount, Creds: p.leafCreds},
	})
	require.NoError(t, err)
	t.Cleanup(spoke.Shutdown)

	l := linkTo(t, spoke, true, hubAddr)
	assert.False(t, l.Up)
	assert.Empty(t, l.Server)
	log.await(t, slog.LevelWarn, "federation: hub "+hubAddr+" not reachable; retrying")
	// The server reports the failed dial where the warning came from: it
	// is not an error too.
	assert.Empty(t, log.find(slog.LevelError, ""), "nothing logged as an error")
	assert.Empty(t, log.find(slog.LevelInfo, "federation: linked"))

	hubStore := t.TempDir()
	startHub := func() *embedded.Server {
		t.Helper()
		srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: hubStore, JetStreamDomain: "beta", Name: "beta", Auth: p.hubAuth,
			Leaf: &embedded.Leaf{Domain: "beta", Listen: hubAddr}})
		require.NoError(t, err)
		t.Cleanup(srv.Shutdown)
		nc, err := srv.Connect(p.hubOperator...)
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		_, err = js.CreateOrUpdateStream(t.Context(), jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.beta.*.*"}})
		require.NoError(t, err)
		return srv
	}
	hub := startHub()
	// The spoke retries every second (with jitter up to another).
	l = awaitLink(t, spoke, true, hubAddr, true, 10*time.Second)
	assert.Equal(t, "beta", l.Server)
	assert.Zero(t, l.Reconnects)
	log.await(t, slog.LevelInfo, "federation: linked to hub")
	h := awaitLink(t, hub, false, "alpha", true, 5*time.Second)
	assert.Equal(t, "alpha", h.Server)
	assert.False(t, h.Since.IsZero())

	// A request crosses: counted out of the spoke and into the hub.
	nc, err := spoke.Connect(p.spokeOperator...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	before, hubBefore := linkTo(t, spoke, true, hubAddr), linkTo(t, hub, false, "alpha")
	require.Eventually(t, func() bool {
		_, err := js.Publish(t.Context(), "writ.beta.0195a7a0-0000-7000-8000-000000000001.requested", []byte(`{}`), jetstream.WithExpectStream("WRIT"))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	after := linkTo(t, spoke, true, hubAddr)
	assert.Greater(t, after.OutMsgs, before.OutMsgs, "the request went out")
	assert.Greater(t, after.InMsgs, before.InMsgs, "its acknowledgement came back")
	assert.Greater(t, after.OutBytes, before.OutBytes)
	// The hub's server adds a read's messages to the link's count once it
	// has handled the read, which may be after the acknowledgement left.
	assert.Eventually(t, func() bool { return linkTo(t, hub, false, "alpha").InMsgs > hubBefore.InMsgs },
		5*time.Second, 10*time.Millisecond, "the request counted into the hub")
	// The spoke's interest (the acknowledgement's inbox among it) is held
	// at the hub; its count there may trail the reply that used it.
	assert.Eventually(t, func() bool { return linkTo(t, hub, false, "alpha").Subs > 0 },
		5*time.Second, 10*time.Millisecond, "the spoke's interest, held at the hub")

	// The hub goes away: the spoke's link is down within a second.
	hub.Shutdown()
	gone := time.Now()
	awaitLink(t, spoke, true, hubAddr, false, time.Second)
	t.Logf("link down seen after %s", time.Since(gone).Round(time.Millisecond))
	log.await(t, slog.LevelWarn, "federation: link to hub lost")

	// Back: linked again, one reconnect.
	startHub()
	l = awaitLink(t, spoke, true, hubAddr, true, 10*time.Second)
	assert.Equal(t, 1, l.Reconnects)
	assert.Empty(t, log.find(slog.LevelError, ""), "nothing logged as an error")
	assert.Len(t, log.find(slog.LevelInfo, "federation: linked to hub"), 2)
}

// A server that does not federate has no links to tell of.
func TestLeafLinksWithoutFederation(t *testing.T) {
	s, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer s.Shutdown()
	assert.Nil(t, s.LeafLinks())
	lz, err := s.Leafz()
	require.NoError(t, err)
	assert.Zero(t, lz.NumLeafs)
	sz, err := s.Subsz()
	require.NoError(t, err)
	assert.Positive(t, sz.NumSubs, "the server's own subscriptions (JetStream's API)")
}
