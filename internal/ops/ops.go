package ops

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/embedded"
)

// DefaultInterval is how often the server is sampled.
const DefaultInterval = 5 * time.Second

// StuckAfter is how long a handler may hold a message before the process
// counts as unhealthy: well past the handling timeout, so it only trips on
// a handler that ignores its context.
const StuckAfter = 3 * consumers.HandleTimeout

// Options configure an Ops.
type Options struct {
	NC     *nats.Conn
	Domain string // the served domain
	Stream string // the audit stream; default consumers.DefaultStream
	// Timers is the timer stream, whose schedules are the requests waiting
	// for approvers; "" leaves writ_requests_pending out.
	Timers   string
	Interval time.Duration // between samples; default DefaultInterval
	// LeaderInterval is how often the audit stream is asked for its
	// leader (one stream info request), so that readiness follows a lost
	// leader within a second; default DefaultLeaderInterval.
	LeaderInterval time.Duration
	Logger         *slog.Logger
	// Federation is the embedded server's leafnode links, when the domain
	// federates; nil when it does not, or runs on a NATS of its own.
	Federation *Federation
}

// Federation is what Ops reports of a federated domain's leafnode links:
// in readiness (a spoke's hubs linked or not, how many spokes a hub has
// linked) and in metrics (per link: up, reconnects, what crossed).
type Federation struct {
	// Links is the server's links as they are now
	// (embedded.Server.LeafLinks): readiness and metrics look afresh each
	// time, so a link lost shows as soon as the server has noticed.
	Links func() []embedded.LeafLink
	// Spokes is how many spoke domains a hub has configured; 0 for a
	// domain that is no hub.
	Spokes int
}

// DefaultLeaderInterval is how often the audit stream's leader is checked.
const DefaultLeaderInterval = 250 * time.Millisecond

// Ops keeps a pipeline's metrics and health. It serves one pipeline at a
// time (which may stop and start again); replicas each have their own.
type Ops struct {
	o   Options
	js  jetstream.JetStream
	reg *prometheus.Registry
	m   metrics

	mu         sync.Mutex
	components map[string]*componentProbe
	consumers  map[string]*consumerProbe // by Durable.Name
	expected   []string
	durables   []consumers.Durable
	last       sample
	leader     leaderCheck
	kick       chan struct{} // sample now: a consumer loop started consuming
	guard      Guard
}

// Guard tells what stops issuance: what Writ relies on that is weakened
// (consumers.Guard).
type Guard interface{ Weakened() []string }

// Guard makes readiness report what g says stops issuance.
func (o *Ops) Guard(g Guard) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.guard = g
}

type metrics struct {
	handled     *prometheus.CounterVec
	seconds     *prometheus.HistogramVec
	redelivered *prometheus.CounterVec
	pending     *prometheus.GaugeVec
	ackPending  *prometheus.GaugeVec
	requests    *prometheus.GaugeVec
	appended    *prometheus.CounterVec
}

// New returns an Ops for the pipeline on o.NC.
func New(o Options) (*Ops, error) {
	if o.Stream == "" {
		o.Stream = consumers.DefaultStream
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.LeaderInterval <= 0 {
		o.LeaderInterval = DefaultLeaderInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(o.NC)
	if err != nil {
		return nil, err
	}
	m := metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_events_handled_total", Help: "Messages a consumer handled, by what became of them (acked, retried, terminated).",
		}, []string{"consumer", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "writ_handle_seconds", Help: "Time to handle one message, acknowledgement included.",
			// Up to the handling timeout (20s).
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"consumer"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_redeliveries_total", Help: "Messages handled that had been delivered before.",
		}, []string{"consumer"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "writ_consumer_pending", Help: "Messages not yet delivered to a durable consumer (its lag), as last sampled.",
		}, []string{"consumer"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "writ_consumer_ack_pending", Help: "Messages delivered to a durable consumer and not yet acknowledged, as last sampled.",
		}, []string{"consumer"}),
		requests: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "writ_requests_pending", Help: "Requests waiting for approvers (or a break-glass review): the timer stream's schedules, as last sampled.",
		}, []string{"domain"}),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_events_appended_total", Help: "Events a component appended to requests' histories, by kind.",
		}, []string{"component", "kind"}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.handled, m.seconds, m.redelivered, m.pending, m.ackPending, m.requests, m.appended,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Federation != nil {
		reg.MustRegister(newLinkCollector(o.Federation.Links))
	}
	return &Ops{
		o: o, js: js, reg: reg, m: m,
		components: map[string]*componentProbe{}, consumers: map[string]*consumerProbe{},
		kick: make(chan struct{}, 1),
	}, nil
}

