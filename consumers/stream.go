package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/restart"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/redeem"
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

// ErrWeakened is returned when a stream, bucket or durable consumer, as the
// server reports it, lacks a protection Writ relies on.
var ErrWeakened = errors.New("consumers: a stream or consumer Writ relies on is weakened")

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
	for attempt := 1; ; attempt++ {
		// Each attempt is bounded: an API request no leader answers must
		// not take all of ctx's time.
		actx, cancel := context.WithTimeout(ctx, ensureAttempt)
		err := ensureStreams(actx, js, c)
		cancel()
		if err == nil || !clusterForming(err) && !(storeRace(err) && attempt < storeRaceAttempts) &&
			!(accountRace(err) && attempt < accountRaceAttempts) {
			return err
		}
		if restart.Sleep(ctx, formingBackoff.Pause(attempt)) {
			continue
		}
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return fmt.Errorf("%w (the cluster was not ready: %v)", ctx.Err(), err)
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%w: JetStream did not answer (a cluster without a meta leader?)", err)
		}
		return err
	}
}

// ensureAttempt bounds one attempt at the streams and buckets: each takes
// milliseconds when the cluster answers.
const ensureAttempt = 3 * time.Second

// formingBackoff paces the attempts while a cluster forms: from 100ms to
// 800ms, so that a cluster ready is found ready within a second.
var formingBackoff = restart.Backoff{First: 100 * time.Millisecond, Max: 800 * time.Millisecond}

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

// storeRace says whether err is the server failing to create a stream's
// store. Setting up an account's JetStream, nats-server 2.15.2 makes and
// then removes the account's store directory while it is empty; done again
// for an account already in use (as it seems to be when a leafnode links
// in while the server starts), that removal can land under a stream being
// created there ("could not create storage directory … no such file or
// directory": 2 in 32 federated test starts here). The next attempt finds
// the directory made; one that fails that often is something else, and is
// returned.
func storeRace(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jsStreamCreate
}

// storeRaceAttempts bounds the attempts on storeRace.
const storeRaceAttempts = 4

// accountRace says whether err is a server of a cluster just formed that
// has not yet enabled JetStream for the account ("JetStream not enabled
// for account": seen once in a clean CI run, right after the meta
// leader's election, with the account's JWT limits applied a moment
// later). An account without JetStream stays so: after a few seconds of
// attempts the error is returned.
func accountRace(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount
}

// accountRaceAttempts bounds the attempts on accountRace: about 5 s.
const accountRaceAttempts = 10

// jsStreamCreate is nats-server's JSStreamCreateErrF: a stream create that
// failed for a reason without a code of its own, such as its store.
const jsStreamCreate jetstream.ErrorCode = 10049

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
// protections Writ needs (CheckStream).
func CheckAuditStream(got, want jetstream.StreamConfig) error { return CheckStream(got, want) }

// CheckStream compares a stream's configuration, as the server reports it,
// with the one Writ asks for (want): it returns nil when every protection
// is at least as strong, else an error wrapping ErrWeakened that lists each
// shortfall.
func CheckStream(got, want jetstream.StreamConfig) error {
	if problems := streamShortfalls(got, want); len(problems) > 0 {
		return fmt.Errorf("%w: stream %s: %s", ErrWeakened, got.Name, strings.Join(problems, "; "))
	}
	return nil
}

