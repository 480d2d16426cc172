package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/notify"
)

// writ audit deadletter lists what the pipeline gave up on — genuine
// unprocessable answers in the trail, and undeliverable notifications —
// and nothing a stranger signed.
func TestAuditDeadLetter(t *testing.T) {
	dir, url := serve(t)
	common := []string{"--dir", dir, "--server", url}
	out, _, err := writ(t, append([]string{"audit", "deadletter"}, common...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "Nothing was given up on.")

	out, errOut, err := writ(t, append([]string{"request", "--creds", filepath.Join(dir, "creds", "deploy-bot.creds"),
		"--action", "deploy", "--resource", "staging/web"}, common...)...)
	require.NoError(t, err, errOut)
	id := strings.TrimSpace(out)
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	rt, err := cfg.Open()
	require.NoError(t, err)
	nc, err := operatorConn(t, dir, url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()

	// The component's answer, and a stranger's forgery of one.
	stranger, _ := nkeys.CreateServer()
	for _, key := range []nkeys.KeyPair{stranger, rt.ApprovalKey} {
		require.Eventually(t, func() bool {
			msgs, err := store.Reader{NC: nc, Stream: "WRIT"}.Load(ctx, events.RequestFilter("acme", id), 1)
			if err != nil || len(msgs) < 3 {
				return false
			}
			last := msgs[len(msgs)-1]
			out, err := events.Seal(events.Draft{Domain: "acme", RequestID: id, Kind: events.KindRefused, Ordinal: "poison",
				Source: "writ://acme/approval", Time: time.Now(), Data: &events.Refused{
					Prev: events.Digest(last.Body), RefSeq: msgs[0].Seq, RefKind: "requested", Code: consumers.CodeUnprocessable, Reason: "panic: broken",
				}}, key)
			require.NoError(t, err)
			_, err = store.Append(ctx, js, "WRIT", out, last.Seq, events.RequestFilter("acme", id))
			return err == nil
		}, 10*time.Second, 50*time.Millisecond)
	}
	_, err = js.CreateStream(ctx, notify.DeadLetterStreamConfig(notify.DefaultDeadLetterStream, "acme", 1))
	require.NoError(t, err)
	l, _ := json.Marshal(notify.DeadLetter{Version: notify.DeadLetterVersion, Domain: "acme", RequestID: id, EventKind: "granted",
		Target: "https://hooks.example/#ops", Attempts: 8, LastError: "503 Service Unavailable"})
	_, err = js.Publish(ctx, notify.DeadLetterSubject("acme", id), l)
	require.NoError(t, err)

	out, _, err = writ(t, append([]string{"audit", "deadletter", "--json"}, common...)...)
	require.NoError(t, err)
	var got []deadLetter
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d deadLetter
		require.NoError(t, json.Unmarshal([]byte(line), &d), line)
		got = append(got, d)
	}
	require.Len(t, got, 2, "the genuine answer and the notification, not the forgery: %s", out)
	assert.Equal(t, "pipeline", got[0].Source)
	assert.Equal(t, id, got[0].RequestID)
	assert.Equal(t, "panic: broken", got[0].Reason)
	assert.Equal(t, "notifier", got[1].Source)
	assert.Contains(t, got[1].What, "granted to https://hooks.example/#ops, 8 attempts")
}
