package pathtrace

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
)

// TestPath makes WRIT_PATHTRACE auto-approved requests, one after another,
// each waited for until granted, after one to warm up. Run with a coverage
// profile twice, with different counts, and compare (pathtrace.sh does):
// the blocks whose counts grow by the difference ran once per request
// each time, and idle loops do not (they run by the clock, and both runs
// take about the same time).
func TestPath(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WRIT_PATHTRACE"))
	if n <= 0 {
		t.Skip("a measurement: run internal/pathtrace/pathtrace.sh")
	}
	e := writtest.Start(t, writtest.Options{})
	spec := client.Spec{Action: "deploy", Resource: "staging/web", TTL: 5 * time.Minute}
	e.Settle(e.Request("deploy-bot", spec)) // warm up: connections, caches
	for range n {
		r := e.Settle(e.Request("deploy-bot", spec))
		require.Equal(t, "granted", r.State.Status.String())
	}
	// Both runs end after the same idle time, so that clock-driven loops
	// run about as often in each.
	time.Sleep(3 * time.Second)
}
