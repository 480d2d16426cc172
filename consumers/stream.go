package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/locks"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/state"
)

// Default stream names.
const (
	DefaultStream       = "WRIT"
	DefaultTimersStream = "WRIT_TIMERS"
)

// Timer subjects, in the timers stream: a schedule per request, which the
// server fires to the request's fire subject. The domain comes first so
// that each domain's timer stream holds only its own.
const (
	timerPrefix = "writ-timers"
)

func scheduleSubject(domain, id string) string { return timerPrefix + "." + domain + ".schedule." + id }
func fireSubject(domain, id string) string     { return timerPrefix + "." + domain + ".fire." + id }

// fireFilter matches the fired timers of a domain.
func fireFilter(domain string) string { return timerPrefix + "." + domain + ".fire.*" }

// StreamConfig says how to create the streams.
type StreamConfig struct {
	Domain     string        // the domain whose events the streams hold (required)
	Name       string        // audit stream; default WRIT
	Timers     string        // timer stream; default WRIT_TIMERS
	Replicas   int           // default 1
	Duplicates time.Duration // duplicate window; default 24h
	MaxAge     time.Duration // 0 keeps events forever
	MaxMsgSize int32         // default 1 MiB
}

func (c *StreamConfig) defaults() {
	if c.Name == "" {
		c.Name = DefaultStream
	}
	if c.Timers == "" {
		c.Timers = DefaultTimersStream
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 24 * time.Hour
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = 1 << 20
	}
}

// ErrWeakened is returned when the audit stream, as the server reports it,
// lacks a protection Writ relies on.
var ErrWeakened = errors.New("consumers: audit stream is not append-only")

// AuditStreamConfig is the audit stream's configuration.
func AuditStreamConfig(c StreamConfig) jetstream.StreamConfig {
	c.defaults()
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "Writ audit trail: every request, decision and grant, append-only",
		// Only this domain's subjects: in a federation every domain's
		// stream is named WRIT, in its own JetStream domain.
		Subjects:    []string{events.Prefix + "." + c.Domain + ".*.*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.MaxAge,
		MaxMsgSize:  c.MaxMsgSize,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// TimersStreamConfig is the timer stream's configuration. Schedules live
// here, not in the audit stream: a stream that allows schedules cannot deny
// purges.
func TimersStreamConfig(c StreamConfig) jetstream.StreamConfig {
	c.defaults()
	return jetstream.StreamConfig{
		Name:              c.Timers,
		Description:       "Writ durable timers (deadlines); fires into itself",
		Subjects:          []string{timerPrefix + "." + c.Domain + ".>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Replicas:          c.Replicas,
		Duplicates:        c.Duplicates,
		AllowMsgSchedules: true,
		MaxMsgsPerSubject: 1,
	}
}

// EnsureStreams creates the audit and timer streams, or checks the ones
// that exist, and refuses an audit stream that the server weakened. A
// cluster still forming (no meta leader yet, too few peers known or online
// to place the replicas) is waited for until ctx ends, which is also how
// long a cluster too small for good takes to be reported; any other error
// is returned at once.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c StreamConfig) error {
	for attempt := uint64(1); ; attempt++ {
		// Each attempt is bounded: an API request no leader answers must
		// not take all of ctx's time.
		actx, cancel := context.WithTimeout(ctx, ensureAttempt)
		err := ensureStreams(actx, js, c)
		cancel()
		if err == nil || !clusterForming(err) {
			return err
		}
		select {
		case <-ctx.Done():
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				return fmt.Errorf("%w (the cluster was not ready: %v)", ctx.Err(), err)
			case errors.Is(err, context.DeadlineExceeded):
				return fmt.Errorf("%w: JetStream did not answer (a cluster without a meta leader?)", err)
			}
			return err
		case <-time.After(backoff(min(attempt, 4))):
		}
	}
}

// ensureAttempt bounds one attempt at the streams and buckets: each takes
// milliseconds when the cluster answers.
const ensureAttempt = 3 * time.Second

// clusterForming says whether err is one a JetStream cluster gives while it
// forms: no meta leader, a peer not yet online, or no answer in time. No
// responders is not: a server without JetStream stays so.
func clusterForming(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		// "No suitable peers" is waited on whatever its reason: a forming
		// cluster gives it bare (it knows fewer peers than the replicas
		// yet), with "peer offline" or with "miscellaneous issue" (a peer
		// not yet heard from), and those read the same as a cluster too
		// small for good. A deadline ends the wait, with the reason.
		switch api.ErrorCode {
		case jsClusterNotAvailable, jsClusterNotLeader, jsClusterIncomplete, jsClusterNoPeers:
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// The server's error codes (nats-server's JSCluster… identifiers) for a
// cluster that cannot serve a request yet.
const (
	jsClusterIncomplete   jetstream.ErrorCode = 10004
	jsClusterNoPeers      jetstream.ErrorCode = 10005
	jsClusterNotAvailable jetstream.ErrorCode = 10008
	jsClusterNotLeader    jetstream.ErrorCode = 10009
)

func ensureStreams(ctx context.Context, js jetstream.JetStream, c StreamConfig) error {
	c.defaults()
	if c.Domain == "" {
		return errors.New("consumers: streams need the domain they serve")
	}
	want := AuditStreamConfig(c)
	s, err := js.CreateStream(ctx, want)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, c.Name)
	}
	if err != nil {
		return fmt.Errorf("consumers: audit stream %s: %w", c.Name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumers: audit stream %s: %w", c.Name, err)
	}
	if err := CheckAuditStream(info.Config, want); err != nil {
		return err
	}
	ts, err := js.CreateStream(ctx, TimersStreamConfig(c))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		ts, err = js.Stream(ctx, c.Timers)
	}
	if err != nil {
		return fmt.Errorf("consumers: timer stream %s: %w", c.Timers, err)
	}
	tinfo, err := ts.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumers: timer stream %s: %w", c.Timers, err)
	}
	if !tinfo.Config.AllowMsgSchedules {
		return fmt.Errorf("%w: timer stream %s does not allow message schedules (nats-server 2.12 or later is needed)", ErrTimers, c.Timers)
	}
	// The buckets every component and redeemer reads are made here, as
	// replicated as the streams: made on first use, they would have one
	// copy, and a cluster that lost its node would lose them.
	if err := locks.Ensure(ctx, js, c.Replicas); err != nil {
		return err
	}
	if err := state.Ensure(ctx, js, c.Replicas); err != nil {
		return err
	}
	return redeem.EnsureBuckets(ctx, js, c.Replicas)
}

