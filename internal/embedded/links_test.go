package embedded_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

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
	spoke, err := embedded.Start(embedded.Options{
		Port: -1, StoreDir: t.TempDir(), JetStreamDomain: "alpha", Name: "alpha", Logger: slog.New(log),
		Leaf: &embedded.Leaf{Domain: "alpha", Remotes: []string{fmt.Sprintf("nats-leaf://%s:s3cret@%s", embedded.LeafUser("alpha"), hubAddr)}},
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

	startHub := func() node {
		return start(t, "beta", &embedded.Leaf{Domain: "beta", Listen: hubAddr, Spokes: map[string]string{"alpha": "s3cret"}})
	}
	hub := startHub()
	// The spoke retries every second (with jitter up to another).
	l = awaitLink(t, spoke, true, hubAddr, true, 10*time.Second)
	assert.Equal(t, "beta", l.Server)
	assert.Zero(t, l.Reconnects)
	log.await(t, slog.LevelInfo, "federation: linked to hub")
	h := awaitLink(t, hub.srv, false, "alpha", true, 5*time.Second)
	assert.Equal(t, "alpha", h.Server)
	assert.False(t, h.Since.IsZero())

	// A request crosses: counted out of the spoke and into the hub.
	nc, err := spoke.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	before, hubBefore := linkTo(t, spoke, true, hubAddr), linkTo(t, hub.srv, false, "alpha")
	require.Eventually(t, func() bool {
		_, err := js.Publish(t.Context(), "writ.beta.0195a7a0-0000-7000-8000-000000000001.requested", []byte(`{}`), jetstream.WithExpectStream("WRIT"))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	after, hubAfter := linkTo(t, spoke, true, hubAddr), linkTo(t, hub.srv, false, "alpha")
	assert.Greater(t, after.OutMsgs, before.OutMsgs, "the request went out")
	assert.Greater(t, after.InMsgs, before.InMsgs, "its acknowledgement came back")
	assert.Greater(t, after.OutBytes, before.OutBytes)
	assert.Greater(t, hubAfter.InMsgs, hubBefore.InMsgs)
	assert.Positive(t, hubAfter.Subs, "the spoke's interest, held at the hub")

	// The hub goes away: the spoke's link is down within a second.
	hub.srv.Shutdown()
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