// Registry is where the metrics are; register more collectors there.
func (o *Ops) Registry() *prometheus.Registry { return o.reg }

// Expect names the components that should run and the durable consumers
// they read (pipeline.Pipeline's Names and Durables): readiness waits for
// all of them.
func (o *Ops) Expect(components []string, durables []consumers.Durable) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expected = append([]string(nil), components...)
	o.durables = append([]consumers.Durable(nil), durables...)
	for _, d := range durables {
		o.consumerLocked(d)
	}
	for _, c := range components {
		o.componentLocked(c)
	}
}

// Component implements consumers.Observer.
func (o *Ops) Component(name string) consumers.ComponentProbe {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.componentLocked(name)
}

func (o *Ops) componentLocked(name string) *componentProbe {
	p := o.components[name]
	if p == nil {
		p = &componentProbe{name: name, vec: o.m.appended}
		o.components[name] = p
	}
	return p
}

// Consumer implements consumers.Observer.
func (o *Ops) Consumer(d consumers.Durable, workers int) consumers.ConsumerProbe {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.consumerLocked(d)
	if len(p.slots) != workers {
		p.slots = make([]atomic.Int64, workers)
	}
	return p
}

func (o *Ops) consumerLocked(d consumers.Durable) *consumerProbe {
	p := o.consumers[d.Name]
	if p == nil {
		// Children looked up once, here: the hot path only adds.
		p = &consumerProbe{
			d:           d,
			kick:        o.kick,
			seconds:     o.m.seconds.WithLabelValues(d.Name),
			redelivered: o.m.redelivered.WithLabelValues(d.Name),
			outcomes:    make(map[consumers.Outcome]prometheus.Counter, len(consumers.Outcomes)),
		}
		for _, oc := range consumers.Outcomes {
			p.outcomes[oc] = o.m.handled.WithLabelValues(d.Name, oc.String())
		}
		o.consumers[d.Name] = p
	}
	p.d = d
	return p
}

type componentProbe struct {
	name    string
	running atomic.Bool
	vec     *prometheus.CounterVec
	kinds   [256]atomic.Pointer[prometheus.Counter] // children, made on first use
}

func (p *componentProbe) Running(on bool) { p.running.Store(on) }

func (p *componentProbe) Appended(k events.Kind) {
	c := p.kinds[k].Load()
	if c == nil {
		child := p.vec.WithLabelValues(p.name, k.String())
		c = &child
		p.kinds[k].Store(c)
	}
	(*c).Inc()
}

type consumerProbe struct {
	d           consumers.Durable
	kick        chan struct{}
	loop        atomic.Uint32
	outcomes    map[consumers.Outcome]prometheus.Counter // written once, when made; an outcome not listed is not counted
	seconds     prometheus.Observer
	redelivered prometheus.Counter
	slots       []atomic.Int64 // when each worker slot took its message (Unix ns); 0: free
}

// Loop records the loop's state. A loop that starts consuming has its
// consumer checked at once, so that readiness need not wait an interval.
func (p *consumerProbe) Loop(l consumers.Loop) {
	if consumers.Loop(p.loop.Swap(uint32(l))) != l && l == consumers.LoopConsuming {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

func (p *consumerProbe) Begin(slot int, start time.Time) {
	if slot < len(p.slots) {
		p.slots[slot].Store(start.UnixNano())
	}
}

func (p *consumerProbe) End(slot int, h consumers.Handled) {
	if slot < len(p.slots) {
		p.slots[slot].Store(0)
	}
	if c := p.outcomes[h.Outcome]; c != nil {
		c.Inc()
	}
	p.seconds.Observe(h.Took.Seconds())
	if h.Delivered > 1 {
		p.redelivered.Inc()
	}
}

// oldest is when the longest-held message in hand was taken (zero: none).
func (p *consumerProbe) oldest() time.Time {
	var min int64
	for i := range p.slots {
		if t := p.slots[i].Load(); t != 0 && (min == 0 || t < min) {
			min = t
		}
	}
	if min == 0 {
		return time.Time{}
	}
	return time.Unix(0, min)
}
