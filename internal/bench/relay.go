package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/pipeline"
)

// Consumer settings the relay shares with the pipeline's durable consumers
// (consumers/runner.go: durableConfig and consumeOnce).
const (
	maxAckPending = 1024
	pullHeartbeat = time.Second
	handleTimeout = 20 * time.Second
)

// relayStream makes the relay's stream: the audit stream's storage,
// replicas, retention, discard policy, duplicate window and message size
// limit, on the same server.
func (e *env) relayStream(ctx context.Context) error {
	audit := consumers.AuditStreamConfig(pipeline.Streams(e.rt))
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        e.relay,
		Description: "writ bench: the bare JetStream relay",
		Subjects:    []string{e.relaySubjects + ".>"},
		Storage:     audit.Storage,
		Retention:   audit.Retention,
		Discard:     audit.Discard,
		Duplicates:  audit.Duplicates,
		MaxMsgSize:  audit.MaxMsgSize,
		Replicas:    audit.Replicas,
	})
	if err != nil {
		return fmt.Errorf("bench: relay stream %s: %w", e.relay, err)
	}
	return nil
}

// relay is a chain of hops durable pull consumers: a request is message 0,
// published by the requester; the consumer of hop i takes message i,
// publishes message i+1 (awaiting the stream's ack) and then acks; the
// requester, subscribed to message hops before it published, is done when
// that arrives. That is hops+1 persisted messages, as many as the Writ path
// it stands for, with none of Writ's work between them. Each carries a
// message id (its subject), as Writ's events do, so the stream's duplicate
// window costs both alike; none asks for an expected last sequence, which
// is Writ's own concurrency control.
//
// With a floor (floor.go) the relay is the floor: the same stream,
// consumers, workers and messages in flight, and each message a signed
// envelope that the hop taking it verifies before it signs the next; the
// crypto is the only difference.
type relay struct {
	name    string // in errors: "relay" or "floor"
	stream  string
	prefix  string // subjects are <prefix>.<id>.h<i>
	durable string // hop i's durable consumer is <durable>-h<i>
	hops    int
	workers int // handlers in flight per consumer and replica, as Writ's
	body    []byte
	floor   *floor // nil: the bare relay
	ids     atomic.Uint64
}

// newRelay is a relay of hops with messages of payload bytes; with fl, the
// floor of fl's path.
func (e *env) newRelay(hops, payload int, fl *floor) *relay {
	// The bare relay's subjects and durables are as they were.
	name, kind := "relay", "c"+strconv.Itoa(hops)
	if fl != nil {
		name, kind = "floor", "f"+strconv.Itoa(hops)
	}
	return &relay{
		name: name, stream: e.relay, prefix: e.relaySubjects + "." + kind, durable: "writbench-" + kind, hops: hops,
		workers: e.rt.Config.Limits.Workers, body: make([]byte, payload), floor: fl,
	}
}

// startRelay starts a relay of hops with n replicas, and a requester on a
// connection of its own for every node, taken in turn, as Writ's are; with
// fl, the floor, whose hops are fl.hops().
func (e *env) startRelay(name string, hops, payload, n int, fl *floor) (*relay, *pool, requestFunc, error) {
	r := e.newRelay(hops, payload, fl)
	p := e.pool(name, r.serve)
	if err := p.scale(n); err != nil {
		return nil, nil, nil, err
	}
	var reqs []requestFunc
	for k := range e.nodes() {
		nc, err := e.conn(fmt.Sprintf("%s requester %d", name, k+1), k)
		if err != nil {
			return nil, nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, nil, nil, err
		}
		reqs = append(reqs, r.request(nc, js))
	}
	var next atomic.Uint64
	return r, p, func(ctx context.Context) error {
		return reqs[next.Add(1)%uint64(len(reqs))](ctx)
	}, nil
}

func (r *relay) subject(id string, hop int) string {
	return r.prefix + "." + id + ".h" + strconv.Itoa(hop)
}

