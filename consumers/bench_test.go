package consumers_test

import (
	"testing"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// BenchmarkAutoApprove measures one request from publish to granted, one at
// a time, through the whole pipeline on an embedded server: the latency a
// requester sees for an auto-approved action.
func BenchmarkAutoApprove(b *testing.B) { benchAutoApprove(b, false) }

// BenchmarkAutoApproveSyncAlways is BenchmarkAutoApprove with every write
// on disk before it is acknowledged: the embedded server's default.
func BenchmarkAutoApproveSyncAlways(b *testing.B) { benchAutoApprove(b, true) }

func benchAutoApprove(b *testing.B, sync bool) {
	e := writtest.Start(b, writtest.Options{SyncAlways: sync})
	bot := e.Identity("deploy-bot")
	spec := client.Spec{Domain: writtest.Domain, Action: "deploy", Resource: "staging/web"}
	b.ResetTimer()
	for b.Loop() {
		id, err := e.Client.Request(b.Context(), bot, spec)
		if err != nil {
			b.Fatal(err)
		}
		r := e.Await(id, 10*time.Second, client.Settled)
		if r.State.Status != request.StatusGranted {
			b.Fatalf("request %s: %s", id, r.State.Status)
		}
	}
}
