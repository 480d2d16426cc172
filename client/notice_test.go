package client_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

// A waiting client reads its request again only for a notice that could
// end the wait: a genuine component event that chains on and leaves the
// wait unfinished is folded ahead, unread; anything it cannot judge so is
// read for.
func TestWaitReadsOnlyForNoticesThatCouldEndIt(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	cl := e.Client
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	granted := e.Settle(id)
	require.Equal(t, request.StatusGranted, granted.State.Status)
	require.Len(t, granted.Records, 3, "requested, evaluated, granted")
	requested, evaluated, grant := granted.Records[0], granted.Records[1], granted.Records[2]

	viewOf := func(rs ...events.Record) *client.Request {
		s, errs := series.Fold[series.Any](rs)
		return &client.Request{State: s.Request, Series: s, Records: rs, Errs: errs}
	}
	notice := func(r events.Record) *nats.Msg {
		return &nats.Msg{Subject: r.Subject, Header: nats.Header(r.Header), Data: r.Body}
	}
	settled := client.Settled

	ahead, read := cl.MayDecide(viewOf(requested), notice(evaluated), settled)
	assert.False(t, read, "the evaluation does not settle the request: folded ahead, unread")
	require.NotNil(t, ahead)
	assert.Len(t, ahead.Records, 2)

	_, read = cl.MayDecide(ahead, notice(grant), settled)
	assert.True(t, read, "the grant would settle it: read to see it stored")

	_, read = cl.MayDecide(viewOf(requested), notice(grant), settled)
	assert.True(t, read, "a grant that does not chain on the view: a notice was missed")

	_, read = cl.MayDecide(viewOf(requested), notice(requested), settled)
	assert.False(t, read, "a message the view holds already (the client's own request, heard back)")

	_, read = cl.MayDecide(nil, notice(evaluated), settled)
	assert.True(t, read, "no history read yet")

	other := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	pending := e.Pending(other)
	_, read = cl.MayDecide(viewOf(requested), notice(pending.Records[0]), settled)
	assert.True(t, read, "a principal's event is judged at its stored time: read for")

	forged := notice(evaluated)
	forged.Data = append([]byte(nil), forged.Data...)
	forged.Data[len(forged.Data)-2] ^= 1
	_, read = cl.MayDecide(viewOf(requested), forged, settled)
	assert.True(t, read, "not genuine: read for")
}