// streamShortfalls says how got is weaker than want. "At least as strong"
// is, field by field: the same subjects, retention and storage; limits
// (messages, bytes, age, per subject, message size) as high or unlimited;
// a duplicate window as long; as many replicas; every deny flag want has;
// nothing that removes or rewrites stored messages (rollups, per-message
// TTLs, delete markers, a mirror, a subject transform, counters) unless
// want has it; schedules exactly as want; direct get and acknowledged,
// synchronously persisted writes when want has them; not sealed.
func streamShortfalls(got, want jetstream.StreamConfig) []string {
	var out []string
	bad := func(weaker bool, format string, args ...any) {
		if weaker {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	bad(got.Sealed, "it is sealed")
	bad(!sameSet(got.Subjects, want.Subjects), "subjects are %v, want %v", got.Subjects, want.Subjects)
	bad(got.Retention != want.Retention, "retention is %s, want %s", got.Retention, want.Retention)
	bad(want.Discard == jetstream.DiscardNew && got.Discard != jetstream.DiscardNew, "discard policy is %s, want new", got.Discard)
	bad(got.Storage != want.Storage, "storage is %s, want %s", got.Storage, want.Storage)
	bad(lower(got.MaxMsgs, want.MaxMsgs), "max messages is %s, want %s", limit(got.MaxMsgs), limit(want.MaxMsgs))
	bad(lower(got.MaxBytes, want.MaxBytes), "max bytes is %s, want %s", limit(got.MaxBytes), limit(want.MaxBytes))
	bad(lower(int64(got.MaxAge), int64(want.MaxAge)), "max age is %s, want %s", age(got.MaxAge), age(want.MaxAge))
	// A per-subject limit deletes a request's older events of a kind (a
	// first vote, say) whatever discard and deny-delete say.
	bad(lower(got.MaxMsgsPerSubject, want.MaxMsgsPerSubject), "max messages per subject is %s, want %s",
		limit(got.MaxMsgsPerSubject), limit(want.MaxMsgsPerSubject))
	bad(lower(int64(got.MaxMsgSize), int64(want.MaxMsgSize)), "max message size is %s, want %s",
		limit(int64(got.MaxMsgSize)), limit(int64(want.MaxMsgSize)))
	bad(got.Duplicates < want.Duplicates, "duplicate window is %s, want %s or more", got.Duplicates, want.Duplicates)
	bad(got.Replicas < want.Replicas, "replicas are %d, want %d or more", got.Replicas, want.Replicas)
	bad(want.DenyDelete && !got.DenyDelete, "deny_delete is off")
	bad(want.DenyPurge && !got.DenyPurge, "deny_purge is off")
	bad(got.AllowRollup && !want.AllowRollup, "rollups are allowed")
	bad(got.AllowMsgTTL && !want.AllowMsgTTL, "per-message TTLs are allowed")
	bad(got.SubjectDeleteMarkerTTL != 0 && want.SubjectDeleteMarkerTTL == 0, "subject delete markers are on")
	bad(got.AllowMsgSchedules && !want.AllowMsgSchedules, "message schedules are allowed")
	bad(!got.AllowMsgSchedules && want.AllowMsgSchedules, "message schedules are off")
	bad(got.AllowMsgCounter && !want.AllowMsgCounter, "it is a counter stream")
	bad(want.AllowDirect && !got.AllowDirect, "direct get is off")
	bad(got.NoAck && !want.NoAck, "publishes are not acknowledged")
	bad(got.PersistMode == jetstream.AsyncPersistMode && want.PersistMode != jetstream.AsyncPersistMode, "writes are persisted asynchronously")
	bad(got.Mirror != nil && want.Mirror == nil, "it mirrors stream %s", mirrorName(got.Mirror))
	bad(len(got.Sources) > len(want.Sources), "it takes in messages from %d other streams", len(got.Sources)-len(want.Sources))
	bad(got.SubjectTransform != nil && want.SubjectTransform == nil, "stored subjects are transformed")
	return out
}

// lower says whether limit got is lower than want; 0 or less is no limit.
func lower(got, want int64) bool {
	if want <= 0 {
		return got > 0
	}
	return got > 0 && got < want
}

func limit(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

func age(d time.Duration) string {
	if d <= 0 {
		return "unlimited"
	}
	return d.String()
}

func mirrorName(m *jetstream.StreamSource) string {
	if m == nil {
		return ""
	}
	return m.Name
}

// sameSet says whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// BucketStreamConfig is the stream a KV bucket made from c is held to
// (CheckStream): what the JetStream client asks for when it creates the
// bucket, so far as a protection depends on it.
func BucketStreamConfig(c jetstream.KeyValueConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + c.Bucket,
		Subjects:          []string{"$KV." + c.Bucket + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardNew,
		Storage:           c.Storage,
		MaxMsgs:           -1,
		MaxBytes:          c.MaxBytes,
		MaxAge:            c.TTL,
		MaxMsgsPerSubject: int64(max(c.History, 1)),
		MaxMsgSize:        c.MaxValueSize,
		Replicas:          max(c.Replicas, 1),
		DenyDelete:        true,
		AllowRollup:       true, // a KV purge is a rollup
		AllowDirect:       true,
	}
}

// CheckConsumer compares a durable consumer, as the server reports it, with
// the configuration Writ creates it with (want): it returns nil when it
// delivers what Writ needs as Writ needs it, else an error wrapping
// ErrWeakened that lists each shortfall. At least as strong means: not
// paused; the same filters and ack policy; as many deliveries or
// unlimited; never removed for being idle; whole messages.
func CheckConsumer(got *jetstream.ConsumerInfo, want jetstream.ConsumerConfig) error {
	if problems := consumerShortfalls(got, want); len(problems) > 0 {
		return fmt.Errorf("%w: consumer %s: %s", ErrWeakened, got.Name, strings.Join(problems, "; "))
	}
	return nil
}

// TimerSubjects matches every subject of a domain's timers: schedules
// and what they fire.
func TimerSubjects(domain string) string { return timerPrefix + "." + domain + ".>" }
