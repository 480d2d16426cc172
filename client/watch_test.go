package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
)

// Subscribers hear of a message the stream refuses as well as of stored
// ones. Watch waits a while for a noticed message to be stored; that wait
// must not hold up the notices behind it.
func TestWatchIsNotHeldUpByAMessageNeverStored(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	stuck := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(stuck)

	// A client that waits far longer for a noticed message than the test
	// runs: the granted request can be shown first only if the wait for
	// the vote never stored does not hold it up (with a one-second wait, a
	// busy machine granted it after the wait was over).
	c, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, HoldWait: time.Minute})
	require.NoError(t, err)
	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- c.Watch(ctx, e.Domain, func() { close(ready) }, func(r *client.Request) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, r.State.ID)
		})
	}()
	waitReady(t, ready)

	// A vote the stream refuses (it expects another last sequence): the
	// notice goes out, nothing is stored.
	r, err := e.Client.Load(t.Context(), e.Domain, stuck)
	require.NoError(t, err)
	alice := e.Identity("alice")
	out, err := events.Seal(events.Draft{Domain: e.Domain, RequestID: stuck, Kind: events.KindVoted, Ordinal: alice.Principal.Key,
		Source: "writ://acme/principals/alice", Time: time.Now(), Data: &events.Voted{
			Prev: r.State.LastDigest, Domain: e.Domain, Voter: events.PrincipalRef{Domain: e.Domain, Name: "alice"},
			Identity: alice.JWT, Decision: "approve", RequestDigest: r.State.RequestDigest,
		}}, alice.Key)
	require.NoError(t, err)
	refused := &nats.Msg{Subject: out.Subject, Data: out.Body, Header: nats.Header(out.Header())}
	refused.Header.Set("Nats-Expected-Last-Subject-Sequence", "1")
	require.NoError(t, e.NC.PublishMsg(refused))

	// Then a request that the pipeline grants.
	next := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	e.Settle(next)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0
	}, 5*time.Second, 5*time.Millisecond)
	mu.Lock()
	first := seen[0]
	mu.Unlock()
	assert.Equal(t, next, first, "the granted request is shown before Watch gives up on the vote never stored")
	cancel()
	assert.NoError(t, <-done)
}

// Once Watch says it is ready, an event appended is heard: here the only
// one there will be, a request no pipeline takes further.
func TestWatchReady(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	ctx, cancel := context.WithCancel(t.Context())
	heard := make(chan string, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.Client.Watch(ctx, e.Domain, func() { close(ready) }, func(r *client.Request) { heard <- r.State.ID })
	}()
	waitReady(t, ready)
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	select {
	case got := <-heard:
		assert.Equal(t, id, got)
	case <-time.After(10 * time.Second):
		t.Fatal("the request made after ready was not heard")
	}
	cancel()
	assert.NoError(t, <-done)
}

// waitReady waits for a watch's ready signal.
func waitReady(t *testing.T, ready <-chan struct{}) {
	t.Helper()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not say it was ready")
	}
}
