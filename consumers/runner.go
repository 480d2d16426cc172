package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/restart"
)

// MaxDeliver bounds redeliveries. A transient failure (the stream cannot
// take writes) is retried with a backoff growing to 10s, so this is hours
// of outage; an input that cannot be handled is answered and dropped long
// before (PoisonAfter). A message that reaches it anyway is left by the
// server, which says so in a MAX_DELIVERIES advisory, and the request it
// belongs to shows as not taken further in writ audit verify.
const MaxDeliver = 1000

// handleTimeout bounds one message's handling.
const handleTimeout = 20 * time.Second

// AckWait is how long the server waits for a delivered message's ack
// before it delivers it again. It is short, so that a message lost on its
// way (a consumer's leader changing hands, a replica killed holding it)
// comes back in seconds; a handler still working says so every
// progressEvery, so a slow one keeps its message.
const (
	AckWait       = 5 * time.Second
	progressEvery = 2 * time.Second
)

// retryAfter asks for redelivery after a delay (a transient condition).
type retryAfter struct {
	delay time.Duration
	cause error
}

func (r *retryAfter) Error() string { return fmt.Sprintf("retry after %s: %v", r.delay, r.cause) }
func (r *retryAfter) Unwrap() error { return r.cause }

// terminate stops redelivery of an input that can never succeed, after its
// refusal has been recorded.
type terminate struct{ reason string }

func (t *terminate) Error() string { return "terminated: " + t.reason }

type handlerFunc func(ctx context.Context, m jetstream.Msg) error

// consume runs h over the durable pull consumer d (cfg) with up to workers
// messages in flight, pulling only while g (when not nil) is open, until
// ctx ends; then it stops pulling, handles what its subscription has
// brought and what it holds, and returns. A message is acked
// only after h returns nil. A consumer that disappears while still wanted
// is made again. obs hears of the loop's state and of every message.
//
// It pulls ahead of its workers: up to workers more messages than are
// being handled (lookahead), so that a worker done with one message finds
// the next in hand. Pulling only for free workers left each of them idle
// for a pull's round trip after every message, and under sync_always that
// round trip waits for the write being synced: a third of every worker's
// time, with a backlog waiting in the stream. A message pulled ahead tells
// the server it is in progress while it waits, as one being handled does,
// so that waiting in the queue never costs it a redelivery. Beyond those,
// the pull subscription may have brought up to workers more, which wait
// in the client library until the queue has room (see pullWhileOpen).
func consume(ctx context.Context, js jetstream.JetStream, obs Observer, d Durable, cfg jetstream.ConsumerConfig, workers int, g gate, log *slog.Logger, h handlerFunc) error {
	probe := obs.Consumer(d, workers)
	defer probe.Loop(LoopStopped)
	q := newQueue(workers)
	var wg sync.WaitGroup
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		q.dispatch(ctx, &wg, log, probe, h)
	}()
	// When the consumer goes away under us (deleted, or its stream was
	// re-created), make it again rather than stop serving silently.
	restart.Loop(ctx, log.With("durable", cfg.Durable), "consumer", func(ctx context.Context) error {
		probe.Loop(LoopIdle)
		defer probe.Loop(LoopIdle)
		return consumeOnce(ctx, js, d.Stream, cfg, g, log, probe, q)
	})
	// Every message pulled is handled: none is dropped in the queue.
	close(q.ready)
	<-dispatched
	wg.Wait()
	return nil
}

// queue holds the messages pulled and not yet handled, and bounds them.
type queue struct {
	// credits bound the messages pulled and not yet handled: workers plus
	// the lookahead. A pull asks for as many as it takes; a message gives
	// its credit back when its handling ends.
	credits chan struct{}
	// slots are the free workers: taking one bounds the messages handled
	// at once and names the slot to the probe, which can then tell a stuck
	// handler.
	slots chan int
	// ready are the messages pulled, waiting for a worker; it holds as many
	// as there are credits, so a pull never waits for room.
	ready chan *held
}

func newQueue(workers int) *queue {
	q := &queue{
		credits: make(chan struct{}, 2*workers),
		slots:   make(chan int, workers),
		ready:   make(chan *held, 2*workers),
	}
	for i := range workers {
		q.slots <- i
	}
	for range cap(q.credits) {
		q.credits <- struct{}{}
	}
	return q
}

// dispatch hands each message ready to a free worker, until ready is
// closed and drained.
func (q *queue) dispatch(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, probe ConsumerProbe, h handlerFunc) {
	for m := range q.ready {
		slot := <-q.slots
		wg.Go(func() {
			defer func() { q.slots <- slot; q.credits <- struct{}{} }()
			handle(ctx, m, log, probe, slot, h)
		})
	}
}

