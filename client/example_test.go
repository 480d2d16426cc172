package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/identity"
)

// A requester asks to restart prod/db in domain acme, waits for the
// outcome, and opens its grant. (Compiled, not run: it needs a pipeline.)
func ExampleClient_Request() {
	ctx := context.Background()
	who, err := identity.LoadCreds(".writ/creds/carol.creds")
	if err != nil {
		panic(err)
	}
	bundle, err := identity.LoadBundle(".writ/trust.json")
	if err != nil {
		panic(err)
	}
	nc, err := nats.Connect(nats.DefaultURL, nats.UserCredentials(".writ/creds/carol.creds"))
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.Options{Bundle: bundle})
	if err != nil {
		panic(err)
	}
	id, err := c.Request(ctx, who, client.Spec{
		Domain: "acme", Action: "restart", Resource: "prod/db",
		Reason: "replication stuck", TTL: 10 * time.Minute,
	})
	if err != nil {
		panic(err)
	}
	r, err := c.Wait(ctx, "acme", id, client.Settled)
	if err != nil {
		panic(err)
	}
	token, err := client.OpenGrant(r.State, who)
	if err != nil {
		fmt.Println("no grant:", r.State.Status)
		return
	}
	fmt.Println("grant of", len(token), "bytes; present it to acme before restarting prod/db")
}

// An approver answers a pending request.
func ExampleClient_Vote() {
	ctx := context.Background()
	who, _ := identity.LoadCreds(".writ/creds/alice.creds")
	bundle, _ := identity.LoadBundle(".writ/trust.json")
	nc, _ := nats.Connect(nats.DefaultURL)
	defer nc.Close()
	c, _ := client.New(nc, client.Options{Bundle: bundle})
	pending, _ := c.Pending(ctx, "acme", who.Principal)
	for _, r := range pending {
		if _, err := c.Vote(ctx, who, r.State.Domain, r.State.ID, client.Vote{Approve: true, Reason: "checked the runbook"}); err != nil {
			fmt.Println("vote:", err)
		}
	}
}