// request is one request through the relay, as requester.
func (r *relay) request(nc *nats.Conn, js jetstream.JetStream) requestFunc {
	return func(ctx context.Context) error {
		id := "r" + strconv.FormatUint(r.ids.Add(1), 10)
		// Subscribed first: the subscription reaches the server before the
		// publish on the same connection, so the last message cannot be
		// missed.
		// A channel of one: a sync subscription would allocate the
		// connection's default 64k-message channel per request, a cost
		// Writ's reads do not pay either.
		done := make(chan *nats.Msg, 1)
		sub, err := nc.ChanSubscribe(r.subject(id, r.hops), done)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		first := r.subject(id, 0)
		msg, msgID := &nats.Msg{Subject: first, Data: r.body}, first
		var hold *floorHold
		if r.floor != nil {
			if msg, msgID, hold, err = r.floor.request(id, first); err != nil {
				return fmt.Errorf("floor %s: %w", id, err)
			}
		}
		ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(r.stream))
		if err != nil {
			return fmt.Errorf("%s %s: publish: %w", r.name, id, err)
		}
		if ack.Duplicate {
			return fmt.Errorf("%s %s: the stream took the request for a duplicate", r.name, id)
		}
		select {
		case m := <-done:
			if r.floor != nil {
				if err := r.floor.finish(id, hold, m.Data, m.Header); err != nil {
					return fmt.Errorf("floor %s: %w", id, err)
				}
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s %s: no answer: %w", r.name, id, ctx.Err())
		}
	}
}

// serve runs one replica of every hop's consumer until ctx ends, then
// finishes the messages it holds.
func (r *relay) serve(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	errs := make([]error, r.hops)
	var wg sync.WaitGroup
	for i := range r.hops {
		wg.Go(func() { errs[i] = r.hop(ctx, js, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hop consumes message i and publishes message i+1, with the pipeline's
// consumer settings: explicit acks, a pull of four messages a handler, a
// bounded number of handlers, ack only after the next message is stored.
func (r *relay) hop(ctx context.Context, js jetstream.JetStream, i int) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, r.stream, jetstream.ConsumerConfig{
		Durable:        r.durable + "-h" + strconv.Itoa(i),
		FilterSubjects: []string{r.prefix + ".*.h" + strconv.Itoa(i)},
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        consumers.AckWait,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxDeliver:     consumers.MaxDeliver,
		MaxAckPending:  maxAckPending,
	})
	if err != nil {
		return fmt.Errorf("%s consumer %d: %w", r.name, i, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(r.workers*4), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return fmt.Errorf("%s consumer %d: %w", r.name, i, err)
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	defer iter.Stop()
	slots := make(chan struct{}, r.workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m, err := iter.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s consumer %d: %w", r.name, i, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A missed heartbeat: the iterator pulls again; a pause
			// keeps a persistent failure from spinning.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			r.forward(ctx, js, m, i)
		})
	}
}

// forward publishes the message after m and acks m; a failure asks for m
// again. On the floor, a message the hop refuses is terminated, as Writ's
// components end what can never succeed, and goes no further.
func (r *relay) forward(ctx context.Context, js jetstream.JetStream, m jetstream.Msg, i int) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
	defer cancel()
	// <prefix>.<id>.h<i>: the id is the second token from the end.
	tokens := strings.Split(m.Subject(), ".")
	id := tokens[len(tokens)-2]
	next := r.subject(id, i+1)
	out, msgID := &nats.Msg{Subject: next, Data: m.Data()}, next
	if r.floor != nil {
		var err error
		if out, msgID, err = r.floor.forward(i, id, next, m.Data(), m.Headers()); err != nil {
			_ = m.TermWithReason("writ bench floor: refused")
			return
		}
	}
	_, err := js.PublishMsg(hctx, out, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(r.stream))
	if err != nil {
		_ = m.NakWithDelay(100 * time.Millisecond)
		return
	}
	_ = m.Ack()
}
