package consumers_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// A setup's components, as `writ init` configures them, each have
// DefaultWorkers handlings under way at once: as many requests as that are
// all being decided on by the policy component at the same time (a barrier
// every one of them reaches before any is let go). Most of a handling waits
// on the stream, so fewer at once left the CPU idle under sync_always.
func TestDefaultWorkersHandleAtOnce(t *testing.T) {
	n := consumers.DefaultWorkers
	var (
		mu      sync.Mutex
		inside  int
		all     = make(chan struct{})
		release = make(chan struct{})
		once    sync.Once
	)
	free := func() { once.Do(func() { close(release) }) }
	consumers.SetBeforeDecide(func(r events.Record) {
		if _, ok := r.Data.(*events.Requested); !ok {
			return
		}
		mu.Lock()
		if inside++; inside == n {
			close(all)
		}
		mu.Unlock()
		<-release
	})
	t.Cleanup(func() { consumers.SetBeforeDecide(nil) })
	e := writtest.Start(t, writtest.Options{})
	t.Cleanup(free) // before the pipeline stops: no handler is left waiting

	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	}
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d requests decided on at once", inside, n)
	}
	free()
	for _, id := range ids {
		assert.Equal(t, request.StatusGranted, e.Settle(id).State.Status)
	}
}