// ErrTimers is returned when the timer stream cannot fire deadlines.
var ErrTimers = errors.New("consumers: timers unavailable")

// CheckAuditStream compares the configuration the server reports with the
// protections Writ needs.
func CheckAuditStream(got, want jetstream.StreamConfig) error {
	var errs []error
	check := func(ok bool, what string) {
		if !ok {
			errs = append(errs, errors.New(what))
		}
	}
	check(got.DenyDelete, "deny_delete is off")
	check(got.DenyPurge, "deny_purge is off")
	check(!got.AllowRollup, "rollups are allowed")
	check(!got.AllowMsgTTL, "per-message TTLs are allowed")
	check(got.SubjectDeleteMarkerTTL == 0, "subject delete markers are on")
	check(!got.AllowMsgSchedules, "message schedules are allowed")
	check(got.Discard == jetstream.DiscardNew, "discard policy is not 'new'")
	check(got.Storage == jetstream.FileStorage, "storage is not file")
	check(got.Retention == jetstream.LimitsPolicy, "retention is not 'limits'")
	check(got.AllowDirect, "direct get is off")
	check(slices.Equal(got.Subjects, want.Subjects), fmt.Sprintf("subjects are %v, want %v", got.Subjects, want.Subjects))
	check(got.MaxAge == want.MaxAge, fmt.Sprintf("max age is %s, configured %s", got.MaxAge, want.MaxAge))
	// A per-subject limit deletes a request's older events of a kind (a
	// first vote, say) whatever discard and deny-delete say.
	check(got.MaxMsgsPerSubject <= 0, fmt.Sprintf("max messages per subject is %d", got.MaxMsgsPerSubject))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrWeakened, got.Name, err)
	}
	return nil
}

// TimerSubjects matches every subject of a domain's timers: schedules
// and what they fire.
func TimerSubjects(domain string) string { return timerPrefix + "." + domain + ".>" }
