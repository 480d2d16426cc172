package consumers

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
)

// Durable is a durable consumer a component reads, as metrics and
// readiness name it.
type Durable struct {
	Component string // policy, approval, issuer, auditor, notifier
	Name      string // short and stable, a metric label: policy, approval-timers, …
	Stream    string
	Consumer  string // the durable consumer's name on the server
	Filters   []string
}

// Config is the configuration Writ creates the durable consumer with, and
// holds it to (Guard).
func (d Durable) Config() jetstream.ConsumerConfig { return durableConfig(d.Consumer, d.Filters...) }

// Outcome is what became of a message handled. Its zero value is no
// outcome, so that a Handled nobody filled in is not counted as acked.
type Outcome uint8

// The outcomes of handling a message.
const (
	OutcomeUnknown Outcome = iota // the zero value: not an outcome
	Acked                         // handled; acknowledged
	Retried                       // failed; naked for redelivery
	Terminated                    // can never succeed; redelivery stopped
)

// outcomeNames are the outcomes' names, metric labels.
var outcomeNames = [...]string{OutcomeUnknown: "unknown", Acked: "acked", Retried: "retried", Terminated: "terminated"}

// String names the outcome; a value that is none of them prints as
// outcome(n).
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Outcomes lists every outcome, in order; OutcomeUnknown is not one.
var Outcomes = []Outcome{Acked, Retried, Terminated}

// Loop is the state of a consumer loop.
type Loop uint8

// The states of a consumer loop.
const (
	LoopStopped   Loop = iota // not started, or returned
	LoopIdle                  // not pulling: creating its consumer, waiting to try again, or draining
	LoopConsuming             // pulling messages from its consumer
)

// Observer hears what the components do, for metrics and health. Its
// probes are called on the hot path: they must be cheap and never block.
type Observer interface {
	// Component returns the probe of a component; the same name gives the
	// same probe.
	Component(name string) ComponentProbe
	// Consumer returns the probe of a consumer loop with workers slots;
	// called once each time the loop starts.
	Consumer(d Durable, workers int) ConsumerProbe
}

// ComponentProbe observes one component.
type ComponentProbe interface {
	Running(bool)              // its Run started (true) or returned (false)
	Appended(kind events.Kind) // it appended an event to a request's history
}

// ConsumerProbe observes one consumer loop.
type ConsumerProbe interface {
	Loop(Loop)
	// Begin says worker slot (0 ≤ slot < workers) took a message at start;
	// End says what became of it.
	Begin(slot int, start time.Time)
	End(slot int, h Handled)
}

// Handled is what became of one message.
type Handled struct {
	Outcome   Outcome
	Seq       uint64        // its stream sequence
	Delivered uint64        // times delivered, this one included
	Took      time.Duration // handling, the acknowledgement included
	// Age is how long after it was stored the message was taken: the
	// server's clock (the stream leader's) against this process's, so
	// only as good as their agreement. A redelivery of a message never
	// naked that is younger than the ack wait was handed on by the server
	// when its delivery reached no one (a replica unsubscribing as it
	// stops); one that is older may have been taken and lost.
	Age time.Duration
}

// HandleTimeout bounds one message's handling: a handler still busy long
// after it ignores its context.
const HandleTimeout = handleTimeout

type nopObserver struct{}

func (nopObserver) Component(string) ComponentProbe     { return nopProbe{} }
func (nopObserver) Consumer(Durable, int) ConsumerProbe { return nopProbe{} }

type nopProbe struct{}

func (nopProbe) Running(bool)         {}
func (nopProbe) Appended(events.Kind) {}
func (nopProbe) Loop(Loop)            {}
func (nopProbe) Begin(int, time.Time) {}
func (nopProbe) End(int, Handled)     {}

// DurablesOf lists the durable consumers component (one of this package's)
// reads, with their filters, without building it: what its connection
// must be allowed to read, and what the guard holds them to. The
// notifier's are notify.DurablesOf.
func (e Env) DurablesOf(component string) []Durable {
	e.Streams.defaults()
	d := e.Domain
	kinds := func(ks ...events.Kind) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			out[i] = events.Prefix + "." + d + ".*." + k.String()
		}
		return out
	}
	switch component {
	case "policy":
		return []Durable{e.durable("policy", "policy", e.Streams.Name, DurablePolicy, kinds(events.KindRequested)...)}
	case "approval":
		return []Durable{
			e.durable("approval", "approval", e.Streams.Name, DurableApproval,
				kinds(events.KindEvaluated, events.KindVoted, events.KindRevoke, events.KindLock, events.KindState)...),
			e.durable("approval", "approval-timers", e.Streams.Timers, DurableTimers, fireFilter(d)),
		}
	case "issuer":
		return []Durable{e.durable("issuer", "issuer", e.Streams.Name, DurableIssuer, kinds(events.KindEvaluated, events.KindApproved)...)}
	case "auditor":
		return []Durable{e.durable("auditor", "auditor", e.Streams.Name, DurableAuditor, kinds(disownedKinds...)...)}
	}
	return nil
}

// durable names one of a component's durable consumers.
func (e *Env) durable(component, name, stream, prefix string, filters ...string) Durable {
	return Durable{Component: component, Name: name, Stream: stream, Consumer: prefix + e.Domain + e.DurableSuffix, Filters: filters}
}
