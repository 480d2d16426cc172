package notify_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/notify"
)

// TestNotifierTellsGuardAlerts: the guard's alerts live under an id of
// their own, judged by a fold of their own (series.Guard), not a
// request's: the notifier tells of them all the same.
func TestNotifierTellsGuardAlerts(t *testing.T) {
	h := newHook(t, nil)
	e := writtest.Start(t, writtest.Options{Notify: notifySection(t, nil, config.Webhook{URL: h.srv.URL, Format: config.FormatJSON})})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	id := events.GuardID(e.Domain)
	out, err := events.Seal(events.Draft{
		Domain: e.Domain, RequestID: id, Kind: events.KindAlerted, Ordinal: "0",
		Source: "writ://" + e.Domain + "/approval", Time: time.Now(),
		Data: &events.Alerted{Alert: events.AlertWeakened, Reason: "stream WRIT: max age is 2s, want unlimited"},
	}, e.Runtime.ApprovalKey)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = store.Append(ctx, js, e.Runtime.Config.Stream.Name, out, 0, events.RequestFilter(e.Domain, id))
	require.NoError(t, err)

	// The guard, running, may find nothing weakened and record that it is
	// restored (when its first read-back comes after the append): the
	// notifier tells of that too, in whatever order its deliveries land.
	weakened := func(c hit) bool {
		return of("alerted", id)(c) && bytes.Contains(c.body, []byte(`"`+events.AlertWeakened+`"`))
	}
	n := notice(t, h.until(t, weakened))
	assert.Equal(t, notify.NoticeAlert, n.Type)
	require.NotNil(t, n.Outcome)
	assert.Equal(t, events.AlertWeakened, n.Outcome.Code)
	assert.Equal(t, "Writ weakened in "+e.Domain+": issuance stopped", n.Title)
}
