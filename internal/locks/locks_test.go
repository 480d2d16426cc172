package locks_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/store"
)

func TestKey(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	for _, tc := range []struct {
		target events.LockTarget
		want   string
	}{
		{events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, "principal.acme.6361726f6c"},
		{events.LockTarget{Type: events.LockKey, Name: pub}, "key." + pub},
		{events.LockTarget{Type: events.LockDomain, Name: "acme"}, "domain.acme"},
	} {
		got, err := locks.Key(tc.target)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
	// Distinct names, distinct keys: unlocking one never unlocks another.
	seen := map[string]string{}
	for _, n := range []string{"acme/bob.smith", "acme/bob_smith", "acme/bob@smith", "acme/bob-smith"} {
		k, err := locks.Key(events.LockTarget{Type: events.LockPrincipal, Name: n})
		require.NoError(t, err)
		assert.NotContains(t, seen, k, "%s and %s share a key", n, seen[k])
		seen[k] = n
	}
	for _, bad := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: "carol"},
		{Type: events.LockKey, Name: "not-a-key"},
		{Type: events.LockDomain, Name: "Not A Domain"},
		{Type: "planet", Name: "mars"},
	} {
		_, err := locks.Key(bad)
		assert.ErrorIs(t, err, locks.ErrTarget, "%v", bad)
	}
}

// TestListBucket checks the bucket side of the list: an entry locks at
// once, by push; an entry that goes away unlocks only once the trail has
// been read since, and the trail here records no lock. (The trail side,
// with signed locked events, is tested with the pipeline in consumers.)
func TestListBucket(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ.>"}, AllowDirect: true})
	require.NoError(t, err)
	require.NoError(t, locks.Ensure(ctx, js, 1))
	kv, err := js.KeyValue(ctx, locks.Bucket)
	require.NoError(t, err)

	carol := identity.Principal{Domain: "acme", Name: "carol", Key: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}
	l := locks.NewList(nc, js, store.Reader{NC: nc, Stream: "WRIT"}, events.Checker{}, nil)
	assert.ErrorIs(t, l.Check(ctx, carol), locks.ErrNotReady, "fails closed before the list is loaded")
	assert.ErrorIs(t, l.Cached(carol), locks.ErrNotReady)

	go func() { _ = l.Run(ctx) }()
	require.NoError(t, l.WaitReady(ctx))
	require.NoError(t, l.Check(ctx, carol))

	for _, target := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: "acme/carol"},
		{Type: events.LockKey, Name: carol.Key},
		{Type: events.LockDomain, Name: "acme"},
	} {
		key, err := locks.Key(target)
		require.NoError(t, err)
		_, err = kv.PutString(ctx, key, "incident")
		require.NoError(t, err)
		assert.Eventually(t, func() bool { return isLocked(l.Check(ctx, carol)) && isLocked(l.Cached(carol)) }, time.Second, 5*time.Millisecond, target.Type)
		require.NoError(t, kv.Delete(ctx, key))
		assert.Eventually(t, func() bool { return l.Check(ctx, carol) == nil }, time.Second, 5*time.Millisecond, target.Type)
	}
	// Another principal of the domain is not touched by a principal lock.
	key, err := locks.Key(events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"})
	require.NoError(t, err)
	_, err = kv.PutString(ctx, key, "x")
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return isLocked(l.Check(ctx, carol)) }, time.Second, 5*time.Millisecond)
	assert.NoError(t, l.Check(ctx, identity.Principal{Domain: "acme", Name: "alice"}))
}

func isLocked(err error) bool { return errors.Is(err, locks.ErrLocked) }
