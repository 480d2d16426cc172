package clustertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// TestExactlyOnceOnR3 checks, on a three-node cluster with the audit
// stream R3, what makes every effect single under at-least-once delivery:
// the expected last subject sequence (both its error codes map to
// ErrConflict), deterministic message ids (a resent event is stored once,
// also when both copies arrive at once), a principal's second vote
// refused, and two replicas that each see every message (independent
// durables) deciding and granting once. The whole trail verifies at the
// end.
func TestExactlyOnceOnR3(t *testing.T) {
	c := writtest.Cluster(t, 3, writtest.Options{})
	js, err := jetstream.New(c.NC)
	require.NoError(t, err)
	stream := c.Runtime.Config.Stream.Name
	bot, carol := c.Identity("deploy-bot"), c.Identity("carol")
	alice, bob := c.Identity("alice"), c.Identity("bob")

	t.Run("a conflicting append is ErrConflict; the same append again is success", func(t *testing.T) {
		id := newID(t)
		filter := events.RequestFilter(c.Domain, id)
		first := sealRequest(t, c, bot, id, "staging/web")
		seq, err := store.Append(t.Context(), js, stream, first, 0, filter)
		require.NoError(t, err)

		// Another writer's event, appended expecting the history empty.
		other := sealRequest(t, c, bot, id, "staging/api")
		require.NotEqual(t, first.MsgID, other.MsgID)
		_, err = js.PublishMsg(t.Context(), msgOf(other), jetstream.WithExpectLastSequenceForSubject(0, filter))
		codes := map[jetstream.ErrorCode]int{}
		codes[conflictCode(t, err)]++
		_, err = store.Append(t.Context(), js, stream, other, 0, filter)
		assert.ErrorIs(t, err, store.ErrConflict)

		// Writers racing, each expecting an empty history: one wins. The
		// losers learn it from the leader before or after their proposal
		// (wrong last sequence, 10071, or its R>1 form, 10164).
		for range 5 {
			id := newID(t)
			filter := events.RequestFilter(c.Domain, id)
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := 0
			for _, out := range racers(t, c, id) {
				wg.Go(func() {
					_, err := js.PublishMsg(t.Context(), msgOf(out), jetstream.WithExpectLastSequenceForSubject(0, filter))
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						won++
						return
					}
					codes[conflictCode(t, err)]++
				})
			}
			wg.Wait()
			assert.Equal(t, 1, won)
			assert.Equal(t, 1, count(t, c, filter))
			// The same race through store.Append: one success, the rest ErrConflict.
			id = newID(t)
			filter = events.RequestFilter(c.Domain, id)
			won = 0
			for _, out := range racers(t, c, id) {
				wg.Go(func() {
					_, err := store.Append(t.Context(), js, stream, out, 0, filter)
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						won++
						return
					}
					assert.ErrorIs(t, err, store.ErrConflict)
				})
			}
			wg.Wait()
			assert.Equal(t, 1, won)
			assert.Equal(t, 1, count(t, c, filter))
		}
		t.Logf("conflict codes seen on R3: %v", codes)

		// A retry of the first (its acknowledgement lost): same id, same
		// expectation, now stale. On R3 the duplicate id wins: success, and
		// the sequence of the copy already stored.
		again, err := store.Append(t.Context(), js, stream, first, 0, filter)
		require.NoError(t, err)
		assert.Equal(t, seq, again)
		assert.Equal(t, 1, count(t, c, filter))
	})

	// On a replicated stream the second of two copies sent at once meets the
	// first being stored ("duplicate message id is in process", 10158):
	// Append sends it again and learns it is stored. Two replicas recording
	// the policy set as they start did this, and one of them stopped.
	t.Run("the same event appended twice at once: stored once, both acknowledged", func(t *testing.T) {
		for range 10 {
			id := newID(t)
			out := sealRequest(t, c, bot, id, "staging/web")
			seqs := make([]uint64, 2)
			var wg sync.WaitGroup
			for k := range seqs {
				wg.Go(func() {
					var err error
					seqs[k], err = store.Append(t.Context(), js, stream, out, 0, events.RequestFilter(c.Domain, id))
					assert.NoError(t, err)
				})
			}
			wg.Wait()
			assert.Equal(t, seqs[0], seqs[1])
			assert.Equal(t, 1, count(t, c, events.RequestFilter(c.Domain, id)))
		}
	})

	// The lock list, resource state and redemption buckets live as long as
	// the streams do: with one copy, losing its node would stop locks,
	// state and redemptions.
	t.Run("the buckets are as replicated as the stream", func(t *testing.T) {
		for _, b := range []string{locks.Bucket, state.Bucket, redeem.BucketUsed, redeem.BucketNonces, redeem.BucketRevocations} {
			kv, err := js.KeyValue(t.Context(), b)
			require.NoError(t, err, b)
			st, err := kv.Status(t.Context())
			require.NoError(t, err)
			assert.Equal(t, c.Replicas, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas, b)
		}
	})

	// From here on replicas serve, started together: they race to record
	// the policy set.
	for _, r := range c.ServeReplicas(2) {
		defer func() { assert.True(t, r.Running(), "replica on node %d: %v", r.Node, r.Err()) }()
	}

	t.Run("the same sealed request published twice is stored once, granted once", func(t *testing.T) {
		id := newID(t)
		out := sealRequest(t, c, bot, id, "staging/web")
		a1, err := js.PublishMsg(t.Context(), msgOf(out))
		require.NoError(t, err)
		a2, err := js.PublishMsg(t.Context(), msgOf(out))
		require.NoError(t, err)
		assert.False(t, a1.Duplicate)
		assert.True(t, a2.Duplicate, "the second copy is a duplicate")
		assert.Equal(t, a1.Sequence, a2.Sequence)
		r := settle(t, c, id)
		assert.Equal(t, request.StatusGranted, r.State.Status)
		assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r))
	})

	t.Run("a vote sent twice counts once", func(t *testing.T) {
		id := c.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
		await(t, c, id, func(s request.State) bool { return s.Status.IsPending() })
		vote(t, c, alice, id, "first")
		// The same approver, the same key, another answer: another id, so
		// the stream stores it; the approval consumer refuses it.
		seq := vote(t, c, alice, id, "second thoughts, same answer")
		r := await(t, c, id, func(s request.State) bool { return s.Answered[seq] != "" })
		assert.Equal(t, "duplicate-vote", r.State.Answered[seq])
		assert.Equal(t, request.StatusPending, r.State.Status)
		vote(t, c, bob, id, "")
		r = settle(t, c, id)
		assert.Equal(t, request.StatusGranted, r.State.Status)
		// Alice's first vote is counted, at a time the race decides.
		assert.Equal(t, []string{"requested", "evaluated", "voted", "voted", "refused", "voted", "approved", "granted"}, writtest.Kinds(r, events.KindCounted))
		assert.ElementsMatch(t, []string{"alice", "bob"}, voterNames(r))
	})

	t.Run("two replicas racing on every message: one decision, one grant", func(t *testing.T) {
		// Its own durables: this replica handles every message the two
		// others do (and, from the stream's start, every earlier one).
		c.Serve(2, "-b")
		const autos, reviews = 20, 6
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // a safety net
		defer cancel()
		var mu sync.Mutex
		var auto, review []string
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for i := range autos + reviews {
			g.Go(func() error {
				who, spec := bot, client.Spec{Domain: c.Domain, Action: "deploy", Resource: fmt.Sprintf("staging/race-%d", i)}
				if i >= autos {
					who, spec = carol, client.Spec{Domain: c.Domain, Action: "restart", Resource: fmt.Sprintf("prod/race-%d", i)}
				}
				id, err := c.Client.Request(gctx, who, spec)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if i < autos {
					auto = append(auto, id)
					return nil
				}
				review = append(review, id)
				return nil
			})
		}
		require.NoError(t, g.Wait())
		for _, id := range review {
			await(t, c, id, func(s request.State) bool { return s.Status.IsPending() })
			// Both approvers at once.
			var vg errgroup.Group
			for _, v := range []*identity.Identity{alice, bob} {
				vg.Go(func() error {
					return voteUntilCounted(ctx, c.Client, v, c.Domain, id, func(_ string, err error) { t.Logf("vote by %s retried: %v", v.Principal.Name, err) })
				})
			}
			require.NoError(t, vg.Wait())
		}
		for _, id := range auto {
			r := settle(t, c, id)
			assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r), id)
		}
		for _, id := range review {
			r := settle(t, c, id)
			assert.Equal(t, []string{"requested", "evaluated", "voted", "voted", "approved", "granted"}, writtest.Kinds(r, events.KindCounted), id)
		}
	})

	// Whatever the replicas raced on, every request in the stream has one
	// end at most, and the trail verifies.
	time.Sleep(500 * time.Millisecond) // stragglers of the second replica
	ends := map[string]int{}
	for _, k := range []events.Kind{events.KindGranted, events.KindDenied, events.KindExpired, events.KindRejected} {
		msgs, err := store.Reader{NC: c.NC, Stream: stream}.Load(t.Context(), events.KindFilter(k), 1)
		require.NoError(t, err)
		for _, m := range msgs {
			_, id, _, err := events.ParseSubject(m.Subject)
			require.NoError(t, err)
			ends[id]++
		}
	}
	for id, n := range ends {
		assert.Equal(t, 1, n, "request %s: terminal events", id)
	}
	rep, err := audit.VerifyStream(t.Context(), store.Reader{NC: c.NC, Stream: stream}, audit.Options{Bundle: c.Runtime.Bundle}, nil)
	require.NoError(t, err)
	for _, f := range rep.Findings {
		t.Logf("audit finding: %+v", f)
	}
	assert.True(t, rep.OK(), "the trail verifies")
}

