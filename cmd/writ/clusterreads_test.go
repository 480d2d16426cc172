package main

import (
	"bufio"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
)

// clusterReadRuns is how many times each read command runs.
const clusterReadRuns = 50

// On a three-node cluster (streams R3, two Writ replicas) whose audit
// stream's leader keeps moving — stepped down every quarter second, and
// now one node, now another, restarted — `writ audit replay` and `writ
// audit export` succeed in every one of 50 runs each, every run shows
// every request, and none takes long. The commands run as from a shell:
// with no deadline of their own.
func TestClusterReadsSucceedThroughElections(t *testing.T) {
	c := writtest.Cluster(t, 3, writtest.Options{})
	c.ServeReplicas(2)
	const requests = 12
	for range requests {
		c.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	}
	stream := c.Runtime.Config.Stream.Name

	// The commands connect to node 0; nodes 1 and 2 take turns going down
	// (never both: the stream keeps its quorum), and the leader is made to
	// step down between.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stepdowns, restarts int
	wg.Go(func() {
		next := 1
		for k := 0; ctx.Err() == nil; k++ {
			if k%8 == 7 {
				c.Kill(next)
				mu.Lock()
				restarts++
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(300 * time.Millisecond):
				}
				c.Restart(next)
				next = 3 - next
			} else if _, err := c.NC.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, time.Second); err == nil {
				mu.Lock()
				stepdowns++
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	})

	common := []string{"--dir", c.Dir, "--server", c.Nodes[0].URL()}
	var slowest time.Duration
	for i := range 2 * clusterReadRuns {
		args := append([]string{"audit", "replay", "--format", "table"}, common...)
		if i%2 == 1 {
			args = append([]string{"audit", "export"}, common...)
		}
		t0 := time.Now()
		out, errOut, err := writAsShell(t, time.Minute, args...)
		took := time.Since(t0)
		slowest = max(slowest, took)
		require.NoError(t, err, "run %d: %v\n%s", i/2+1, args[:2], errOut)
		rows, ids := 0, map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if i%2 == 0 {
				if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] != "ID" {
					rows++
				}
			} else if id, ok := jsonField(sc.Text(), "request_id"); ok {
				ids[id] = true
			}
		}
		if i%2 == 0 {
			assert.Equal(t, requests, rows, "run %d: replay shows every request", i/2+1)
		} else {
			assert.Len(t, ids, requests, "run %d: export has every request's events", i/2+1)
		}
	}
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d runs of replay and of export: slowest %s; meanwhile %d stepdowns of the stream's leader and %d node restarts",
		clusterReadRuns, slowest.Round(time.Millisecond), stepdowns, restarts)
	require.Positive(t, restarts, "the nodes did restart while the commands ran")
}

// writAsShell runs one command as a shell would — its context has no
// deadline — and fails the test if it has not finished after limit.
func writAsShell(t *testing.T, limit time.Duration, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- run(ctx, args, &out, &errOut) }()
	select {
	case err := <-done:
		return out.String(), errOut.String(), err
	case <-time.After(limit):
		cancel()
		<-done
		t.Fatalf("%v did not finish in %s; stderr: %s", args, limit, errOut.String())
		return "", "", nil
	}
}

// jsonField returns a string field of a JSON line.
func jsonField(line, key string) (string, bool) {
	k := `"` + key + `":"`
	i := strings.Index(line, k)
	if i < 0 {
		return "", false
	}
	rest := line[i+len(k):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}

// While the audit stream has no leader, `writ request --wait` says that it
// waits for the cluster instead of standing silent, and says when the
// cluster answers again. The request is recorded while the cluster is
// whole, with no Writ replica running (nothing moves it); then the two
// nodes the command is not connected to go down, the stream's leader among
// them; once they are back and replicas serve, the request is granted.
func TestRequestWaitSaysItWaitsForTheCluster(t *testing.T) {
	c := writtest.Cluster(t, 3, writtest.Options{})
	stream := c.Runtime.Config.Stream.Name
	for c.AwaitStreamLeader(stream, time.Minute) == 0 {
		_, err := c.NC.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, time.Second)
		require.NoError(t, err)
	}
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"request", "--dir", c.Dir, "--server", c.Nodes[0].URL(),
			"--creds", filepath.Join(c.Dir, "creds", "deploy-bot.creds"),
			"--action", "deploy", "--resource", "staging/web", "--wait", "--timeout", "2m"}, &out, &errOut)
	}()
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "request ") }, 30*time.Second, 10*time.Millisecond,
		"the request is recorded: %s", errOut.String())
	before := errOut.String()

	leader := c.StreamLeader(stream)
	require.Positive(t, leader)
	c.Kill(3 - leader) // the other follower first: the leader has no one to hand over to
	c.Kill(leader)
	downAt := time.Now()
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "waiting for the cluster (") }, 20*time.Second, 10*time.Millisecond,
		"the command says it waits: %s", errOut.String())
	t.Logf("said %q %s after the nodes went down",
		strings.TrimSpace(strings.TrimPrefix(errOut.String(), before)), time.Since(downAt).Round(10*time.Millisecond))
	assert.NotContains(t, before, "waiting for the cluster", "not while the cluster was whole")

	c.Restart(1)
	c.Restart(2)
	c.AwaitJetStream(time.Minute)
	c.AwaitCurrent(time.Minute)
	c.ServeReplicas(2)
	select {
	case err := <-done:
		require.NoError(t, err, errOut.String())
	case <-time.After(2 * time.Minute):
		id := strings.Fields(strings.TrimPrefix(before, "request "))[0]
		id = strings.TrimSuffix(id, ":")
		r, err := c.Client.Load(context.Background(), c.Domain, id)
		if err == nil {
			t.Logf("the request is %s: %v", r.State.Status, writtest.Kinds(r))
		}
		t.Fatalf("the request did not end (stream leader: node %d): %s", c.StreamLeader(stream), errOut.String())
	}
	assert.Contains(t, errOut.String(), "the cluster answers again")
	assert.Contains(t, errOut.String(), "granted")
	// Each wait is told of once, and its end (the nodes coming back may
	// make more than one election).
	assert.Equal(t, strings.Count(errOut.String(), "waiting for the cluster"), strings.Count(errOut.String(), "the cluster answers again"), errOut.String())
	assert.NotEmpty(t, strings.TrimSpace(out.String()), "the grant on stdout")
}
