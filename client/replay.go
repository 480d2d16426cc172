package client

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/fifo"
	"github.com/writ-dev/writ/internal/store"
)

// Replay streams every message matching filter, oldest first, inspected,
// to fn, and returns once it has caught up with the stream as it was when
// Replay started. It holds one batch of messages at a time.
func (c *Client) Replay(ctx context.Context, filter string, fn func(events.Record) error) error {
	return store.Scan(ctx, c.js, c.stream, filter, time.Time{}, func(m events.Message) error {
		return fn(c.trail.Checker().Inspect(m, c.clock()))
	})
}

// Pending lists the requests of domain that wait for approvers and that
// who may answer, oldest first: pending requests, and break-glass grants
// whose after-the-fact review is open. "" is every domain the client's own
// stream holds (with a home: the home's; see PendingIn for the others).
func (c *Client) Pending(ctx context.Context, domain string, who identity.Principal) ([]*Request, error) {
	if domain == "" {
		domain = "*"
	}
	now := c.clock()
	var ids [][2]string
	// Another domain's requests are in its own stream, read through its
	// JetStream domain (as Load reads them).
	js, err := c.jsFor(domain)
	if err != nil {
		return nil, err
	}
	err = store.Scan(ctx, js, c.stream, events.Prefix+"."+domain+".*."+events.KindEvaluated.String(), time.Time{}, func(m events.Message) error {
		r := c.trail.Checker().Inspect(m, c.clock())
		ev, ok := r.Data.(*events.Evaluated)
		if !ok || !r.Valid() || ev.ExpiresAt == nil || !ev.ExpiresAt.After(now) {
			return nil
		}
		if ev.Outcome == events.OutcomeReview || (ev.BreakGlass && len(ev.Flows) > 0) {
			ids = append(ids, [2]string{r.Domain, r.RequestID})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []*Request
	for _, id := range ids {
		r, err := c.Load(ctx, id[0], id[1])
		if err != nil {
			return nil, err
		}
		if r.State.CanVote(who) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Watch calls fn with a request's state each time an event is appended to
// it, for every request of domain ("" for all), until ctx ends. fn is
// called from one goroutine at a time, and never with an older state of a
// request than one it was given before. ready, when given, is called once,
// when the server the client is connected to has the watch's
// subscription: an event appended after it is heard.
func (c *Client) Watch(ctx context.Context, domain string, ready func(), fn func(*Request)) error {
	if domain == "" {
		domain = "*"
	}
	return c.watch(ctx, []string{domain}, nil, ready, fn)
}

// WatchPending is what an approver watches: it calls fn first with each
// request of domains (each read in its own stream, as PendingIn) that
// waits for who now, then caughtUp, and then, as Watch does, with a
// request's state each time an event is appended to it, whoever it waits
// for, until ctx ends. It listens before it lists: a request made while
// the list is read is heard, also across a leafnode (the server passes a
// subscription on to its links before any later message of the same
// connection, such as the list's reads).
func (c *Client) WatchPending(ctx context.Context, domains []string, who identity.Principal, caughtUp func(), fn func(*Request)) error {
	return c.watch(ctx, domains, func(ctx context.Context) ([]*Request, error) {
		return c.PendingIn(ctx, domains, who)
	}, caughtUp, fn)
}

func (c *Client) watch(ctx context.Context, domains []string, initial func(context.Context) ([]*Request, error), caughtUp func(), fn func(*Request)) error {
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for _, d := range domains {
		sub, err := c.nc.SubscribeSync(events.Prefix + "." + d + ".*.*")
		if err != nil {
			return err
		}
		subs = append(subs, sub)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	// Each notice is read on its own goroutine (at most watchAhead at
	// once): subscribers hear of a message before the stream stores it,
	// and of one it refuses too, so a read may wait a while for a message
	// that never comes; the notices behind it must not wait with it.
	results := make(chan *Request, watchAhead)
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	slots := make(chan struct{}, watchAhead)
	for _, sub := range subs {
		wg.Go(func() {
			for {
				m, err := sub.NextMsgWithContext(ctx)
				if err != nil {
					fail(err)
					return
				}
				d, id, _, err := events.ParseSubject(m.Subject)
				if err != nil {
					continue
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				wg.Go(func() {
					defer func() { <-slots }()
					r, err := c.loadHolding(ctx, d, id, events.Digest(m.Data))
					if err != nil {
						fail(err)
						return
					}
					select {
					case results <- r:
					case <-ctx.Done():
					}
				})
			}
		})
	}
	shown := fifo.New[string, uint64](16384) // request → last sequence shown
	show := func(r *Request) {
		key := r.State.Domain + "/" + r.State.ID
		if last, ok := shown.Get(key); ok && r.State.LastSeq <= last {
			return // a read that finished after a later one
		}
		shown.Put(key, r.State.LastSeq)
		fn(r)
	}
	// The server has the subscriptions (and has passed them on) before the
	// list's first read, and before caughtUp says so.
	if err := c.nc.FlushTimeout(10 * time.Second); err != nil {
		return err
	}
	if initial != nil {
		list, err := initial(ctx)
		if err != nil {
			return err
		}
		for _, r := range list {
			show(r)
		}
	}
	if caughtUp != nil {
		caughtUp()
	}
	for {
		select {
		case r := <-results:
			show(r)
		case err := <-failed:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// watchAhead bounds the notices Watch reads at once.
const watchAhead = 32

// Requests streams the requests of domain ("" for all) in the order they
// were made, loading each one's history for fn (ScanRequests, unfiltered).
func (c *Client) Requests(ctx context.Context, domain string, fn func(*Request) error) error {
	return c.ScanRequests(ctx, domain, ScanOptions{Ahead: 1}, fn)
}

// ScanOptions narrow and pace ScanRequests.
type ScanOptions struct {
	// Since starts at the first request the stream stored at or after it:
	// older messages are not read.
	Since time.Time
	// Keep, when set, decides on a request's requested event alone,
	// before its history is read: false skips the request. It may be
	// called from several goroutines at once.
	Keep func(events.Record) bool
	// Ahead is how many histories are read at once, ahead of fn, which
	// still sees them in order; default 16. At most about that many are
	// held in memory.
	Ahead int
	// Progress hears how far through the stream the scan is, in messages:
	// done of total, counted by stream sequence (every message, whatever
	// its request), ending with done == total.
	Progress func(done, total uint64)
}

// ScanRequests streams the requests of domain ("" for all) that o keeps,
// in the order they were made, loading each one's history for fn. A
// history is shown once, at its first requested message, even when a
// message of another kind, or another request message, came first on its id.
func (c *Client) ScanRequests(ctx context.Context, domain string, o ScanOptions, fn func(*Request) error) error {
	if domain == "" {
		domain = "*"
	}
	if o.Ahead <= 0 {
		o.Ahead = 16
	}
	var base, last uint64
	if o.Progress != nil {
		info, err := c.trail.Reader(c.home).Info(ctx)
		if err != nil {
			return err
		}
		last = info.State.LastSeq
		if info.State.FirstSeq > 0 {
			base = info.State.FirstSeq - 1
		}
	}
	// Requests are judged and their histories read ahead, concurrently,
	// and handed to fn in order: each scanned request is queued with its
	// read, done or not needed.
	type item struct {
		rec  events.Record
		done chan struct{}
		r    *Request
		err  error
	}
	queue := make(chan *item, o.Ahead)
	var loads sync.WaitGroup
	defer loads.Wait()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		return store.Scan(gctx, c.js, c.stream, events.Prefix+"."+domain+".*."+events.KindRequested.String(), o.Since, func(m events.Message) error {
			it := &item{rec: events.Record{Message: m}, done: make(chan struct{})}
			var err error
			if it.rec.Domain, it.rec.RequestID, it.rec.Kind, err = events.ParseSubject(m.Subject); err != nil {
				close(it.done) // no request's: not a history to show
			} else {
				loads.Go(func() {
					defer close(it.done)
					if o.Keep == nil || o.Keep(c.trail.Checker().Inspect(m, c.clock())) {
						it.r, it.err = c.loadReaching(gctx, it.rec.Domain, it.rec.RequestID, m.Seq)
					}
				})
			}
			select {
			case queue <- it:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	g.Go(func() error {
		first := true
		for it := range queue {
			select {
			case <-it.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			if it.err != nil {
				return it.err
			}
			if o.Progress != nil {
				if first && !o.Since.IsZero() {
					base = it.rec.Seq - 1 // nothing before it is read
				}
				first, last = false, max(last, it.rec.Seq)
				o.Progress(it.rec.Seq-base, last-base)
			}
			if it.r == nil || firstRequest(it.r) != it.rec.Seq {
				continue
			}
			if err := fn(it.r); err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if o.Progress != nil {
		o.Progress(last-base, last-base)
	}
	return nil
}

// loadReaching loads a request's history that is known to hold seq (the
// scan read it there): a replica of the stream that lags, or one just
// restarted, may answer with less or with nothing, and is asked again,
// as Load asks again for what this client wrote or read before.
func (c *Client) loadReaching(ctx context.Context, domain, id string, seq uint64) (*Request, error) {
	return c.load(ctx, domain, id, history.Reach{Seq: seq})
}

// firstRequest is the sequence of the first request message of a history.
func firstRequest(r *Request) uint64 {
	for _, rec := range r.Records {
		if rec.Kind == events.KindRequested {
			return rec.Seq
		}
	}
	return 0
}

// loadHolding loads a request's history, reading again for up to
// holdWait until it holds the message noticed (digest): a notice comes
// before the stream stores what it tells of. A message never stored (the
// stream refused it) is given up on after that, and what the history
// holds is shown; nor is it held against the request when it has no
// history yet (ErrNotFound, once holdWait is past).
func (c *Client) loadHolding(ctx context.Context, domain, id, digest string) (*Request, error) {
	return c.load(ctx, domain, id, history.Reach{Digest: digest, Wait: c.hold})
}

// holdWait is how long loadHolding reads again for a message noticed,
// unless Options.HoldWait says otherwise.
const holdWait = time.Second