// TestRedeliveryAfterAckWait makes the issuer slower than its consumer's
// AckWait on the first message it handles, so that the server delivers
// that message again, to another handler, while the first still holds it.
// The first handler has minted a grant it has not appended yet; the second
// mints its own and appends it; the first's append then finds the history
// moved on, reads it again and has nothing left to do. One grant.
// (One server is enough: redelivery is the consumer's, not the cluster's.)
func TestRedeliveryAfterAckWait(t *testing.T) {
	const ackWait, slow = time.Second, 2500 * time.Millisecond
	e := writtest.Start(t, writtest.Options{NoServe: true})
	run := func(component string, clock func() time.Time) {
		p, err := pipeline.Build(e.NC, e.Runtime, pipeline.Options{Components: []string{component}, Logger: e.Logger, Clock: clock})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = p.Run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
	}
	// The issuer reads the clock when it loads a history and when it
	// appends: once armed, the second reading (the first handler's append)
	// sleeps past AckWait.
	var armed atomic.Bool
	var calls atomic.Int64
	clock := func() time.Time {
		if armed.Load() && calls.Add(1) == 2 {
			time.Sleep(slow)
		}
		return time.Now()
	}
	run("policy", nil)
	run("issuer", clock)

	// The durable as the issuer made it, with a short AckWait (an update,
	// so the running issuer keeps its pull).
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	name := consumers.DurableIssuer + e.Domain
	var cons jetstream.Consumer
	require.Eventually(t, func() bool {
		cons, err = js.Consumer(t.Context(), consumers.DefaultStream, name)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	cfg := cons.CachedInfo().Config
	cfg.AckWait = ackWait
	_, err = js.UpdateConsumer(t.Context(), consumers.DefaultStream, cfg)
	require.NoError(t, err)

	armed.Store(true)
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	r := e.Settle(id)
	assert.Equal(t, request.StatusGranted, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r))

	// The first handler wakes after the grant: let it finish, then look.
	time.Sleep(slow)
	info, err := cons.Info(t.Context())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, info.Delivered.Consumer, uint64(2), "the one message the issuer takes was delivered again after AckWait")
	assert.Zero(t, info.NumAckPending, "and acknowledged")
	r = e.Settle(id)
	assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r), "the slow handler appended nothing")
	msgs, err := store.Reader{NC: e.NC, Stream: consumers.DefaultStream}.Load(t.Context(), events.KindFilter(events.KindGranted), 1)
	require.NoError(t, err)
	assert.Len(t, msgs, 1, "one grant in the stream")
	t.Logf("deliveries of the issuer's one message: %d; issuer clock readings: %d", info.Delivered.Consumer, calls.Load())
}

