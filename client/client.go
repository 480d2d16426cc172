package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

// DefaultStream is the audit stream's default name.
const DefaultStream = "WRIT"

// Options configure a client.
type Options struct {
	Stream string           // default WRIT
	Bundle *identity.Bundle // the keys the client trusts when it reads events
	Clock  func() time.Time // default time.Now
	// Home is the domain whose NATS the connection is on. Other domains'
	// streams are read in their own JetStream domain, named as the domain,
	// across leafnodes. "" reads every domain through the connection's own
	// JetStream (a single server or cluster holding every domain).
	Home string
	// MaxBody is the pipeline's limit on event bodies (its
	// limits.max_event_bytes); default events.DefaultMaxBody. The client
	// judges events by the same rule as the pipeline.
	MaxBody int
	// APIPrefix reaches the home stream's JetStream when it is not the
	// connection's own: "$JS.<domain>.API" from a leaf node whose hub holds
	// it. Default "$JS.API".
	APIPrefix string
	// HoldWait is how long Watch reads a request again for a message it
	// heard of before showing what the stream holds without it (the
	// message may be one the stream refused); default one second.
	HoldWait time.Duration
}

// Client talks to a Writ pipeline through its audit stream.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	home   string
	bundle *identity.Bundle
	trail  *history.Log
	clock  func() time.Time
	hold   time.Duration // Options.HoldWait
}

// clientInspectCache is how many checked events a client remembers: a
// requester waiting on its requests reads each history several times.
const clientInspectCache = 1024

// ErrInvalidSpec is returned for a request the pipeline would reject.
var ErrInvalidSpec = errors.New("invalid request")

// ErrOutcomeUnknown is returned, with the request's id, when the audit
// stream did not confirm a request (no quorum, a failover): it may be
// recorded yet, and then it goes ahead. Look it up by its id before asking
// again.
var ErrOutcomeUnknown = errors.New("the audit stream did not confirm the request; it may still be recorded")

// ErrNotRecorded is returned when the audit stream refused a request:
// what the trail does not hold did not happen, so the request was not
// made, and asking again is safe.
var ErrNotRecorded = errors.New("the audit stream did not record the request, so it was not made")

// ErrNotFound is returned for a request id the stream does not hold.
var ErrNotFound = errors.New("no such request")

// checkID refuses what is not a request id (ErrNotAnID) before anything
// is read: an id is a subject token, and "*" would match every request. A
// UUID in any spelling uuid.Parse reads is one.
func checkID(id string) error {
	if _, err := uuid.Parse(id); err != nil || history.CheckID(id) != nil {
		return fmt.Errorf("%q is %w", id, ErrNotAnID)
	}
	return nil
}

