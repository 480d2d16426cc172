package dboperator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/examples/target-service/dboperator"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/redeem"
)

// The service's side: redeem before acting. With the domain's trust bundle
// and redeemer key (what `writ init` writes to .writ), a Redeemer checks
// and consumes each grant, and the db-operator calls it before it acts.
func ExampleNew() {
	d := startDemo() // a Writ setup for acme, its NATS and its pipeline
	defer d.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg, _ := config.Load(d.dir)
	rt, _ := cfg.Open()
	r, err := redeem.New(redeem.Config{
		NC: d.nc, Domain: cfg.Domain, Bundle: rt.Bundle, Key: rt.RedeemerKey, Service: "db-operator",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = r.Run(ctx) }() // watches revocations until ctx ends
	if err := r.WaitReady(ctx); err != nil {
		fmt.Println(err)
		return
	}
	op, _ := dboperator.New(dboperator.Config{NC: d.nc, Redeemer: r})
	if err := op.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer op.Stop()

	// deploy-bot, granted at once by the sample policy, calls twice.
	d.deployTwice("staging/orders")
	for _, p := range op.Performed() {
		fmt.Println("performed:", p.Action, p.Resource)
	}
	// Output:
	// done: applied migrations to staging/orders
	// refused: already-used
	// performed: deploy staging/orders
}

// The requester's side: request, wait for the outcome, open the sealed
// grant, prove possession and call the service.
func ExampleCall() {
	d := startDemo()
	defer d.stop()
	d.startService()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	who, _ := identity.LoadCreds(filepath.Join(d.dir, "creds", "deploy-bot.creds"))
	bundle, _ := identity.LoadBundle(filepath.Join(d.dir, "trust.json"))

	c, _ := client.New(d.nc, client.Options{Bundle: bundle})
	params := map[string]string{"migration": "0042_add_index"}
	id, err := c.Request(ctx, who, client.Spec{
		Domain: "acme", Action: "deploy", Resource: "staging/orders", Params: params, TTL: 5 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	req, err := c.Wait(ctx, "acme", id, client.Settled)
	if err != nil {
		fmt.Println(err)
		return
	}
	token, err := client.OpenGrant(req.State, who)
	if err != nil {
		fmt.Println("no grant:", req.State.Status)
		return
	}
	cmd, _ := dboperator.NewCommand(who.Key, token, "deploy", "staging/orders", params, time.Now())
	res, err := dboperator.Call(ctx, d.nc, dboperator.DefaultName, "deploy", cmd)
	if err != nil {
		fmt.Println(err) // a *dboperator.Refusal with its code
		return
	}
	fmt.Println(res.Done, "for the request:", res.RequestID == id)
	// Output:
	// applied migrations to staging/orders for the request: true
}

// demo is a Writ setup for acme in a temporary directory, with its
// embedded NATS server and a running pipeline.
type demo struct {
	dir   string
	nc    *nats.Conn
	stops []func()
}

func startDemo() *demo {
	d := &demo{}
	must := func(err error) {
		if err != nil {
			d.stop()
			panic(err)
		}
	}
	dir, err := os.MkdirTemp("", "writ-target-service")
	must(err)
	d.dir = dir
	d.stops = append(d.stops, func() { _ = os.RemoveAll(dir) })
	cfg, err := config.Init(dir, "acme")
	must(err)
	rt, err := cfg.Open()
	must(err)
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: filepath.Join(dir, "jetstream"), JetStreamDomain: "acme", Name: "acme"})
	must(err)
	d.stops = append(d.stops, srv.Shutdown)
	d.nc, err = srv.Connect()
	must(err)
	d.stops = append(d.stops, d.nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(pipeline.Ensure(ctx, d.nc, rt))
	p, err := pipeline.Build(d.nc, rt, pipeline.Options{Logger: slog.New(slog.DiscardHandler)})
	must(err)
	d.goRun(p.Run)
	return d
}

// goRun runs fn until the demo stops.
func (d *demo) goRun(fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = fn(ctx) }()
	d.stops = append(d.stops, func() { cancel(); <-done })
}

func (d *demo) stop() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
	d.stops = nil
}

// startService runs the db-operator for the demo's domain.
func (d *demo) startService() {
	cfg, err := config.Load(d.dir)
	if err != nil {
		panic(err)
	}
	rt, err := cfg.Open()
	if err != nil {
		panic(err)
	}
	r, err := redeem.New(redeem.Config{NC: d.nc, Domain: cfg.Domain, Bundle: rt.Bundle, Key: rt.RedeemerKey, Service: dboperator.DefaultName})
	if err != nil {
		panic(err)
	}
	d.goRun(r.Run)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		panic(err)
	}
	op, err := dboperator.New(dboperator.Config{NC: d.nc, Redeemer: r})
	if err != nil {
		panic(err)
	}
	// Start returns once the endpoints are subscribed, and the flush once
	// the server has the subscriptions: the first call finds them. (Run in
	// a goroutine and a ping does not: the service answers pings before
	// its endpoints exist, and a goroutine may start late on a busy machine.)
	opCtx, stopOp := context.WithCancel(context.Background())
	if err := op.Start(opCtx); err != nil {
		stopOp()
		panic(err)
	}
	d.stops = append(d.stops, func() { _ = op.Stop(); stopOp() })
	if err := d.nc.Flush(); err != nil {
		panic(err)
	}
}

// deployTwice has deploy-bot obtain a grant for deploy on resource and
// call the db-operator with it twice, printing the outcomes.
func (d *demo) deployTwice(resource string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	who, err := identity.LoadCreds(filepath.Join(d.dir, "creds", "deploy-bot.creds"))
	if err != nil {
		panic(err)
	}
	bundle, err := identity.LoadBundle(filepath.Join(d.dir, "trust.json"))
	if err != nil {
		panic(err)
	}
	c, err := client.New(d.nc, client.Options{Bundle: bundle})
	if err != nil {
		panic(err)
	}
	id, err := c.Request(ctx, who, client.Spec{Domain: "acme", Action: "deploy", Resource: resource, TTL: 5 * time.Minute})
	if err != nil {
		panic(err)
	}
	req, err := c.Wait(ctx, "acme", id, client.Settled)
	if err != nil {
		panic(err)
	}
	token, err := client.OpenGrant(req.State, who)
	if err != nil {
		panic(err)
	}
	for range 2 {
		cmd, err := dboperator.NewCommand(who.Key, token, "deploy", resource, nil, time.Now())
		if err != nil {
			panic(err)
		}
		res, err := dboperator.Call(ctx, d.nc, dboperator.DefaultName, "deploy", cmd)
		var r *dboperator.Refusal
		if errors.As(err, &r) {
			fmt.Println("refused:", r.Code)
		} else if err != nil {
			panic(err)
		} else {
			fmt.Println("done:", res.Done)
		}
	}
}
