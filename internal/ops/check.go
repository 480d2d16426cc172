package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/store"
)

// sample is what the last look at the server found.
type sample struct {
	at        time.Time
	stream    error            // the audit stream's info
	consumers map[string]error // by Durable.Name
}

// Run samples the server every interval, and checks the audit stream's
// leader every leader interval, until ctx ends.
func (o *Ops) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { o.watchLeader(ctx) })
	t := time.NewTicker(o.o.Interval)
	defer t.Stop()
	for {
		o.Sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-o.kick:
		}
	}
}

// leaderCheck is what the last look at the audit stream's leader found.
type leaderCheck struct {
	at      time.Time
	problem string // why the stream cannot take appends; "" when it can
}

// leaderPatience bounds one look at the stream's leader: it answers in
// milliseconds, and one that does not answer within this (it went down,
// and its replicas have not noticed yet) is as good as lost. With checks
// every DefaultLeaderInterval, readiness turns within a second.
const leaderPatience = 750 * time.Millisecond

// watchLeader asks the audit stream for its leader every leader interval
// until ctx ends. A leader lost stops every append at once, and an
// election takes seconds: the sampling interval is too coarse to see it.
func (o *Ops) watchLeader(ctx context.Context) {
	t := time.NewTicker(o.o.LeaderInterval)
	defer t.Stop()
	for {
		o.checkLeader(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkLeader looks at the audit stream's leader once.
func (o *Ops) checkLeader(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, leaderPatience)
	defer cancel()
	var c leaderCheck
	s, err := o.js.Stream(ctx, o.o.Stream)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		c.problem = fmt.Sprintf("no answer from its leader within %s", leaderPatience)
	case err != nil:
		c.problem = err.Error()
	default:
		c.problem = store.Unserved(s.CachedInfo())
	}
	if parent.Err() != nil {
		return // stopping
	}
	c.at = time.Now()
	o.mu.Lock()
	o.leader = c
	o.mu.Unlock()
}

// Sample looks at the server once: the audit stream, every expected
// durable consumer (its lag) and the timer stream's schedules. Each look
// is one JetStream API call; a round takes at most checkTimeout.
func (o *Ops) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, o.checkTimeout())
	defer cancel()
	o.mu.Lock()
	durables := slices.Clone(o.durables)
	o.mu.Unlock()

	s := sample{consumers: make(map[string]error, len(durables))}
	_, s.stream = o.js.Stream(ctx, o.o.Stream)
	for _, d := range durables {
		c, err := o.js.Consumer(ctx, d.Stream, d.Consumer)
		s.consumers[d.Name] = err
		if err != nil {
			continue
		}
		info := c.CachedInfo()
		o.m.pending.WithLabelValues(d.Name).Set(float64(info.NumPending))
		o.m.ackPending.WithLabelValues(d.Name).Set(float64(info.NumAckPending))
	}
	if o.o.Timers != "" {
		n, err := countSubjects(ctx, o.o.NC, o.o.Timers, consumers.PendingFilter(o.o.Domain))
		if err == nil {
			o.m.requests.WithLabelValues(o.o.Domain).Set(float64(n))
		} else if ctx.Err() == nil {
			o.o.Logger.Debug("could not count the pending requests", "stream", o.o.Timers, "err", err)
		}
	}
	s.at = time.Now()
	o.mu.Lock()
	o.last = s
	o.mu.Unlock()
}

// checkTimeout bounds a sampling round: an interval, and never so short
// that a busy server fails it.
func (o *Ops) checkTimeout() time.Duration { return max(o.o.Interval, 2*time.Second) }

