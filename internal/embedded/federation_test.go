package embedded_test

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type node struct {
	srv *embedded.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func start(t *testing.T, domain string, leaf *embedded.Leaf) node {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir(), JetStreamDomain: domain, Leaf: leaf, Name: domain})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "WRIT", Subjects: []string{"writ." + domain + ".*.*"}, AllowDirect: true})
	require.NoError(t, err)
	return node{srv, nc, js}
}

func stored(t *testing.T, n node, subject string) int {
	t.Helper()
	s, err := n.js.Stream(t.Context(), "WRIT")
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	count := 0
	for _, c := range info.State.Subjects {
		count += int(c)
	}
	return count
}

// A hub and a spoke, each its own JetStream domain: requests cross into
// the other domain's stream, reads reach it by its domain's API prefix,
// and a domain's component events cannot be injected from the other side.
func TestLeafnodeFederation(t *testing.T) {
	port := freePort(t)
	beta := start(t, "beta", &embedded.Leaf{Domain: "beta", Listen: fmt.Sprintf("127.0.0.1:%d", port), Spokes: map[string]string{"alpha": "s3cret"}})
	alpha := start(t, "alpha", &embedded.Leaf{Domain: "alpha", Others: []string{"beta"}, Remotes: []string{fmt.Sprintf("nats-leaf://%s:s3cret@127.0.0.1:%d", embedded.LeafUser("alpha"), port)}})

	// The spoke's request reaches the hub's stream (once interest has crossed).
	id := "0195a7a0-0000-7000-8000-000000000001"
	var ack *jetstream.PubAck
	require.Eventually(t, func() bool {
		var err error
		ack, err = alpha.js.Publish(t.Context(), "writ.beta."+id+".requested", []byte(`{"n":1}`), jetstream.WithExpectStream("WRIT"))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, "beta", ack.Domain)
	assert.Equal(t, 1, stored(t, beta, "writ.beta."+id+".requested"))
	assert.Equal(t, 0, stored(t, alpha, "writ.>"), "alpha's stream holds only alpha's subjects")

	// A direct read of beta's stream from alpha, by beta's API prefix.
	req, _ := json.Marshal(map[string]any{"seq": 1, "next_by_subj": "writ.beta." + id + ".>", "batch": 10})
	inbox := alpha.nc.NewRespInbox()
	sub, err := alpha.nc.SubscribeSync(inbox)
	require.NoError(t, err)
	require.NoError(t, alpha.nc.PublishRequest("$JS.beta.API.DIRECT.GET.WRIT", inbox, req))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, `{"n":1}`, string(m.Data))

	// Beta's events reach a waiter on alpha.
	wait, err := alpha.nc.SubscribeSync("writ.beta." + id + ".>")
	require.NoError(t, err)
	require.NoError(t, alpha.nc.Flush())
	time.Sleep(200 * time.Millisecond) // interest crosses the leafnode
	_, err = beta.js.Publish(t.Context(), "writ.beta."+id+".evaluated", []byte(`{"n":2}`))
	require.NoError(t, err)
	got, err := wait.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "writ.beta."+id+".evaluated", got.Subject)

	// The spoke forwards no component event of another trusted domain: a
	// forger on alpha cannot put a beta decision into beta's stream.
	require.NoError(t, alpha.nc.Publish("writ.beta."+id+".granted", []byte(`{"forged":true}`)))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 0, stored(t, beta, "writ.beta."+id+".granted"))
	// And the hub takes in only what a spoke may send, whatever the
	// spoke's own configuration: a spoke with no deny lists at all (here a
	// raw leafnode connection of a second alpha server without them).
	rogue := start(t, "rogue", &embedded.Leaf{Domain: "alpha", Remotes: []string{fmt.Sprintf("nats-leaf://%s:s3cret@127.0.0.1:%d", embedded.LeafUser("alpha"), port)}})
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, rogue.nc.Publish("writ.beta."+id+".approved", []byte(`{"forged":true}`)))
	require.NoError(t, rogue.nc.Publish("writ-timers.beta.fire.x", []byte(`{}`)))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 0, stored(t, beta, "writ.beta."+id+".approved"), "the hub refuses a spoke's component events for another domain")
	// A leafnode without credentials gets nothing (not the local user).
	anon := start(t, "anon", &embedded.Leaf{Domain: "alpha", Remotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", port)}})
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, anon.nc.Publish("writ.beta."+id+".granted", []byte(`{"forged":true}`)))
	require.NoError(t, anon.nc.Publish("writ.beta."+id+".voted", []byte(`{"anon":true}`)))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 0, stored(t, beta, "writ.beta."+id+".granted"))
	assert.Equal(t, 0, stored(t, beta, "writ.beta."+id+".voted"), "an unauthenticated leafnode is not connected at all")
	// (The rogue is connected: what a spoke may send does arrive.)
	require.NoError(t, rogue.nc.Publish("writ.beta."+id+".voted", []byte(`{"n":3}`)))
	require.Eventually(t, func() bool { return stored(t, beta, "writ.beta."+id+".voted") == 1 }, 5*time.Second, 50*time.Millisecond)
	// Timers never cross.
	tsub, err := beta.nc.SubscribeSync("writ-timers.>")
	require.NoError(t, err)
	require.NoError(t, beta.nc.Flush())
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, alpha.nc.Publish("writ-timers.alpha.fire.x", []byte(`{}`)))
	_, err = tsub.NextMsg(300 * time.Millisecond)
	assert.ErrorIs(t, err, nats.ErrTimeout)
	// But alpha's own components could publish alpha's events, and beta
	// sees them (for requesters waiting on beta).
	wait2, err := beta.nc.SubscribeSync("writ.alpha.>")
	require.NoError(t, err)
	require.NoError(t, beta.nc.Flush())
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, alpha.nc.Publish("writ.alpha."+id+".granted", []byte(`{}`)))
	_, err = wait2.NextMsg(5 * time.Second)
	assert.NoError(t, err)
}