// New returns a client on an open connection.
func New(nc *nats.Conn, o Options) (*Client, error) {
	if o.Bundle == nil {
		return nil, errors.New("a trust bundle is required to check what the pipeline says")
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.APIPrefix == "" {
		o.APIPrefix = "$JS.API"
	}
	if o.HoldWait <= 0 {
		o.HoldWait = holdWait
	}
	js, err := jetstream.NewWithAPIPrefix(nc, o.APIPrefix)
	if err != nil {
		return nil, err
	}
	// The log remembers, for the requests the client lately wrote or
	// read, the last stream sequence it knows each has: a read showing
	// less comes from a replica of the stream that lags, and is asked for
	// again.
	trail := history.New(history.Options{
		JS: js, Stream: o.Stream, Home: o.Home, Clock: o.Clock, Monotonic: true,
		Checker: events.Checker{Bundle: o.Bundle, MaxBody: o.MaxBody, Cache: events.NewInspectCache(clientInspectCache)},
	})
	return &Client{nc: nc, js: js, stream: o.Stream, home: o.Home, bundle: o.Bundle, trail: trail, clock: o.Clock, hold: o.HoldWait}, nil
}

// Urgencies a request may carry.
var Urgencies = []string{"low", "normal", "high", "critical"}

// Spec describes the action a requester asks to perform.
type Spec struct {
	Domain   string // the target domain, which owns the resource
	Action   string
	Resource string // path within the target domain
	Params   map[string]string
	Urgency  string // default "normal"
	Reason   string
	Ticket   string
	TTL      time.Duration // 0: the issuer's default
}

// Request signs and publishes a request as who and returns its id.
func (c *Client) Request(ctx context.Context, who *identity.Identity, s Spec) (string, error) {
	id, data, err := c.draft(who, &s)
	if err != nil {
		return "", err
	}
	if _, _, err = c.submit(ctx, who, s.Domain, id, data); err != nil && !errors.Is(err, ErrOutcomeUnknown) {
		return "", err
	}
	return id, err
}

// Submitted is a request just made by Submit, listened to since before
// it was published: no event of it can go unnoticed, so Wait reads its
// history only when a notice could end the wait. Close it when done.
type Submitted struct {
	ID     string
	Domain string
	c      *Client
	l      listener
	view   *Request // the request as sealed here: what notices are judged on
}

// Submit makes a request, as Request does, listening to it first. The
// request is returned whenever it may be stored, with or without an error
// (ErrOutcomeUnknown).
func (c *Client) Submit(ctx context.Context, who *identity.Identity, s Spec) (*Submitted, error) {
	id, data, err := c.draft(who, &s)
	if err != nil {
		return nil, err
	}
	// The request is published on this connection after the subscription:
	// no flush needed for the server to hear of every message after it.
	l, err := c.listen(s.Domain, id, false)
	if err != nil {
		return nil, err
	}
	sub := &Submitted{ID: id, Domain: s.Domain, c: c, l: l}
	seq, out, err := c.submit(ctx, who, s.Domain, id, data)
	if err != nil {
		if errors.Is(err, ErrOutcomeUnknown) {
			return sub, err
		}
		l.stop()
		return nil, err
	}
	// What was just appended, as this client sealed it, is the history to
	// judge notices on; the first read judges it as every reader does.
	if rec, err := events.Sealed(out, seq); err == nil {
		rec.Principal = &who.Principal
		records := []events.Record{rec}
		f, errs := series.Fold[series.Any](records)
		sub.view = folded(f, records, errs)
	}
	return sub, nil
}

// Wait follows the request until done(state) holds, or ctx ends, as
// Client.Wait does.
func (s *Submitted) Wait(ctx context.Context, done func(request.State) bool) (*Request, error) {
	view := s.view
	s.view = nil // a later wait reads first: the notices before it are gone
	r, err := s.c.followOn(ctx, s.l, s.Domain, s.ID, func(r *Request) bool { return done(r.State) }, view)
	if r != nil && r == view {
		r = nil // never read: not the history as the stream holds it
	}
	return r, err
}

// Close stops listening to the request.
func (s *Submitted) Close() { s.l.stop() }

// draft checks a request and makes its event (a new id, and the holder key
// the grant will be sealed to).
func (c *Client) draft(who *identity.Identity, s *Spec) (string, *events.Requested, error) {
	if s.Urgency == "" {
		s.Urgency = "normal"
	}
	if !events.ValidResource(s.Resource) {
		return "", nil, fmt.Errorf("%w: resource %q: segments joined by '/', none empty or starting with a dot", ErrInvalidSpec, s.Resource)
	}
	// A domain the bundle does not know has no pipeline this client could
	// believe; and with no stream for it, the publish would only time out.
	if _, ok := c.bundle.Domains[s.Domain]; !ok {
		return "", nil, fmt.Errorf("%w: domain %q is not one this setup trusts", ErrInvalidSpec, s.Domain)
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return "", nil, err
	}
	id := uid.String()
	xkey, err := issuer.HolderXKey(who.Key, id)
	if err != nil {
		return "", nil, err
	}
	xpub, _ := xkey.PublicKey()
	return id, &events.Requested{
		Domain:     s.Domain,
		Requester:  events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity:   who.JWT,
		Action:     s.Action,
		Resource:   s.Resource,
		Params:     s.Params,
		Urgency:    s.Urgency,
		Reason:     s.Reason,
		Ticket:     s.Ticket,
		TTLSeconds: int64(s.TTL / time.Second),
		HolderXKey: xpub,
	}, nil
}

// submit appends a request's event.
func (c *Client) submit(ctx context.Context, who *identity.Identity, domain, id string, data *events.Requested) (uint64, events.Outgoing, error) {
	// A new id has no history: expecting last sequence 0 makes sure of it.
	seq, out, err := c.trail.AppendSealed(ctx, domain, id, 0, principalAuthor(who), history.Event{Kind: events.KindRequested, Data: data})
	if err != nil {
		if store.IsUnknownOutcome(err) {
			// It may be stored yet: say so, with the id to look it up by.
			return 0, out, fmt.Errorf("%w: request %s: %w", ErrOutcomeUnknown, id, err)
		}
		// Fail closed: what the trail does not hold did not happen.
		return 0, out, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return seq, out, nil
}

// principalAuthor is who signs what a person or service appends.
func principalAuthor(who *identity.Identity) history.Author {
	return history.Author{Key: who.Key, Source: events.PrincipalSource(who.Principal.Domain, who.Principal.Name)}
}

// Request is a request's history as the client sees it, or the history
// of an ask with an id of its own (Lock, SetState), which Series folds.
type Request struct {
	// State is the request folded; for an ask's history, only where it
	// ends and what was refused in it (Series.Request).
	State request.State
	// Series is the history folded by what it records: Series.Lock() for a
	// lock's, Series.StateChange() for a state change's.
	Series  series.Any
	Records []events.Record
	Errs    map[uint64]error // why each record changed nothing
}

// Load reads and folds a request's history. Reads are monotonic: a read
// never shows less of a request than this client has written or read of
// it before (a replicated stream's followers answer reads too, and one may
// lag behind; its answer is asked for again until ctx ends).
func (c *Client) Load(ctx context.Context, domain, id string) (*Request, error) {
	return c.load(ctx, domain, id, history.Reach{})
}

// load reads a request's history as far as reach asks; none is
// ErrNotFound.
func (c *Client) load(ctx context.Context, domain, id string, reach history.Reach) (*Request, error) {
	h, err := c.trail.Load(ctx, domain, id, reach)
	if err != nil {
		return nil, err
	}
	if len(h.Records) == 0 {
		return nil, notFound(domain, id)
	}
	return requestOf(h), nil
}

// notFound is ErrNotFound for id in domain.
func notFound(domain, id string) error { return fmt.Errorf("%w: %s in %s", ErrNotFound, id, domain) }

// requestOf is a history as the client shows it.
func requestOf(h *history.History) *Request {
	return &Request{State: h.State, Series: h.Series, Records: h.Records, Errs: h.Errs}
}

// folded is records folded as a history, shown as the client shows one.
func folded(f series.Any, records []events.Record, errs map[uint64]error) *Request {
	return &Request{State: f.Request, Series: f, Records: records, Errs: errs}
}

// Find returns the domain a request id belongs to.
func (c *Client) Find(ctx context.Context, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	msgs, err := c.trail.Reader(c.home).Load(ctx, events.Prefix+".*."+id+"."+events.KindRequested.String(), 1)
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	domain, _, _, err := events.ParseSubject(msgs[0].Subject)
	return domain, err
}

// Wait follows a request until done(state) holds, or ctx ends. Use
// Settled to wait for the outcome.
func (c *Client) Wait(ctx context.Context, domain, id string, done func(request.State) bool) (*Request, error) {
	return c.follow(ctx, domain, id, func(r *Request) bool { return done(r.State) })
}

// AwaitAsk follows the history of an ask with an id of its own (Lock and
// SetState return it) until the approval component answers it, or ctx
// ends: applied (Series.Lock().Done, Series.StateChange().Done), or refused.
func (c *Client) AwaitAsk(ctx context.Context, domain, id string) (*Request, error) {
	return c.follow(ctx, domain, id, func(r *Request) bool {
		return r.Series.Lock().Settled() || r.Series.StateChange().Settled()
	})
}

// follow reads a history until done holds (see Wait), or ctx ends.
func (c *Client) follow(ctx context.Context, domain, id string, done func(*Request) bool) (*Request, error) {
	l, err := c.listen(domain, id, true)
	if err != nil {
		return nil, err
	}
	defer l.stop()
	return c.followOn(ctx, l, domain, id, done, nil)
}

// listener hears of every message published to one history (notices).
type listener struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

func (l listener) stop() { _ = l.sub.Unsubscribe() }

// listen subscribes to the notices of domain/id. With flush, it makes sure
// the server has the subscription before it returns (a flush cut short by
// a reconnect is no reason to stop: reads do not depend on it, the notices
// only make them sooner); without, what this connection publishes next
// reaches the server after the subscription anyway.
func (c *Client) listen(domain, id string, flush bool) (listener, error) {
	ch := make(chan *nats.Msg, 64)
	sub, err := c.nc.ChanSubscribe(events.RequestFilter(domain, id), ch)
	if err != nil {
		return listener{}, err
	}
	if !flush {
		return listener{sub: sub, ch: ch}, nil
	}
	if err := c.nc.FlushTimeout(5 * time.Second); err != nil && c.nc.IsClosed() {
		_ = sub.Unsubscribe()
		return listener{}, err
	}
	return listener{sub: sub, ch: ch}, nil
}

// followOn is follow on notices already listened to. With start, the
// history as it is known to be (a request just made, listened to before
// it was published: no message of it can have gone unnoticed), it reads
// only when a notice could end the wait, or nothing was heard for a while.
func (c *Client) followOn(ctx context.Context, l listener, domain, id string, done func(*Request) bool, start *Request) (*Request, error) {
	ch := l.ch
	// A message reaches subscribers before the stream has stored it (and
	// one the stream refuses reaches them too): after a notice that could
	// end the wait, read until a read holds the message noticed — at once,
	// then soon, then less often — and give up on it after noticeGiveUp.
	// A notice that could not end the wait is folded ahead, unread
	// (mayDecide). With nothing noticed
	// and unread, read again only on the next notice, or every idlePoll in
	// case a notice was lost. Reads were most of a waiting client's cost
	// when it polled on a timer alone. A message stored just before the
	// subscription was made is noticed by nobody, and the first read may
	// come from a replica of the stream that has not caught up with it:
	// so the first reads are followed by a few more (settle), sooner than
	// idlePoll.
	// The stream stores a message a fraction of a millisecond after its
	// subscribers hear of it: a read right after a notice often misses it,
	// and a first retry 2 ms later was most of a requester's wait once
	// the grant was stored.
	const (
		first, most  = 250 * time.Microsecond, 100 * time.Millisecond
		idlePoll     = time.Second
		noticeGiveUp = 2 * time.Second
	)
	settle := []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 250 * time.Millisecond}
	if start != nil {
		settle = nil // nothing was stored before the subscription
	}
	unread := map[string]time.Time{} // digests noticed → when
	poll := first
	timer := time.NewTimer(idlePoll)
	defer timer.Stop()
	// last is the history as last read; ahead is last with the notices
	// since then that could not make done hold (see mayDecide).
	last, ahead := start, start
	var readErr error
	stall := stallWatch{c: c, domain: domain}
	defer stall.end()
	// With start, the history is known until a notice says more: the
	// first read waits for one.
	for read := start == nil; ; read = true {
		if read {
			r, err := c.Load(ctx, domain, id)
			switch {
			case err == nil && done(r):
				return r, nil
			case err == nil:
				last, ahead, readErr = r, r, nil
				for _, rec := range r.Records {
					delete(unread, rec.Digest)
				}
				stall.observe(ctx, r, time.Now())
			case errors.Is(err, ErrNotFound):
				stall.observe(ctx, nil, time.Now())
			case errors.Is(err, store.ErrNoStream) || c.nc.IsClosed() || ctx.Err() != nil:
				return last, err
			default:
				// A read lost to a reconnect or a failover: read again.
				readErr = err
			}
		}
		now := time.Now()
		for d, at := range unread {
			if now.Sub(at) > noticeGiveUp {
				delete(unread, d) // never stored: refused, or a duplicate
			}
		}
		next := idlePoll
		switch {
		case len(unread) > 0 || readErr != nil:
			next, poll = poll, min(2*poll, most)
		case len(settle) > 0:
			next, settle = settle[0], settle[1:]
		}
		timer.Reset(next)
	wait:
		for {
			select {
			case <-ctx.Done():
				if readErr != nil {
					return last, fmt.Errorf("%w (last read failed: %w)", ctx.Err(), readErr)
				}
				return last, ctx.Err()
			case m := <-ch:
				// Stamped now, not when the wait began: a notice's give-up
				// time runs from its arrival.
				at := time.Now()
				read := false
				for {
					d := events.Digest(m.Data)
					if view, decides := c.mayDecide(ahead, m, d, done); decides {
						unread[d], read = at, true
					} else {
						ahead = view
					}
					if len(ch) == 0 {
						break
					}
					m = <-ch
				}
				if read {
					poll = first
					break wait
				}
				// Nothing noticed could end the wait: no read for it.
			case <-timer.C:
				break wait
			}
		}
	}
}

// mayDecide reports whether the message noticed (m, its body's digest d)
// could make done hold
// once stored, so that the history must be read again; when it could not,
// it returns view with the message folded in, for the next notice to be
// judged on. A component's event is judged here, once (the verdict is
// kept for the stored copy: events.InspectCache), and folded onto view:
// one that is genuine, chains on, and still leaves done false needs no
// read. Anything else is read for: a principal's event (judged at its
// stored time, not known yet), a message not genuine or not chaining on
// (a notice was missed, or it is junk), or no history read yet.
func (c *Client) mayDecide(view *Request, m *nats.Msg, d string, done func(*Request) bool) (*Request, bool) {
	if view == nil {
		return nil, true
	}
	for _, r := range view.Records {
		if r.Digest == d {
			return view, false // known already: this client's own request, heard back
		}
	}
	if _, _, k, err := events.ParseSubject(m.Subject); err != nil || k.FromPrincipal() {
		return nil, true
	}
	rec := c.trail.Checker().Inspect(events.Message{Subject: m.Subject, Header: m.Header, Body: m.Data}, time.Now())
	if !rec.Valid() {
		return nil, true
	}
	rec.Seq = view.State.LastSeq + 1 // where it will be, if nothing comes first
	next, err := view.Series.Apply(rec)
	if err != nil {
		return nil, true
	}
	ahead := folded(next, append(view.Records[:len(view.Records):len(view.Records)], rec), view.Errs)
	if done(ahead) {
		return nil, true
	}
	return ahead, false
}

// Settled reports whether a request needs nothing more from the pipeline:
// granted, rejected, denied or expired.
func Settled(s request.State) bool { return s.Status.IsTerminal() }

// OpenGrant decrypts the grant of a granted request with who's key, and
// checks that the token is the one the event names.
func OpenGrant(s request.State, who *identity.Identity) (string, error) {
	if s.Grant == nil {
		return "", fmt.Errorf("request %s has no grant (%s)", s.ID, s.Status)
	}
	xkey, err := issuer.HolderXKey(who.Key, s.ID)
	if err != nil {
		return "", err
	}
	token, err := issuer.Open(s.Grant.Sealed, s.Grant.SealedBy, xkey)
	if err != nil {
		return "", err
	}
	if issuer.TokenHash(token) != s.Grant.TokenHash {
		return "", errors.New("the sealed grant does not match the hash in the granted event")
	}
	return token, nil
}

// Reader reads domain's audit stream, wherever it lives (see Options.Home).
func (c *Client) Reader(domain string) store.Reader { return c.trail.Reader(domain) }

// Checker judges events by the client's trust bundle and limits.
func (c *Client) Checker() events.Checker { return c.trail.Checker() }

// Home is the domain whose NATS the connection is on ("" when unknown).
func (c *Client) Home() string { return c.home }
