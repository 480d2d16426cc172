package state_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/state"
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

// put writes an entry straight into the bucket, as the approval
// component's keeper does (the test's connection has every right), and
// returns its revision.
func put(t *testing.T, js jetstream.JetStream, domain, path string, attrs map[string]string) uint64 {
	t.Helper()
	require.NoError(t, state.Ensure(t.Context(), js, 1))
	kv, err := js.KeyValue(t.Context(), state.Bucket)
	require.NoError(t, err)
	key, err := state.Key(domain, path)
	require.NoError(t, err)
	b, err := state.Encode(attrs)
	require.NoError(t, err)
	rev, err := kv.Put(t.Context(), key, b)
	require.NoError(t, err)
	return rev
}

func del(t *testing.T, js jetstream.JetStream, domain, path string) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), state.Bucket)
	require.NoError(t, err)
	key, err := state.Key(domain, path)
	require.NoError(t, err)
	require.NoError(t, kv.Delete(t.Context(), key))
}

func TestStateGet(t *testing.T) {
	js := start(t)
	ctx := t.Context()
	got, err := state.Get(ctx, js, "acme", "prod/db")
	require.NoError(t, err)
	assert.Empty(t, got)

	attrs := map[string]string{"on_call": "alice", "incident": "INC-7"}
	put(t, js, "acme", "prod/db", attrs)
	got, err = state.Get(ctx, js, "acme", "prod/db")
	require.NoError(t, err)
	assert.Equal(t, attrs, got)

	del(t, js, "acme", "prod/db")
	got, err = state.Get(ctx, js, "acme", "prod/db")
	require.NoError(t, err)
	assert.Empty(t, got)
	_, err = state.Get(ctx, js, "acme", "prod//db")
	assert.ErrorIs(t, err, state.ErrKey)
}

func TestEncodeAndCheckAttrs(t *testing.T) {
	b, err := state.Encode(map[string]string{"b": "2", "a": "1"})
	require.NoError(t, err)
	assert.Equal(t, `{"a":"1","b":"2"}`, string(b), "one value, one spelling")
	b, err = state.Encode(nil)
	require.NoError(t, err)
	assert.Equal(t, `{}`, string(b))
	_, err = state.Encode(map[string]string{"": "x"})
	assert.ErrorIs(t, err, state.ErrValue)

	many := map[string]string{}
	for i := range state.MaxAttrs + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for _, bad := range []map[string]string{
		{"": "x"},
		{strings.Repeat("k", state.MaxAttrName+1): "x"},
		{"k": strings.Repeat("v", state.MaxAttrValue+1)},
		{"k": string([]byte{0xff})},
		many,
	} {
		assert.ErrorIs(t, state.CheckAttrs(bad), state.ErrValue)
	}
	assert.NoError(t, state.CheckAttrs(map[string]string{"on-call": "alice", "note": ""}))
}

func TestStateWatcher(t *testing.T) {
	js := start(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// State written before the watcher starts is part of its initial load.
	domRev := put(t, js, "acme", "", map[string]string{"incident_active": "true"})

	w := state.NewWatcher(js)
	_, err := w.Lookup("acme", "prod/db")
	assert.ErrorIs(t, err, state.ErrNotReady, "fails closed before the state is loaded")
	assert.Nil(t, w.Get("acme", "prod/db"))
	assert.False(t, w.Ready())

	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	require.NoError(t, w.WaitReady(ctx))
	assert.Equal(t, map[string]string{"incident_active": "true"}, w.Domain("acme"))
	assert.Equal(t, map[string]string{}, w.Get("acme", "prod/db"), "no state: empty, not nil")
	assert.Equal(t, map[string]string{}, w.Domain("other"))
	f, err := w.Lookup("acme", "prod/db")
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"acme.prod.db": 0, "acme._domain": domRev}, f.Revisions, "the revisions read; 0 for none")

	rev := put(t, js, "acme", "prod/db", map[string]string{"on_call": "alice"})
	assert.Eventually(t, func() bool { return w.Get("acme", "prod/db")["on_call"] == "alice" }, time.Second, 5*time.Millisecond)
	f, err = w.Lookup("acme", "prod/db")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"on_call": "alice"}, f.Resource)
	assert.Equal(t, map[string]string{"incident_active": "true"}, f.Domain)
	assert.Equal(t, map[string]uint64{"acme.prod.db": rev, "acme._domain": domRev}, f.Revisions)
	f.Resource["on_call"] = "mallory"
	assert.Equal(t, "alice", w.Get("acme", "prod/db")["on_call"], "callers get copies")
	assert.Empty(t, w.Get("acme", "prod/db.x"), "no state leaks to a similar path")

	del(t, js, "acme", "prod/db")
	assert.Eventually(t, func() bool { return len(w.Get("acme", "prod/db")) == 0 }, time.Second, 5*time.Millisecond)
	require.NotNil(t, w.Get("acme", "prod/db"))

	// A value that is not a JSON object of strings fails closed.
	kv, err := js.KeyValue(ctx, state.Bucket)
	require.NoError(t, err)
	key, err := state.Key("acme", "prod/api")
	require.NoError(t, err)
	bad, err := kv.Put(ctx, key, []byte(`{"on_call": 7}`))
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		_, err := w.Lookup("acme", "prod/api")
		return err != nil
	}, time.Second, 5*time.Millisecond)
	f, err = w.Lookup("acme", "prod/api")
	assert.ErrorIs(t, err, state.ErrMalformed)
	assert.Equal(t, bad, f.Revisions[key], "the revision of what could not be read")
	assert.Nil(t, w.Get("acme", "prod/api"))

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