func newID(t testing.TB) string {
	t.Helper()
	u, err := uuid.NewV7()
	require.NoError(t, err)
	return u.String()
}

// sealRequest signs a request for resource as who, the way the client
// does, with the given id.
func sealRequest(t testing.TB, c *writtest.ClusterEnv, who *identity.Identity, id, resource string) events.Outgoing {
	t.Helper()
	xkey, err := issuer.HolderXKey(who.Key, id)
	require.NoError(t, err)
	xpub, err := xkey.PublicKey()
	require.NoError(t, err)
	out, err := events.Seal(events.Draft{
		Domain: c.Domain, RequestID: id, Kind: events.KindRequested,
		Source: "writ://" + who.Principal.Domain + "/principals/" + who.Principal.Name,
		Time:   time.Now(),
		Data: &events.Requested{
			Domain:    c.Domain,
			Requester: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
			Identity:  who.JWT, Action: "deploy", Resource: resource, Urgency: "normal", HolderXKey: xpub,
		},
	}, who.Key)
	require.NoError(t, err)
	return out
}

// conflictCode checks that err is a wrong-last-sequence error and returns
// its code.
func conflictCode(t testing.TB, err error) jetstream.ErrorCode {
	t.Helper()
	var apiErr *jetstream.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Contains(t, []jetstream.ErrorCode{jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant}, apiErr.ErrorCode)
	return apiErr.ErrorCode
}

