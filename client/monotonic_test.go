package client_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// laggingReplica stands in front of the stream's JetStream API under
// prefix "$LAG.API" and, while behind > 0, answers that many reads of a
// request's history as a replica of the stream that lags would: without
// its last message. Everything else it passes on.
type laggingReplica struct {
	behind atomic.Int32
	served atomic.Int32 // stale answers given
	reads  atomic.Int32 // reads of a history asked for
}

func newLaggingReplica(t *testing.T, nc *nats.Conn) *laggingReplica {
	t.Helper()
	l := &laggingReplica{}
	sub, err := nc.Subscribe("$LAG.API.>", func(m *nats.Msg) {
		real := "$JS.API." + strings.TrimPrefix(m.Subject, "$LAG.API.")
		if strings.Contains(m.Subject, ".DIRECT.GET.") {
			l.reads.Add(1)
		}
		if !strings.Contains(m.Subject, ".DIRECT.GET.") || l.behind.Add(-1) < 0 {
			_ = nc.PublishMsg(&nats.Msg{Subject: real, Reply: m.Reply, Header: m.Header, Data: m.Data})
			return
		}
		// Read the real answer, and give it without its last message.
		inbox := nats.NewInbox()
		answers, err := nc.SubscribeSync(inbox)
		if err != nil {
			return
		}
		defer func() { _ = answers.Unsubscribe() }()
		if nc.PublishRequest(real, inbox, m.Data) != nil {
			return
		}
		var held []*nats.Msg
		for {
			a, err := answers.NextMsg(5 * time.Second)
			if err != nil {
				return
			}
			if a.Header.Get("Nats-Sequence") != "" {
				held = append(held, a)
				continue
			}
			if len(held) > 0 {
				held = held[:len(held)-1]
			}
			for _, h := range held {
				_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: h.Header, Data: h.Data})
			}
			status := nats.Header{"Status": {"204"}, "Nats-Num-Pending": {"0"}}
			if len(held) == 0 {
				status = nats.Header{"Status": {"404"}}
			}
			_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: status})
			l.served.Add(1)
			return
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return l
}

// A client's reads never go back on what it has seen: after its own
// request, and after it saw the request pending, a replica that lags
// behind is asked again rather than believed.
func TestReadsAreMonotonic(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	lag := newLaggingReplica(t, e.NC)
	cl, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, APIPrefix: "$LAG.API"})
	require.NoError(t, err)
	carol, alice := e.Identity("carol"), e.Identity("alice")

	// Its own request: a replica without it does not make it "not found".
	lag.behind.Store(2)
	id, err := cl.Request(t.Context(), carol, client.Spec{Domain: e.Domain, Action: "restart", Resource: "prod/db"})
	require.NoError(t, err)
	r, err := cl.Load(t.Context(), e.Domain, id)
	require.NoError(t, err)
	assert.NotEmpty(t, r.Records)
	assert.EqualValues(t, 2, lag.served.Load(), "two stale answers, asked again each time")

	// Pending once: a vote's read of the history from a replica that has
	// not yet stored the evaluation does not see it requested.
	r, err = cl.Wait(t.Context(), e.Domain, id, func(s request.State) bool { return s.Status.IsPending() })
	require.NoError(t, err)
	require.True(t, r.State.Status.IsPending())
	lag.behind.Store(3)
	seq, err := cl.Vote(t.Context(), alice, e.Domain, id, client.Vote{Approve: true})
	require.NoError(t, err)
	assert.EqualValues(t, 5, lag.served.Load())
	// The history stops growing once the vote is answered (counted).
	_, err = cl.AwaitAnswer(t.Context(), e.Domain, id, seq)
	require.NoError(t, err)

	// The guarantee is the client's own: another client, which has seen
	// nothing of the request, takes the lagging answer.
	now, err := cl.Load(t.Context(), e.Domain, id)
	require.NoError(t, err)
	fresh, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, APIPrefix: "$LAG.API"})
	require.NoError(t, err)
	lag.behind.Store(1)
	behind, err := fresh.Load(t.Context(), e.Domain, id)
	require.NoError(t, err)
	assert.Len(t, behind.Records, len(now.Records)-1)
	assert.EqualValues(t, 6, lag.served.Load())
}

// Waiting reads the history when told something happened, not on a timer:
// a request nobody answers for half a second is read four times (once,
// then three more as a lagging replica of the stream may catch up), where
// a timer read it nine, and each event appended costs about one read.
func TestWaitReadsWhenTold(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	lag := newLaggingReplica(t, e.NC)
	cl, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, APIPrefix: "$LAG.API"})
	require.NoError(t, err)
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	lag.reads.Store(0)
	_, err = cl.Wait(ctx, e.Domain, id, client.Settled)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.LessOrEqual(t, lag.reads.Load(), int32(4), "nothing happened: read once, and three times more while a replica may catch up")

	// Two votes, an approval and a grant: about a read each.
	lag.reads.Store(0)
	go func() {
		e.Vote("alice", id, true, "")
		e.Vote("bob", id, true, "")
	}()
	r, err := cl.Wait(t.Context(), e.Domain, id, client.Settled)
	require.NoError(t, err)
	assert.Equal(t, request.StatusGranted, r.State.Status)
	assert.LessOrEqual(t, lag.reads.Load(), int32(12), "reads while four events were appended")
	t.Logf("%d reads while the request was approved and granted", lag.reads.Load())
}

// A request listened to before it is published (Submit) misses no event
// of it, so its wait reads nothing until an event could end it: not at
// first, not while a replica might catch up, not for the evaluation that
// leaves it pending. Then the votes and the grant are read for.
func TestSubmittedRequestReadsOnlyWhenItCouldBeDone(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	lag := newLaggingReplica(t, e.NC)
	cl, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, APIPrefix: "$LAG.API"})
	require.NoError(t, err)
	sub, err := cl.Submit(t.Context(), e.Identity("carol"), client.Spec{Domain: e.Domain, Action: "restart", Resource: "prod/db"})
	require.NoError(t, err)
	defer sub.Close()

	// Shorter than the idle poll (a second), longer than the evaluation.
	ctx, cancel := context.WithTimeout(t.Context(), 900*time.Millisecond)
	defer cancel()
	r, err := sub.Wait(ctx, client.Settled)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, r == nil, "nothing read: no history to show")
	require.Equal(t, request.StatusPending, e.Pending(sub.ID).State.Status, "evaluated meanwhile")
	assert.Zero(t, lag.reads.Load(), "the pending evaluation could not settle it: not read for")

	go func() {
		e.Vote("alice", sub.ID, true, "")
		e.Vote("bob", sub.ID, true, "")
	}()
	r, err = sub.Wait(t.Context(), client.Settled)
	require.NoError(t, err)
	assert.Equal(t, request.StatusGranted, r.State.Status)
	assert.NotZero(t, lag.reads.Load(), "read when it could be done")
}
