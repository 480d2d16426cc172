package access_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	idconnect "github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/writtest"
)

// A hub of hubs: beta (serving delta) links to alpha (serving gamma) with
// leaf creds alpha issued that carry beta and delta. Whatever beta's own
// server is told, alpha's server lets through that link the events of
// beta and delta only, and hands it the inboxes and the reads of those
// two only. The attacker is a server of beta's own making, with beta's
// leaf creds and none of the deny lists a spoke sets itself; each refusal
// is proved by a barrier, an allowed message sent after the refused ones
// on the same path, which must arrive alone.
func TestHubOfHubsLinkCarriesOnlyItsDomains(t *testing.T) {
	o := map[string]writtest.Options{}
	for _, d := range []string{"alpha", "gamma", "beta", "delta"} {
		o[d] = writtest.Options{NoServe: true}
	}
	envs := writtest.HubOfHubs(t, o, writtest.Hub{Domain: "alpha", Spokes: []string{"gamma"}}, writtest.Hub{Domain: "beta", Spokes: []string{"delta"}})
	alpha, beta := envs["alpha"], envs["beta"]

	leaf, err := beta.Runtime.Leaf()
	require.NoError(t, err)
	auth, err := beta.Runtime.Config.ServerAuth()
	require.NoError(t, err)
	rogue, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir(), Name: "rogue", JetStreamDomain: "rogue", Auth: auth,
		Leaf: &embedded.Leaf{Domain: "beta", Remotes: leaf.Remotes, Account: leaf.Account, Creds: leaf.Creds}})
	require.NoError(t, err)
	t.Cleanup(rogue.Shutdown)
	opts, err := idconnect.Creds(beta.Runtime.Config.Path(config.OperatorCreds))
	require.NoError(t, err)
	nc, err := rogue.Connect(opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)

	const id = "0195a7a0-0000-7000-8000-00000000beef"
	t.Run("events of domains not behind it", func(t *testing.T) {
		heard, err := alpha.NC.SubscribeSync("writ.>")
		require.NoError(t, err)
		defer heard.Unsubscribe()
		forged := []string{"writ.alpha." + id + ".granted", "writ.gamma." + id + ".approved", "writ.epsilon." + id + ".granted"}
		// Five tokens: no stream stores it.
		barrier := "writ.delta." + id + ".granted.barrier"
		got := untilBarrier(t, heard, barrier, func() {
			for _, s := range forged {
				require.NoError(t, nc.Publish(s, []byte(`{"forged":true}`)))
			}
			require.NoError(t, nc.Publish(barrier, nil))
		})
		assert.Empty(t, got, "alpha refuses beta's link the events of domains not behind it")
	})

	t.Run("inboxes and reads of domains not behind it", func(t *testing.T) {
		// The reads' interest first: once the barrier's has crossed, so
		// has theirs.
		reads, err := nc.SubscribeSync("$JS.*.API.DIRECT.GET.WRIT")
		require.NoError(t, err)
		heard, err := nc.SubscribeSync("_INBOX.>")
		require.NoError(t, err)
		barrier := "_INBOX.delta.UBARRIER.1"
		inboxes := untilBarrier(t, heard, barrier, func() {
			for _, d := range []string{"alpha", "gamma"} {
				require.NoError(t, alpha.NC.Publish("_INBOX."+d+".UVICTIM.1", []byte("a reply")))
				require.NoError(t, alpha.NC.Publish("$JS."+d+".API.DIRECT.GET.WRIT", []byte(`{"seq":1}`)))
			}
			require.NoError(t, alpha.NC.Publish("$JS.delta.API.DIRECT.GET.WRIT", []byte(`{"seq":1}`)))
			require.NoError(t, alpha.NC.Publish(barrier, nil))
		})
		assert.Empty(t, inboxes, "alpha hands beta's link no other domain's inboxes")
		// The read of delta sent before the barrier reached the rogue;
		// those of alpha and gamma did not.
		var got []string
		for {
			m, err := reads.NextMsg(0)
			if err != nil {
				break
			}
			got = append(got, m.Subject)
		}
		require.NotEmpty(t, got)
		assert.Equal(t, "$JS.delta.API.DIRECT.GET.WRIT", got[len(got)-1])
		assert.NotContains(t, got, "$JS.alpha.API.DIRECT.GET.WRIT", "alpha hands beta's link no other domain's reads")
		assert.NotContains(t, got, "$JS.gamma.API.DIRECT.GET.WRIT", "alpha hands beta's link no other domain's reads")
	})
}

// untilBarrier sends (what is refused, then barrier) until sub hears
// barrier, which it does once interest has crossed the links, and returns
// the subjects sub heard that were not the barrier.
func untilBarrier(t *testing.T, sub *nats.Subscription, barrier string, send func()) []string {
	t.Helper()
	var other []string
	for range 100 {
		send()
		deadline := time.Now().Add(100 * time.Millisecond)
		for {
			m, err := sub.NextMsg(time.Until(deadline))
			if errors.Is(err, nats.ErrTimeout) {
				break
			}
			require.NoError(t, err)
			if m.Subject == barrier {
				return other
			}
			other = append(other, m.Subject)
		}
	}
	require.FailNow(t, fmt.Sprintf("the barrier %s never arrived in 100 tries", barrier))
	return nil
}