// countSubjects counts a stream's subjects matching filter. The server
// counts them in its subject index and, asked for a page past the end,
// answers with the total alone, however many there are.
func countSubjects(ctx context.Context, nc *nats.Conn, stream, filter string) (int, error) {
	req, _ := json.Marshal(map[string]any{"subjects_filter": filter, "offset": math.MaxInt32})
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+stream, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Total int `json:"total"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, err
	}
	if resp.Error != nil {
		return 0, errors.New(resp.Error.Description)
	}
	return resp.Total, nil
}

// Report is a health or readiness answer.
type Report struct {
	OK         bool              `json:"ok"`
	Components map[string]string `json:"components,omitempty"` // running, stopped
	Consumers  map[string]string `json:"consumers,omitempty"`  // consuming, idle, stopped
	Problems   []string          `json:"problems,omitempty"`   // why not OK
	// Warnings are what limits the service without stopping it: a spoke
	// not linked to its hub ("federation: not linked …").
	Warnings   []string          `json:"warnings,omitempty"`
	Federation *FederationReport `json:"federation,omitempty"` // a federated domain's links
}

var loopNames = map[consumers.Loop]string{
	consumers.LoopStopped: "stopped", consumers.LoopIdle: "idle", consumers.LoopConsuming: "consuming",
}

// Health says whether the process does its work: every component runs and
// no handler is stuck.
func (o *Ops) Health() Report {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.healthLocked(time.Now())
}

func (o *Ops) healthLocked(now time.Time) Report {
	r := Report{Components: map[string]string{}, Consumers: map[string]string{}}
	if len(o.expected) == 0 {
		r.Problems = append(r.Problems, "no pipeline")
	}
	for _, name := range o.expected {
		if o.components[name].running.Load() {
			r.Components[name] = "running"
		} else {
			r.Components[name] = "stopped"
			r.Problems = append(r.Problems, fmt.Sprintf("component %s is not running", name))
		}
	}
	for _, d := range o.durables {
		p := o.consumers[d.Name]
		r.Consumers[d.Name] = loopNames[consumers.Loop(p.loop.Load())]
		if t := p.oldest(); !t.IsZero() && now.Sub(t) > StuckAfter {
			r.Problems = append(r.Problems, fmt.Sprintf("consumer %s: a handler has held a message for %s", d.Name, now.Sub(t).Round(time.Second)))
		}
	}
	r.OK = len(r.Problems) == 0
	return r
}

// Ready says whether the pipeline serves requests: healthy, connected to
// NATS, the audit stream reachable, every durable consumer there and
// consumed, as of a recent sample, and nothing the guard watches weakened.
// A spoke not linked to its hub is ready, with a warning that says so
// (FederationReport says why).
func (o *Ops) Ready() Report { return o.ready(false) }

// ReadyLinked is Ready, and a spoke not linked to every hub it dials is
// not: for whoever needs requests to cross domains.
func (o *Ops) ReadyLinked() Report { return o.ready(true) }

func (o *Ops) ready(requireLinked bool) Report {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	r := o.healthLocked(now)
	if f := o.o.Federation; f != nil {
		var unlinked []string
		r.Federation, unlinked = f.report(now)
		if requireLinked {
			r.Problems = append(r.Problems, unlinked...)
		} else {
			r.Warnings = append(r.Warnings, unlinked...)
		}
	}
	if st := o.o.NC.Status(); st != nats.CONNECTED {
		r.Problems = append(r.Problems, "nats: connection "+st.String())
	}
	s := o.last
	switch {
	case s.at.IsZero():
		r.Problems = append(r.Problems, "the server has not been checked yet")
	case now.Sub(s.at) > 2*o.o.Interval+o.checkTimeout():
		r.Problems = append(r.Problems, fmt.Sprintf("the server was last checked %s ago", now.Sub(s.at).Round(time.Second)))
	}
	if s.stream != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("stream %s: %v", o.o.Stream, s.stream))
	}
	switch l := o.leader; {
	case l.at.IsZero():
		r.Problems = append(r.Problems, fmt.Sprintf("stream %s: its leader has not been checked yet", o.o.Stream))
	case now.Sub(l.at) > 2*o.o.LeaderInterval+leaderPatience:
		r.Problems = append(r.Problems, fmt.Sprintf("stream %s: its leader was last checked %s ago", o.o.Stream, now.Sub(l.at).Round(time.Millisecond)))
	case l.problem != "":
		r.Problems = append(r.Problems, fmt.Sprintf("stream %s: %s", o.o.Stream, l.problem))
	}
	for _, d := range o.durables {
		if err, checked := s.consumers[d.Name]; err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("consumer %s (%s): %v", d.Name, d.Consumer, err))
		} else if !checked && !s.at.IsZero() {
			r.Problems = append(r.Problems, fmt.Sprintf("consumer %s (%s): not checked yet", d.Name, d.Consumer))
		}
		if l := consumers.Loop(o.consumers[d.Name].loop.Load()); l != consumers.LoopConsuming {
			r.Problems = append(r.Problems, fmt.Sprintf("consumer %s is not being consumed (%s)", d.Name, loopNames[l]))
		}
	}
	if o.guard != nil {
		for _, w := range o.guard.Weakened() {
			r.Problems = append(r.Problems, "issuance stopped: "+w)
		}
	}
	r.OK = len(r.Problems) == 0
	return r
}
