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

	"github.com/writ-dev/writ/embedded"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/locks"
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

func TestWatcher(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	carol := identity.Principal{Domain: "acme", Name: "carol", Key: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}
	w := locks.NewWatcher(js)
	assert.ErrorIs(t, w.Check(carol), locks.ErrNotReady, "fails closed before the list is loaded")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	require.NoError(t, w.WaitReady(ctx))
	require.NoError(t, w.Check(carol))

	for _, target := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: "acme/carol"},
		{Type: events.LockKey, Name: carol.Key},
		{Type: events.LockDomain, Name: "acme"},
	} {
		require.NoError(t, locks.Set(ctx, js, target, false, "incident"))
		assert.Eventually(t, func() bool { return assertLocked(w.Check(carol)) }, time.Second, 5*time.Millisecond, target.Type)
		require.NoError(t, locks.Set(ctx, js, target, true, ""))
		assert.Eventually(t, func() bool { return w.Check(carol) == nil }, time.Second, 5*time.Millisecond, target.Type)
	}
	// Another principal of the domain is not touched by a principal lock.
	require.NoError(t, locks.Set(ctx, js, events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, false, "x"))
	assert.Eventually(t, func() bool { return assertLocked(w.Check(carol)) }, time.Second, 5*time.Millisecond)
	assert.NoError(t, w.Check(identity.Principal{Domain: "acme", Name: "alice"}))
}

func assertLocked(err error) bool { return errors.Is(err, locks.ErrLocked) }
