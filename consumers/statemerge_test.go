package consumers_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
)

// Two merges of one entry, decided at the same time, lose nothing: each
// is recorded only against the entry it read, so the one that comes
// second reads again and adds to the first. The approval component is
// held until it has both asks in hand, so that both read the entry before
// either records its change.
func TestStateConcurrentMergesLoseNothing(t *testing.T) {
	const path = "prod/db"
	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
		both = make(chan struct{})
	)
	consumers.SetBeforeDecide(func(r events.Record) {
		if d, ok := r.Data.(*events.State); !ok || d.Path != path || !d.Merge {
			return
		}
		mu.Lock()
		first := !seen[r.Seq]
		seen[r.Seq] = true
		if first && len(seen) == 2 {
			close(both)
		}
		mu.Unlock()
		if first { // a decision made again (after a conflict) goes on at once
			select {
			case <-both:
			case <-time.After(10 * time.Second):
			}
		}
	})
	t.Cleanup(func() { consumers.SetBeforeDecide(nil) })
	e := writtest.Start(t, writtest.Options{})
	kv := stateBucket(t, e)

	base := map[string]string{"on_call": "alice"}
	r := setState(t, e, "bob", client.StateChange{Path: path, Attrs: base})
	require.NotNil(t, r.Series.StateChange().Done, "%v", r.State.Answered)
	applied(t, kv, path, base)

	merges := []map[string]string{{"incident": "INC-7"}, {"runbook": "https://wiki/db"}}
	ids := make([]string, len(merges))
	for i, attrs := range merges {
		id, err := e.Client.SetState(t.Context(), e.Identity("bob"), writtest.Domain, client.StateChange{Path: path, Attrs: attrs, Merge: true})
		require.NoError(t, err)
		ids[i] = id
	}
	select {
	case <-both:
	case <-time.After(10 * time.Second):
		t.Fatal("the approval component did not take both merges")
	}
	var stated []*events.Stated
	for _, id := range ids {
		r := e.AwaitAsk(id, 10*time.Second)
		require.NotNil(t, r.Series.StateChange().Done, "%v", r.State.Answered)
		stated = append(stated, r.Series.StateChange().Done)
	}
	want := map[string]string{"on_call": "alice", "incident": "INC-7", "runbook": "https://wiki/db"}
	assert.True(t, len(stated[0].Attrs) == 3 || len(stated[1].Attrs) == 3, "the second merge recorded the whole entry: %v, %v", stated[0].Attrs, stated[1].Attrs)
	applied(t, kv, path, want)
}
