package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/embedded"
	"github.com/writ-dev/writ/state"
)

func TestStateKey(t *testing.T) {
	for _, tc := range []struct {
		domain, path, want string
	}{
		{"acme", "", "acme._domain"},
		{"acme", "prod/db", "acme.prod.db"},
		{"acme", "prod/db-1/my_disk", "acme.prod.db-1.my_disk"},
		{"acme", "prod/db.1", "acme.prod.=64622e31"},
		{"acme", "_domain", "acme.=5f646f6d61696e"},
		{"acme", "prod/_x", "acme.prod.=5f78"},
		{"acme", "a:b@c~d", "acme.=613a6240637e64"},
	} {
		got, err := state.Key(tc.domain, tc.path)
		require.NoError(t, err, tc.path)
		assert.Equal(t, tc.want, got, tc.path)
		d, p, err := state.ParseKey(got)
		require.NoError(t, err, got)
		assert.Equal(t, tc.domain, d)
		assert.Equal(t, tc.path, p, "round trip of %s", got)
	}
	for _, bad := range []struct{ domain, path string }{
		{"Acme", "prod/db"},
		{"acme", "prod//db"},
		{"acme", "prod/../db"},
		{"acme", "/prod"},
		{"acme", "prod/*"},
		{"acme", "prod db"},
	} {
		_, err := state.Key(bad.domain, bad.path)
		assert.ErrorIs(t, err, state.ErrKey, "%s/%s", bad.domain, bad.path)
	}
}

// Distinct paths, distinct keys: state written for one resource never
// reaches another, nor the domain's own entry.
func TestStateKeyNoCollisions(t *testing.T) {
	paths := []string{
		"", "_domain", "prod/db", "prod.db", "prod/db.", "prod_db", "prod-db", "prod/db/x", "prod/db.x",
		"prod/=64622e78", "prod/64622e78", "prod/db~x", "prod/db:x", "prod/db@x", "prod/DB", "a/b/c", "a/b.c", "a.b/c",
		"a_b/c", "a/_b", "x/__", "x/_-",
	}
	seen := map[string]string{}
	for _, p := range paths {
		k, err := state.Key("acme", p)
		if err != nil {
			assert.ErrorIs(t, err, state.ErrKey, p)
			continue
		}
		assert.NotContains(t, seen, k, "%q and %q share key %s", p, seen[k], k)
		seen[k] = p
	}
	k1, _ := state.Key("acme", "prod/db")
	k2, _ := state.Key("acme-2", "prod/db")
	assert.NotEqual(t, k1, k2)
}

func TestStateParseKeyRefusesOtherSpellings(t *testing.T) {
	for _, k := range []string{
		"", "acme", "ACME.prod", "acme.", "acme..db", "acme.prod.=", "acme.prod.=zz",
		"acme.=70726f64",      // "prod" is plain: it is never hex
		"acme.prod.=64622E31", // upper-case hex is not what Key writes
		"acme._domain.x",      // the domain token stands alone
		"acme._other",         // reserved
		"acme.=2e2e",          // ".." is not a path segment
		"acme.prod.*", "acme.>",
	} {
		_, _, err := state.ParseKey(k)
		assert.ErrorIs(t, err, state.ErrKey, k)
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"acme._domain", "acme.prod.db", "acme.prod.=64622e31", "acme.=5f646f6d61696e", "a.b.=zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		d, p, err := state.ParseKey(key)
		if err != nil {
			return
		}
		again, err := state.Key(d, p)
		require.NoError(t, err, "ParseKey(%q) = %q, %q", key, d, p)
		assert.Equal(t, key, again, "one key per path")
	})
}

func FuzzKey(f *testing.F) {
	f.Add("prod/db")
	f.Add("a.b/_c")
	f.Fuzz(func(t *testing.T, path string) {
		k, err := state.Key("acme", path)
		if err != nil {
			return
		}
		d, p, err := state.ParseKey(k)
		require.NoError(t, err, k)
		assert.Equal(t, "acme", d)
		assert.Equal(t, path, p)
	})
}

func start(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func TestStateSetGetDelete(t *testing.T) {
	js := start(t)
	ctx := t.Context()
	got, err := state.Get(ctx, js, "acme", "prod/db")
	require.NoError(t, err)
	assert.Empty(t, got)

	attrs := map[string]string{"on_call": "alice", "incident": "INC-7"}
	require.NoError(t, state.Set(ctx, js, "acme", "prod/db", attrs))
	got, err = state.Get(ctx, js, "acme", "prod/db")
	require.NoError(t, err)
	assert.Equal(t, attrs, got)

	require.NoError(t, state.Delete(ctx, js, "acme", "prod/db"))
	require.NoError(t, state.Delete(ctx, js, "acme", "prod/db"), "deleting what is gone is fine")
	got, err = state.Get(ctx, js, "acme", "prod/db")
	require.NoError(t, err)
	assert.Empty(t, got)

	assert.ErrorIs(t, state.Set(ctx, js, "acme", "prod/db", map[string]string{"": "x"}), state.ErrValue)
	assert.ErrorIs(t, state.Set(ctx, js, "acme", "prod//db", nil), state.ErrKey)
}

func TestStateWatcher(t *testing.T) {
	js := start(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// State written before the watcher starts is part of its initial load.
	require.NoError(t, state.Set(ctx, js, "acme", "", map[string]string{"incident_active": "true"}))

	w := state.NewWatcher(js)
	_, _, err := w.Lookup("acme", "prod/db")
	assert.ErrorIs(t, err, state.ErrNotReady, "fails closed before the state is loaded")
	assert.Nil(t, w.Get("acme", "prod/db"))
	assert.False(t, w.Ready())

	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	require.NoError(t, w.WaitReady(ctx))
	assert.Equal(t, map[string]string{"incident_active": "true"}, w.Domain("acme"))
	assert.Equal(t, map[string]string{}, w.Get("acme", "prod/db"), "no state: empty, not nil")
	assert.Equal(t, map[string]string{}, w.Domain("other"))

	require.NoError(t, state.Set(ctx, js, "acme", "prod/db", map[string]string{"on_call": "alice"}))
	assert.Eventually(t, func() bool { return w.Get("acme", "prod/db")["on_call"] == "alice" }, time.Second, 5*time.Millisecond)
	res, dom, err := w.Lookup("acme", "prod/db")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"on_call": "alice"}, res)
	assert.Equal(t, map[string]string{"incident_active": "true"}, dom)
	res["on_call"] = "mallory"
	assert.Equal(t, "alice", w.Get("acme", "prod/db")["on_call"], "callers get copies")
	assert.Empty(t, w.Get("acme", "prod/db.x"), "no state leaks to a similar path")

	require.NoError(t, state.Delete(ctx, js, "acme", "prod/db"))
	assert.Eventually(t, func() bool { return len(w.Get("acme", "prod/db")) == 0 }, time.Second, 5*time.Millisecond)
	require.NotNil(t, w.Get("acme", "prod/db"))

	// A value that is not a JSON object of strings fails closed.
	kv, err := js.KeyValue(ctx, state.Bucket)
	require.NoError(t, err)
	key, err := state.Key("acme", "prod/api")
	require.NoError(t, err)
	_, err = kv.Put(ctx, key, []byte(`{"on_call": 7}`))
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		_, _, err := w.Lookup("acme", "prod/api")
		return err != nil
	}, time.Second, 5*time.Millisecond)
	_, _, err = w.Lookup("acme", "prod/api")
	assert.ErrorIs(t, err, state.ErrMalformed)
	assert.Nil(t, w.Get("acme", "prod/api"))

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