// A loop holds one pull subscription for as long as it consumes: one
// reply inbox, pulls of up to pullExpiry renewed on it, the server's
// heartbeat every pullHeartbeat while a pull waits. A pull per second,
// each with a fresh inbox, made the server add and drop a subscription
// every second in every loop, and a federation's hub carries that interest
// to every spoke: idle cost growing with the square of the domains.
// A pull lost on its way (a consumer's leader killed) is noticed by the
// heartbeats missing, within two of them (10 s), and made again; a leader
// handed on in order, or a reconnect, re-pulls at once. Each heartbeat
// wakes the server's consumer, its connection and the client's: at 2 s
// they were most of what an idle domain did (a nats-server with Writ's
// streams and no client at all costs about 0.3 % of a core here). gateCheck is
// how often a consuming loop asks whether its gate has shut, and how often
// a loop at a shut gate asks whether its consumer is still there.
const (
	pullExpiry    = 30 * time.Second
	pullHeartbeat = 5 * time.Second
	gateCheck     = time.Second
)

func consumeOnce(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, g gate, log *slog.Logger, probe ConsumerProbe, q *queue) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	probe.Loop(LoopConsuming)
	stop := context.AfterFunc(ctx, func() { probe.Loop(LoopIdle) }) // draining
	defer stop()
	log.Debug("consuming", "durable", cfg.Durable)
	for ctx.Err() == nil {
		if g != nil {
			open, err := waitGate(ctx, g, probe, func(ctx context.Context) error {
				_, err := cons.Info(ctx)
				return err
			})
			if err != nil {
				return err
			}
			if !open {
				return nil
			}
		}
		if err := pullWhileOpen(ctx, cons, g, log, cfg.Durable, q); err != nil {
			return err
		}
	}
	return nil
}

// pullWhileOpen keeps a pull subscription until ctx ends or g shuts (nil),
// or the consumer is gone (its error, for the loop to make it again). Each
// message delivered is held (it tells the server it is in progress from
// then on) and waits for a credit before it joins the queue, so that the
// messages in the queue stay bounded. The subscription asks for one
// message at a time, and for the next only once the callback has handed
// the last on: a message the server has delivered is always one the loop
// holds, never one waiting unheld in the client library behind a full
// queue (where, with workers busy past the ack wait — a webhook that
// hangs — it was delivered and handled twice). Once it stops, what the
// subscription already has is handed on too: a message delivered is
// handled, not dropped.
func pullWhileOpen(ctx context.Context, cons jetstream.Consumer, g gate, log *slog.Logger, durable string, q *queue) error {
	problems := make(chan error, 1)
	// handing is held while the callback hands a message on: cc.Closed()
	// is closed as soon as the subscription is no longer valid (the
	// connection closed, the consumer deleted), which can be while the
	// callback still waits for a credit; pullWhileOpen returns only once it
	// has handed its message on, so that nothing sends on q.ready after
	// consume has closed it.
	var handing sync.Mutex
	ended := false
	cc, err := cons.Consume(func(m jetstream.Msg) {
		handing.Lock()
		defer handing.Unlock()
		if ended { // never held: the server delivers it again
			return
		}
		hm := hold(m)
		<-q.credits
		q.ready <- hm
	},
		jetstream.PullMaxMessages(1), // see above: nothing delivered waits unheld
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			select {
			case problems <- err:
			default: // one is enough to look
			}
		}))
	if err != nil {
		// Only the subscription can fail here (the connection closed or
		// draining): the loop's restart logs it and backs off, where a
		// pause and nil had the loop try again ten times a second, unheard.
		return fmt.Errorf("consume: %w", err)
	}
	defer func() {
		cc.Drain()
		<-cc.Closed()
		handing.Lock()
		ended = true
		handing.Unlock()
	}()
	// Only a gated loop looks at its gate: an idle process wakes for
	// nothing else of its own.
	var shut <-chan time.Time
	if g != nil {
		check := time.NewTicker(gateCheck)
		defer check.Stop()
		shut = check.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cc.Closed():
			// Stopped under us: the consumer deleted, the connection
			// closed. Start again (the loop makes the consumer again if
			// it is gone).
			if _, err := cons.Info(ctx); isGone(err) {
				return err
			}
			restart.Sleep(ctx, pullBackoff.Pause(1))
			return nil
		case err := <-problems:
			if isGone(err) {
				return err
			}
			// Heartbeats missing, a leader change, a reconnect: the
			// subscription pulls again by itself; make sure there is still
			// a consumer to pull from.
			if _, ierr := cons.Info(ctx); isGone(ierr) {
				return ierr
			}
			log.Debug("pull interrupted; pulling again", "durable", durable, "err", err)
		case <-shut:
			if !isOpen(g) {
				return nil
			}
		}
	}
}

// isGone reports an error saying the consumer, or its stream, is no more.
func isGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

func isOpen(g gate) bool {
	select {
	case <-g.Open():
		return true
	default:
		return false
	}
}

// held is a message pulled and not yet acknowledged: from the moment it
// arrives, it tells the server every progressEvery that it is in progress,
// while it waits for a worker and while it is handled, until release.
type held struct {
	jetstream.Msg
	// The beat is armed under mu and stopped under it, so that a beat
	// already firing when it is released does not arm itself again.
	mu       sync.Mutex
	released bool
	beat     *time.Timer
}