// racers are six different requests with the same id.
func racers(t testing.TB, c *writtest.ClusterEnv, id string) []events.Outgoing {
	t.Helper()
	bot := c.Identity("deploy-bot")
	var out []events.Outgoing
	for k := range 6 {
		out = append(out, sealRequest(t, c, bot, id, fmt.Sprintf("staging/race-%d", k)))
	}
	return out
}

func msgOf(out events.Outgoing) *nats.Msg {
	return &nats.Msg{Subject: out.Subject, Data: out.Body, Header: nats.Header(out.Header())}
}

// count is how many messages match filter.
// count is how many messages the stream holds on filter, as its leader
// says: a read answered by a replica a moment behind could say fewer.
func count(t testing.TB, c *writtest.ClusterEnv, filter string) int {
	t.Helper()
	js, err := jetstream.New(c.NC)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), c.Runtime.Config.Stream.Name)
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(filter))
	require.NoError(t, err)
	n := 0
	for _, k := range info.State.Subjects {
		n += int(k)
	}
	return n
}

func vote(t testing.TB, c *writtest.ClusterEnv, who *identity.Identity, id, reason string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seq, err := c.Client.Vote(ctx, who, c.Domain, id, client.Vote{Approve: true, Reason: reason})
	require.NoError(t, err)
	return seq
}

// await waits until done holds for the request (see follow).
func await(t testing.TB, c *writtest.ClusterEnv, id string, done func(request.State) bool) *client.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r := follow(ctx, c.Client, c.Domain, id, done)
	if r == nil || !done(r.State) {
		status := "no history"
		if r != nil {
			status = fmt.Sprintf("%s %v", r.State.Status, writtest.Kinds(r))
		}
		t.Fatalf("request %s still %s", id, status)
	}
	return r
}

func settle(t testing.TB, c *writtest.ClusterEnv, id string) *client.Request {
	t.Helper()
	return await(t, c, id, client.Settled)
}
