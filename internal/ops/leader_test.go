package ops_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/ops"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/writtest"
)

// On a three-node cluster, a replica connected to one node is ready; the
// other two go down, the audit stream's leader among them, and /readyz
// answers 503 within a second of the leader going, naming the stream —
// with the default sampling interval (5 s), which alone would miss an
// election. Back up, it is ready again.
func TestReadinessFollowsTheStreamLeader(t *testing.T) {
	c := writtest.Cluster(t, 3, writtest.Options{})
	stream := c.Runtime.Config.Stream.Name
	for c.AwaitStreamLeader(stream, time.Minute) == 0 {
		_, err := c.NC.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, time.Second)
		require.NoError(t, err)
	}

	// A replica on node 0, as 'writ serve --server' with every component
	// and the operations endpoints (default intervals).
	account, err := identity.LoadSeed(c.Runtime.Config.Path(config.AccountSeed))
	require.NoError(t, err)
	role, err := pipeline.RoleOptions(c.Runtime.Config, account, "", access.Components...)
	require.NoError(t, err)
	nc := c.Connect(0, role...)
	cfg := c.Runtime.Config
	o, err := ops.New(ops.Options{NC: nc, Domain: cfg.Domain, Stream: cfg.Stream.Name, Timers: cfg.Stream.Timers})
	require.NoError(t, err)
	p, err := pipeline.Build(nc, c.Runtime, pipeline.Options{Observer: o, Logger: c.Logger})
	require.NoError(t, err)
	o.Expect(p.Names(), p.Durables())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = o.Run(ctx) })
	wg.Go(func() {
		if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("pipeline: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(srv.Close)
	readyz := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b [4096]byte
		n, _ := resp.Body.Read(b[:])
		return resp.StatusCode, string(b[:n])
	}
	await := func(want int, within time.Duration) (time.Time, string) {
		t.Helper()
		var body string
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var code int
			if code, body = readyz(); code == want {
				return time.Now(), body
			}
		}
		t.Fatalf("/readyz did not answer %d within %s; last: %s", want, within, body)
		return time.Time{}, ""
	}
	await(http.StatusOK, time.Minute)

	leader := c.StreamLeader(stream)
	require.Positive(t, leader)
	c.Kill(3 - leader) // the other follower first: the stream keeps its quorum, and its leader
	code, body := readyz()
	require.Equal(t, http.StatusOK, code, "one follower down: the stream still takes appends: %s", body)
	c.Kill(leader)
	gone := time.Now()
	at, body := await(http.StatusServiceUnavailable, 5*time.Second)
	t.Logf("/readyz answered 503 %s after the leader went: %s", at.Sub(gone).Round(time.Millisecond), body)
	assert.Less(t, at.Sub(gone), time.Second)
	assert.Contains(t, body, "stream "+stream+": ")

	c.Restart(1)
	c.Restart(2)
	await(http.StatusOK, time.Minute)
}