func hold(m jetstream.Msg) *held {
	hm := &held{Msg: m}
	hm.mu.Lock()
	defer hm.mu.Unlock()
	hm.beat = time.AfterFunc(progressEvery, func() {
		hm.mu.Lock()
		defer hm.mu.Unlock()
		if !hm.released {
			_ = m.InProgress()
			hm.beat.Reset(progressEvery)
		}
	})
	return hm
}

// release stops the beat: the message is about to be acked, naked or
// terminated.
func (hm *held) release() {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	hm.released = true
	hm.beat.Stop()
}

// gate shuts a consumer loop: while shut, the loop pulls nothing, so that
// messages wait in the stream rather than spend their deliveries.
type gate interface {
	Open() <-chan struct{} // closed while open
}

// waitGate waits until g is open: true then, false when ctx ended first.
// The loop shows idle while it waits. Every gateCheck meanwhile it asks
// whether its consumer is still there (alive): one deleted while the gate
// is shut gets no pull that could tell it so, and the guard that shut the
// gate stays shut until the consumer is there again, so a consumer gone
// (ErrConsumerNotFound, or its stream's ErrStreamNotFound) ends the wait
// with that error, for the loop to make it again.
func waitGate(ctx context.Context, g gate, probe ConsumerProbe, alive func(context.Context) error) (bool, error) {
	select {
	case <-g.Open():
		return true, nil
	default:
	}
	probe.Loop(LoopIdle)
	check := time.NewTicker(gateCheck)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-g.Open():
			probe.Loop(LoopConsuming)
			return true, nil
		case <-check.C:
			if err := alive(ctx); errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				return false, err
			}
		}
	}
}

func handle(ctx context.Context, hm *held, log *slog.Logger, probe ConsumerProbe, slot int, h handlerFunc) {
	m := hm.Msg
	start := time.Now()
	probe.Begin(slot, start)
	// Handling outlives shutdown by up to handleTimeout, so a message in
	// hand is finished (or naked), never dropped half-way.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
	defer cancel()
	var seq uint64
	var age time.Duration
	delivered := uint64(1)
	if md, err := m.Metadata(); err == nil {
		seq, delivered, age = md.Sequence.Stream, md.NumDelivered, start.Sub(md.Timestamp)
	}
	err := func() (err error) {
		// Progress acks while the handler works, and none after.
		defer hm.release()
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return h(hctx, m)
	}()
	var term *terminate
	var retry *retryAfter
	var outcome Outcome
	switch {
	case err == nil:
		outcome = Acked
		if aerr := m.Ack(); aerr != nil {
			log.Warn("ack failed; the message will be redelivered", msgAttrs(m, seq, "err", aerr)...)
		}
	case errors.As(err, &term):
		outcome = Terminated
		if aerr := m.TermWithReason(term.reason); aerr != nil {
			log.Warn("term failed", msgAttrs(m, seq, "err", aerr)...)
		}
	default:
		outcome = Retried
		delay := redelivery.Pause(int(min(delivered, 64)))
		if errors.As(err, &retry) {
			delay = retry.delay
		}
		log.Warn("handling failed; will retry", msgAttrs(m, seq, "delivery", delivered, "retry_in", delay, "err", err)...)
		if nerr := m.NakWithDelay(delay); nerr != nil {
			log.Warn("nak failed", msgAttrs(m, seq, "err", nerr)...)
		}
	}
	probe.End(slot, Handled{Outcome: outcome, Seq: seq, Delivered: delivered, Took: time.Since(start), Age: age})
}

// msgAttrs are the log attributes of a message handled: its stream
// sequence and subject, and the request and kind an audit subject names.
// Only failures log, so the parsing is off the hot path.
func msgAttrs(m jetstream.Msg, seq uint64, more ...any) []any {
	out := append(make([]any, 0, 8+len(more)), attrSeq, seq, "subject", m.Subject())
	if _, id, kind, err := events.ParseSubject(m.Subject()); err == nil {
		out = append(out, attrRequest, id, attrKind, kind.String())
	}
	return append(out, more...)
}

// Pauses: a message's redelivery waits longer with each delivery, from
// 100ms to 10s; a pull that failed (a leader change, a reconnect) is
// tried again within a second.
var (
	redelivery  = restart.Backoff{First: 100 * time.Millisecond, Max: 10 * time.Second}
	pullBackoff = restart.Backoff{First: 100 * time.Millisecond, Max: 800 * time.Millisecond}
)

func durableConfig(name string, filters ...string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        AckWait,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxDeliver:     MaxDeliver,
		MaxAckPending:  1024,
	}
}

// keepWatching runs a KV watcher until ctx ends, starting it again when it
// stops (the server restarted, the bucket was re-created): a component
// that reads it must never be left waiting on a watcher that quit.
func keepWatching(ctx context.Context, log *slog.Logger, what string, run func(context.Context) error) error {
	restart.Loop(ctx, log, what, run)
	return nil
}
