package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/request"
)

// Components are the pipeline components each Writ replica runs: the core
// three. The auditor is left out: its periodic checkpoint reads the whole
// stream and appends to it, a cost that grows with the stream, not with
// the requests, and would land at random in a phase. No notifier either:
// the bench domain has no webhooks.
var Components = pipeline.Components

// The requests each path makes: what the sample policies (config.Init)
// approve at once, and what needs two SRE leads.
var (
	autoSpec   = client.Spec{Action: "deploy", Resource: "staging/bench"}
	reviewSpec = client.Spec{Action: "restart", Resource: "prod/bench", Reason: "writ bench"}
)

// writ is the requester side of the bench domain: a client on each node,
// taken in turn.
type writ struct {
	e    *env
	cls  []*client.Client
	next atomic.Uint64
}

// requesters opens a client on a connection of its own for every node.
func (e *env) requesters() (*writ, error) {
	w := &writ{e: e}
	for k := range e.nodes() {
		cl, _, err := e.client(fmt.Sprintf("requester %d", k+1), k)
		if err != nil {
			return nil, err
		}
		w.cls = append(w.cls, cl)
	}
	return w, nil
}

func (e *env) identity(name string) (*identity.Identity, error) {
	return identity.LoadCreds(e.rt.Config.Path(config.PrincipalCreds(name)))
}

// client opens a Writ client of the bench domain on a connection of its
// own, preferring node.
func (e *env) client(name string, node int) (*client.Client, *nats.Conn, error) {
	nc, err := e.conn(name, node)
	if err != nil {
		return nil, nil, err
	}
	cl, err := client.New(nc, client.Options{
		Stream: e.rt.Config.Stream.Name, Bundle: e.rt.Bundle,
		MaxBody: e.rt.Config.Limits.MaxEventBytes, Home: e.domain,
	})
	return cl, nc, err
}

// replica runs one Writ pipeline on nc: what `writ serve` runs.
func (e *env) replica(ctx context.Context, nc *nats.Conn) error {
	p, err := pipeline.Build(nc, e.rt, pipeline.Options{Components: Components, Logger: e.log})
	if err != nil {
		return err
	}
	err = p.Run(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// request is one request as who, from publishing it signed to holding the
// unsealed grant. sizes, when not nil, hears the sizes of the request's
// events (body and headers) once it is granted.
func (w *writ) request(who *identity.Identity, spec client.Spec, sizes func([]int)) requestFunc {
	spec.Domain = w.e.domain
	return func(ctx context.Context) error {
		cl := w.cls[w.next.Add(1)%uint64(len(w.cls))]
		// As `writ request --wait` does: listening before it publishes.
		sub, err := cl.Submit(ctx, who, spec)
		if err != nil {
			return err
		}
		defer sub.Close()
		id := sub.ID
		r, err := sub.Wait(ctx, client.Settled)
		if err != nil {
			return fmt.Errorf("request %s: %w", id, err)
		}
		if r.State.Status != request.StatusGranted {
			return fmt.Errorf("request %s: %s, not granted", id, r.State.Status)
		}
		// Opened to prove it can be, and dropped: a bench never shows a token.
		if _, err := client.OpenGrant(r.State, who); err != nil {
			return fmt.Errorf("request %s: %w", id, err)
		}
		if sizes != nil {
			var s []int
			for _, rec := range r.Records {
				n := len(rec.Body)
				for k, vs := range rec.Header {
					for _, v := range vs {
						n += len(k) + len(v)
					}
				}
				s = append(s, n)
			}
			sizes(s)
		}
		return nil
	}
}

// approvers are bots that approve, as soon as it is pending, every request
// they may answer: alice and bob, the sample flow's two SRE leads. Each
// hears of evaluations as they are published and answers each in a
// goroutine of its own. (client.Watch, which `writ approvals watch` uses,
// handles one notice at a time and waits about a second for one the stream
// refused, such as the vote that lost a race with the other approver's:
// the next request would wait behind it, and the bench would measure that.)
type approvers struct {
	mu   sync.Mutex
	errs []error
}

// voteTimeout bounds the answer to one request.
const voteTimeout = 10 * time.Second

// start runs the bots until ctx ends; wait for them, and the votes they
// started, with the returned function.
func (a *approvers) start(ctx context.Context, e *env) (wait func(), err error) {
	var wg sync.WaitGroup
	subject := events.Prefix + "." + e.domain + ".*." + events.KindEvaluated.String()
	for k, name := range []string{"alice", "bob"} {
		who, err := e.identity(name)
		if err != nil {
			return nil, err
		}
		cl, nc, err := e.client("approver "+name, k)
		if err != nil {
			return nil, err
		}
		ch := make(chan *nats.Msg, 256)
		sub, err := nc.ChanSubscribe(subject, ch)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			defer func() { _ = sub.Unsubscribe() }()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-ch:
					if _, id, _, err := events.ParseSubject(m.Subject); err == nil {
						wg.Go(func() { a.approve(ctx, cl, who, e.domain, id) })
					}
				}
			}
		})
	}
	return wg.Wait, nil
}

// approve votes for request id once who may: the notice of its evaluation
// can come before the stream has stored it (a fraction of a millisecond
// before: it reads again soon, as a requester does).
func (a *approvers) approve(ctx context.Context, cl *client.Client, who *identity.Identity, domain, id string) {
	ctx, cancel := context.WithTimeout(ctx, voteTimeout)
	defer cancel()
	for wait := 250 * time.Microsecond; ; wait = min(2*wait, 100*time.Millisecond) {
		r, err := cl.Load(ctx, domain, id)
		switch {
		case err == nil && r.State.CanVote(who.Principal) == nil:
			_, err = cl.Vote(ctx, who, domain, id, client.Vote{Approve: true, Reason: "writ bench", Digest: r.State.RequestDigest})
			if err == nil {
				return
			}
		case err == nil && r.State.Status != request.StatusRequested:
			return // nothing to answer: answered already, or not for who
		}
		if err != nil && !errors.Is(err, client.ErrNotPending) && !errors.Is(err, client.ErrNotFound) {
			a.fail(fmt.Errorf("%s's vote on %s: %w", who.Principal.Name, id, err))
			return
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				a.fail(fmt.Errorf("%s's vote on %s: %w", who.Principal.Name, id, ctx.Err()))
			}
			return
		case <-time.After(wait):
		}
	}
}

func (a *approvers) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errs) < maxErrorSamples {
		a.errs = append(a.errs, err)
	}
}

func (a *approvers) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.errs...)
}
