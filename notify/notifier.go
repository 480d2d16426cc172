package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/restart"
	"github.com/writ-dev/writ/request"
)

// The notifier's durable consumers: one on the audit stream (what to
// notify), one on its delivery queue (each webhook call, with retries).
// Part of the wire contract, never rename.
const (
	DurableNotifier         = "writ-notifier-"
	DurableNotifierDelivery = "writ-notifier-delivery-"
)

// The notifier's streams, both created by the notifier: the delivery queue
// (a work queue: a message per webhook call still to make) and the
// dead-letter stream (a record per notification given up on; see
// deadletter.go).
const (
	DefaultNotifyStream     = "WRIT_NOTIFY"
	DefaultDeadLetterStream = "WRIT_DEADLETTER"
)

const notifyPrefix = "writ-notify"

// Payload versions. A receiver should refuse a version it does not know.
const (
	NotificationVersion = "writ.notification.v1"
	DeadLetterVersion   = "writ.deadletter.v1"
)

// Notification types.
const (
	NoticeApprovalNeeded = "approval_needed" // a stage waits for its approvers
	NoticeEscalated      = "escalated"       // a stage still open after its escalation delay gains approvers
	NoticeOutcome        = "outcome"         // the requester hears what became of a request
	NoticeAlert          = "alert"           // break-glass use, its review overdue or denied: look now
)

// HTTP headers of a delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with the
	// configured secret, of the timestamp header's value, a ".", and the
	// exact body.
	HeaderSignature = "X-Writ-Signature"
	// HeaderTimestamp is when the try was made, in Unix seconds.
	HeaderTimestamp = "X-Writ-Timestamp"
	// HeaderDelivery identifies one notification to one target; it stays
	// the same across retries and redeliveries, so receivers can drop
	// duplicates with it.
	HeaderDelivery = "X-Writ-Delivery"
	// HeaderEvent is the kind of the event notified of.
	HeaderEvent = "X-Writ-Event"
)

// WebhookFormat is the payload a webhook receives. The zero value is none.
type WebhookFormat uint8

// The webhook formats.
const (
	FormatNone  WebhookFormat = iota
	FormatSlack               // Slack-compatible incoming webhook: text and blocks
	FormatJSON                // Notification, versioned
)

var formatNames = [...]string{"", "slack", "json"}

func (f WebhookFormat) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", f)
}

// ParseWebhookFormat returns the format named s.
func ParseWebhookFormat(s string) (WebhookFormat, error) {
	for i, n := range formatNames {
		if n == s && i != int(FormatNone) {
			return WebhookFormat(i), nil
		}
	}
	return FormatNone, fmt.Errorf("%w: webhook format %q", ErrNotifierConfig, s)
}

// Webhook is one notification target.
type Webhook struct {
	URL    string
	Format WebhookFormat
}

// id names the target without its URL, which for incoming webhooks is a
// credential: deliveries and dead letters carry the id, never the URL.
func (w Webhook) id() string {
	sum := sha256.Sum256([]byte(w.Format.String() + " " + w.URL))
	return hex.EncodeToString(sum[:8])
}

// redacted is the URL's scheme and host, and the id.
func (w Webhook) redacted() string {
	u, err := url.Parse(w.URL)
	if err != nil {
		return "#" + w.id()
	}
	return u.Scheme + "://" + u.Host + "/…#" + w.id()
}

// ErrNotifierConfig reports an unusable notifier configuration.
var ErrNotifierConfig = errors.New("notify: configuration")

// NotifierConfig says whom to notify, how, and how hard to try.
type NotifierConfig struct {
	// Groups are the webhooks of approver groups, keyed as flows name
	// them: "group" (of the request's domain) or "domain/group".
	Groups map[string][]Webhook
	// Principals are the webhooks of named principals ("domain/name"):
	// named approvers of a stage, and requesters of their own outcomes.
	Principals map[string][]Webhook
	// Requesters hear of every request's outcome.
	Requesters []Webhook
	// Secret signs every delivery (HeaderSignature); required for json targets.
	Secret []byte

	Retries    int           // tries after the first; default 5
	Backoff    time.Duration // first retry delay, doubling; default 1s
	MaxBackoff time.Duration // default 1m
	MaxElapsed time.Duration // from enqueueing to the last try; default 15m
	Timeout    time.Duration // one try; default 5s, at most 15s
	Workers    int           // webhook calls in flight; default 8

	Queue      string       // delivery queue stream; default WRIT_NOTIFY
	DeadLetter string       // dead-letter stream; default WRIT_DEADLETTER
	Client     *http.Client // default: no redirects followed
}

// Validate checks the configuration and changes nothing: a zero value
// means its default (withDefaults). Each problem matches ErrNotifierConfig.
func (c NotifierConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrNotifierConfig}, args...)...))
	}
	for _, w := range c.all() {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("webhook #%s: want an absolute http(s) URL", w.id())
		}
		if w.Format != FormatSlack && w.Format != FormatJSON {
			bad("webhook #%s: unknown format %s", w.id(), w.Format)
		}
		if w.Format == FormatJSON && len(c.Secret) == 0 {
			bad("webhook #%s: json payloads are signed, and no secret is set", w.id())
		}
	}
	if c.Retries < 0 || c.Backoff <= 0 || c.MaxBackoff < c.Backoff || c.MaxElapsed < c.Backoff {
		bad("need retries >= 0 and 0 < backoff <= max_backoff, backoff <= max_elapsed")
	}
	// A try must end well within handleTimeout and the ack wait.
	if c.Timeout <= 0 || c.Timeout > 15*time.Second {
		bad("timeout must be positive and at most 15s")
	}
	if c.Workers < 0 {
		bad("workers must not be negative")
	}
	return errors.Join(errs...)
}

// withDefaults returns the configuration with its defaults filled in.
func (c NotifierConfig) withDefaults() NotifierConfig {
	if c.Retries == 0 {
		c.Retries = 5
	}
	if c.Backoff == 0 {
		c.Backoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Minute
	}
	if c.MaxElapsed == 0 {
		c.MaxElapsed = 15 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Queue == "" {
		c.Queue = DefaultNotifyStream
	}
	if c.DeadLetter == "" {
		c.DeadLetter = DefaultDeadLetterStream
	}
	if c.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.Workers
		c.Client = &http.Client{
			Transport:     t,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

func (c *NotifierConfig) all() []Webhook {
	out := slices.Clone(c.Requesters)
	for _, ws := range c.Groups {
		out = append(out, ws...)
	}
	for _, ws := range c.Principals {
		out = append(out, ws...)
	}
	return out
}

// Notifier tells approvers that a stage waits for them and requesters what
// became of their requests, through webhooks: a Slack-compatible payload or
// a versioned JSON Notification.
//
// Approvers (the webhooks of a stage's groups and named principals) hear
// of each stage when it opens: the first stages at evaluation, the next
// when a vote completes one; the approvers an escalation adds hear of it
// then. Requesters (the requesters webhooks, and the requester's own
// principal webhooks) hear of approved, denied (by approvers, or by policy
// at evaluation), expired, granted, rejected and revoked.
//
// It is two durable consumers. The first reads those events from the audit
// stream, works out the targets and payloads, and appends one delivery per
// target to the delivery queue (WRIT_NOTIFY), acking the event only once
// the queue holds them. The second makes each webhook call, one try per
// delivery of the queue message, with a per-try timeout and a bounded
// number of calls in flight; a failed try is retried by redelivery after an
// exponential backoff, so retries survive restarts and a hanging webhook
// holds one worker for one timeout at most. A target that still fails after
// the last try (or the total time budget), or answers with a 4xx other
// than 408 and 429, gets a dead-letter record in WRIT_DEADLETTER
// (subjects writ-deadletter.<domain>.<request-id>, DeadLetter, with the
// payload for a replay) and the delivery is acked. Nothing the pipeline
// needs waits on the notifier.
//
// The notifier tells of events stored after it first started (see
// position): turned on for a setup with a history, it does not replay it.
// Its durable consumer keeps its place across restarts.
//
// Delivery is at least once: an event redelivered after the duplicate
// window of the queue, or a try whose answer was lost, notifies again.
// HeaderDelivery is the same for every try of one notification to one
// target: receivers drop duplicates with it.
//
// Payloads never carry a grant token, its sealed form or a secret: a
// granted notification names the token's hash and lifetime only. Webhook
// URLs are not written to any stream or log (a target is named by a hash).
//
// Verifying a delivery (see VerifyWebhook): compute HMAC-SHA256 keyed with
// the shared secret over the X-Writ-Timestamp value, ".", and the raw
// body; compare, in constant time, with the hex after "sha256=" in
// X-Writ-Signature; refuse a timestamp more than a few minutes from now,
// so that a captured delivery cannot be replayed later.
type Notifier struct {
	env     consumers.Env
	cfg     NotifierConfig
	js      jetstream.JetStream
	trail   *history.Log
	targets map[string]Webhook // by id
	log     *slog.Logger
}

// NewNotifier returns the notifier consumer.
func NewNotifier(env consumers.Env, cfg NotifierConfig) (*Notifier, error) {
	err := errors.Join(env.Validate(), cfg.Validate())
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	env, cfg = env.WithDefaults(), cfg.withDefaults()
	js, err := jetstream.New(env.NC)
	if err != nil {
		return nil, err
	}
	n := &Notifier{
		env: env, cfg: cfg, js: js,
		trail: history.New(history.Options{JS: js, Stream: env.Streams.Name, Clock: env.Clock,
			Checker: events.Checker{Bundle: env.Bundle, MaxBody: env.MaxBody}}),
		targets: map[string]Webhook{},
		log:     env.Logger.With("component", Component, consumers.AttrDomain, env.Domain),
	}
	for _, w := range cfg.all() {
		n.targets[w.id()] = w
	}
	return n, nil
}

// notifiedKinds are the audit events the notifier reads.
var notifiedKinds = []events.Kind{
	events.KindEvaluated, events.KindVoted, events.KindEscalated, events.KindApproved, events.KindDenied, events.KindExpired,
	events.KindGranted, events.KindRejected, events.KindRevoked, events.KindAlerted, events.KindRefused,
}

// NotifyStreamConfig is the delivery queue's configuration.
func NotifyStreamConfig(name, domain string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: "Writ notifier: webhook deliveries still to make",
		Subjects:    []string{notifyPrefix + "." + domain + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Replicas:    max(replicas, 1),
		Duplicates:  time.Hour,
		MaxAge:      24 * time.Hour,
	}
}

func (n *Notifier) ensureStreams(ctx context.Context, d string) error {
	for _, sc := range []jetstream.StreamConfig{
		NotifyStreamConfig(n.cfg.Queue, d, n.env.Streams.Replicas),
		DeadLetterStreamConfig(n.cfg.DeadLetter, d, n.env.Streams.Replicas),
	} {
		// Create, never update: the notifier's role may not change a
		// stream (an operator changes one made by an older version).
		_, err := n.js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			_, err = n.js.Stream(ctx, sc.Name)
		}
		if err != nil {
			return fmt.Errorf("notify: stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// Durables lists the durable consumers the notifier reads: the audit
// stream's, and its delivery queue's.
func (n *Notifier) Durables() []consumers.Durable { return DurablesOf(n.env, n.cfg.Queue) }

// DurablesOf lists the durable consumers a notifier of env reads (queue:
// its delivery queue stream, default WRIT_NOTIFY), with their filters,
// without building it: what its connection must be allowed to read, and
// what the guard holds them to.
func DurablesOf(env consumers.Env, queue string) []consumers.Durable {
	d := env.Domain
	kinds := make([]string, len(notifiedKinds))
	for i, k := range notifiedKinds {
		kinds[i] = events.Subject(d, "*", k)
	}
	return []consumers.Durable{
		env.NewDurable(Component, "notifier", cmp.Or(env.Streams.Name, consumers.DefaultStream), DurableNotifier, kinds...),
		env.NewDurable(Component, "notifier-delivery", cmp.Or(queue, DefaultNotifyStream), DurableNotifierDelivery, NotifySubjects(d)),
	}
}

// Component is the notifier's name: in metrics, and as a role
// (internal/access).
const Component = "notifier"

// Run consumes events and deliveries until ctx ends. Notifications never
// stop the pipeline: when its streams cannot be made, the notifier says so
// and tries again, and returns only when ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	d := n.env.Domain
	ds := n.Durables()
	var audit jetstream.ConsumerConfig
	err := restart.Until(ctx, n.log, "notifier start-up", func(ctx context.Context) error {
		err := n.ensureStreams(ctx, d)
		if err == nil {
			audit, err = n.position(ctx, ds[0])
		}
		return err
	})
	if err != nil {
		return nil // ctx ended
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return consumers.Consume(ctx, n.js, n.env.Observer, ds[0], audit, n.env.Workers, n.log, n.handleEvent)
	})
	g.Go(func() error {
		return consumers.Consume(ctx, n.js, n.env.Observer, ds[1], ds[1].Config(), n.cfg.Workers, n.log, n.handleDelivery)
	})
	return g.Wait()
}

// position returns the configuration of the notifier's durable consumer on
// the audit stream (d), which is where the notifier keeps its place: what
// it acked is never notified again, and what came while it was stopped is
// notified when it starts. The first time (a setup that never notified, or
// that turns notifications on now) it starts after the stream's last event:
// people hear of what happens from then on, not of the trail's history.
// Later starts keep the consumer's start as the server holds it (a start
// cannot be changed, only the consumer's place past it).
func (n *Notifier) position(ctx context.Context, d consumers.Durable) (jetstream.ConsumerConfig, error) {
	cfg := d.Config()
	for range 3 {
		c, err := n.js.Consumer(ctx, d.Stream, d.Consumer)
		if err == nil {
			have := c.CachedInfo().Config
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
			return cfg, nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return cfg, fmt.Errorf("notify: consumer %s: %w", d.Consumer, err)
		}
		s, err := n.js.Stream(ctx, d.Stream)
		if err != nil {
			return cfg, fmt.Errorf("notify: stream %s: %w", d.Stream, err)
		}
		from := s.CachedInfo().State.LastSeq + 1
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
		_, err = n.js.CreateConsumer(ctx, d.Stream, cfg)
		switch {
		case err == nil:
			n.log.Info("notifier starts now: events stored before are not notified", consumers.AttrSeq, from)
			return cfg, nil
		case errors.Is(err, jetstream.ErrConsumerExists):
			// Another replica made it first, from its own now: take that.
			cfg = d.Config()
		default:
			return cfg, fmt.Errorf("notify: consumer %s: %w", d.Consumer, err)
		}
	}
	return cfg, fmt.Errorf("notify: consumer %s: made and gone again, three times", d.Consumer)
}

// delivery is a queued webhook call: the rendered payload and its target.
type delivery struct {
	ID        string          `json:"id"`
	Target    string          `json:"target"` // Webhook.id
	Domain    string          `json:"domain"`
	RequestID string          `json:"request_id"`
	Kind      string          `json:"kind"`
	Seq       uint64          `json:"seq"`
	Queued    time.Time       `json:"queued"`
	Body      json.RawMessage `json:"body"`
}

// handleEvent queues the notifications an audit event calls for.
func (n *Notifier) handleEvent(ctx context.Context, m jetstream.Msg) error {
	domain, id, _, err := events.ParseSubject(m.Subject())
	if err != nil {
		return consumers.Terminate("malformed subject")
	}
	md, err := m.Metadata()
	if err != nil {
		return consumers.Terminate("no metadata")
	}
	seq := md.Sequence.Stream
	h, err := n.trail.Load(ctx, domain, id, history.Reach{Seq: seq, Wait: history.HandedWait})
	if errors.Is(err, history.ErrBehind) {
		return consumers.RetryAfter(250*time.Millisecond, err) // a replica without the message yet
	}
	if err != nil {
		return err
	}
	this, ok := h.Record(seq)
	if !ok {
		return consumers.RetryAfter(250*time.Millisecond, errors.New("history does not hold the message yet"))
	}
	now := h.Now
	// The facts as of this event; whether a stage still waits, as of now.
	// The history may be the guard's, whose alerts its own fold judges.
	upTo := h.Until(seq)
	if upTo.Errs[seq] != nil {
		return nil // an event that changed nothing is nothing to tell
	}
	before := h.Until(seq - 1).State
	notes := n.plan(before, upTo.State, h.State, this)
	for _, note := range notes {
		note.notice.Title = note.notice.heading()
		body, err := render(note.webhook.Format, note.notice)
		if err != nil {
			return consumers.Terminate("cannot render: " + err.Error())
		}
		d := delivery{
			ID:     id + "." + strconv.FormatUint(seq, 10) + "." + note.webhook.id(),
			Target: note.webhook.id(), Domain: domain, RequestID: id, Kind: this.Kind.String(),
			Seq: seq, Queued: now, Body: body,
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		msg := &nats.Msg{Subject: notifyPrefix + "." + domain + "." + id, Data: b, Header: nats.Header{}}
		msg.Header.Set(events.HeaderMsgID, d.ID)
		if _, err := n.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(n.cfg.Queue)); err != nil {
			return consumers.RetryAfter(time.Second, err)
		}
	}
	if len(notes) > 0 {
		n.log.Debug("queued notifications", consumers.AttrRequest, id, consumers.AttrKind, this.Kind.String(), consumers.AttrSeq, seq, "count", len(notes))
	}
	return nil
}

type planned struct {
	webhook Webhook
	notice  *Notification
}

// plan says who hears of the event this, and what: before and then are
// the request just before and as of the event, current as of now.
func (n *Notifier) plan(before, then, current request.State, this events.Record) []planned {
	var out []planned
	seen := map[string]bool{}
	add := func(note *Notification, ws ...Webhook) {
		for _, w := range ws {
			if !seen[w.id()] {
				seen[w.id()] = true
				out = append(out, planned{webhook: w, notice: note})
			}
		}
	}
	approvers := func(note *Notification, st events.Stage) {
		for _, g := range st.Groups {
			for _, key := range groupKeys(g, then.Domain) {
				add(note, n.cfg.Groups[key]...)
			}
		}
		for _, p := range st.Principals {
			add(note, n.cfg.Principals[p]...)
		}
	}
	note := newNotification(then, this)
	switch this.Kind {
	case events.KindAlerted:
		// Break-glass use, overdue or denied reviews: loud, to the
		// reviewers and to whoever hears outcomes. Break-glass use opens
		// the review: its reviewers hear what to answer, and by when.
		note.Type = NoticeAlert
		note.waiting(then)
		for _, p := range then.Progress() {
			if !p.Done() {
				approvers(note, p.Flow.Stages[p.Stage])
			}
		}
		add(note, n.cfg.Requesters...)
		return out
	case events.KindEvaluated, events.KindVoted, events.KindEscalated:
		if then.Status == request.StatusDenied && this.Kind == events.KindEvaluated {
			break // denied by policy: no other event follows
		}
		if this.Kind == events.KindEvaluated && !then.Status.IsPending() {
			return nil // allowed: the grant follows (and a break-glass review opens with its alert)
		}
		if !then.Collecting() || !current.Collecting() {
			return nil // decided since, or the review settled
		}
		note.Type = NoticeApprovalNeeded
		note.waiting(then)
		if esc, ok := this.Data.(*events.Escalated); ok {
			// The approvers the escalation adds.
			note.Type = NoticeEscalated
			approvers(note, events.Stage{Groups: esc.Groups, Principals: esc.Principals})
			return out
		}
		// The approvers of every stage that opened with this event: the
		// first stages at evaluation, the next one when a vote completes a
		// stage.
		prev := before.Progress()
		for i, p := range then.Progress() {
			opened := this.Kind == events.KindEvaluated || (i < len(prev) && prev[i].Stage < p.Stage)
			if opened && !p.Done() {
				approvers(note, p.Flow.Stages[p.Stage])
			}
		}
		return out
	case events.KindRefused:
		// Most refusals answer a vote or an ask and end nothing; the
		// issuer's refusal of the decision ends the request.
		if then.Status != request.StatusRefused || before.Status == request.StatusRefused {
			return nil
		}
	default:
	}
	note.Type = NoticeOutcome
	add(note, n.cfg.Requesters...)
	if then.Request != nil {
		add(note, n.cfg.Principals[then.Requester.ID()]...)
	}
	return out
}

// groupKeys are the config keys a flow's group may be written as.
func groupKeys(g, domain string) []string {
	d, name, qualified := strings.Cut(g, "/")
	switch {
	case !qualified:
		return []string{g, domain + "/" + g}
	case d == domain:
		return []string{g, name}
	}
	return []string{g}
}

// Notification is the json payload (NotificationVersion); the Slack
// payload says the same in text and blocks.
type Notification struct {
	Version string `json:"version"`
	Type    string `json:"type"` // approval_needed | escalated | outcome | alert
	// Title is the heading people read first, the Slack message's text:
	// what happened, to what, by whom.
	Title   string        `json:"title"`
	Status  string        `json:"status"`
	Event   NoticeEvent   `json:"event"`
	Request NoticeRequest `json:"request"`
	// Review says the stages are a break-glass grant's review after the
	// fact: the grant was issued, the reviewers judge its use.
	Review      bool          `json:"review,omitempty"`
	Stages      []NoticeStage `json:"stages,omitempty"`
	Deadline    *time.Time    `json:"deadline,omitempty"`
	ApproveHint string        `json:"approve_hint,omitempty"`
	DenyHint    string        `json:"deny_hint,omitempty"`
	Outcome     *NoticeResult `json:"outcome,omitempty"`
}

// NoticeEvent is the audit event notified of.
type NoticeEvent struct {
	Kind   string    `json:"kind"`
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Digest string    `json:"digest"`
}

// NoticeRequest is what was asked, and by whom.
type NoticeRequest struct {
	ID           string            `json:"id"`
	Domain       string            `json:"domain"`
	Requester    string            `json:"requester,omitempty"`     // domain/name
	OriginDomain string            `json:"origin_domain,omitempty"` // the requester's domain
	Action       string            `json:"action,omitempty"`
	Resource     string            `json:"resource,omitempty"`
	Params       map[string]string `json:"params,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	Urgency      string            `json:"urgency,omitempty"`
	Ticket       string            `json:"ticket,omitempty"`
	TTLSeconds   int64             `json:"ttl_seconds,omitempty"` // the grant lifetime asked for
	RequestedAt  time.Time         `json:"requested_at,omitzero"`
	Digest       string            `json:"digest,omitempty"` // of the requested event; a vote names it
}

// NoticeStage is a flow's open stage, waiting for approvers.
type NoticeStage struct {
	Flow       string   `json:"flow"`
	Stage      string   `json:"stage"`
	Index      int      `json:"index"` // from 0
	Of         int      `json:"of"`    // the flow's stages
	Groups     []string `json:"groups,omitempty"`
	Principals []string `json:"principals,omitempty"` // escalations included
	Required   int      `json:"required"`
	AllGroups  bool     `json:"all_groups,omitempty"`
	Approved   []string `json:"approved,omitempty"` // who approved the flow so far, every stage
}

// NoticeResult is what became of the request. A grant is named by the
// hash of its token, never the token.
type NoticeResult struct {
	By     []string `json:"by,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Code is a rejection's code, "policy" for a denial by policy, or an
	// alert's kind (events.AlertBreakGlass, …).
	Code       string     `json:"code,omitempty"`
	TokenHash  string     `json:"token_hash,omitempty"`
	NotBefore  *time.Time `json:"not_before,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	BreakGlass bool       `json:"break_glass,omitempty"`
}

func newNotification(st request.State, this events.Record) *Notification {
	n := &Notification{
		Version: NotificationVersion,
		Status:  st.Status.String(),
		Event:   NoticeEvent{Kind: this.Kind.String(), Seq: this.Seq, Time: this.Envelope.Time, Digest: this.Digest},
		Request: NoticeRequest{ID: st.ID, Domain: st.Domain},
	}
	if r := st.Request; r != nil {
		n.Request = NoticeRequest{
			ID: st.ID, Domain: st.Domain, Requester: st.Requester.ID(), OriginDomain: st.Requester.Domain,
			Action: r.Action, Resource: r.Resource, Params: r.Params, Reason: r.Reason, Urgency: r.Urgency,
			Ticket: r.Ticket, TTLSeconds: r.TTLSeconds, RequestedAt: st.RequestedAt, Digest: st.RequestDigest,
		}
	}
	o := &NoticeResult{}
	switch d := this.Data.(type) {
	case *events.Evaluated:
		if d.Outcome != events.OutcomeDeny {
			return n
		}
		o.Code, o.Reason = "policy", strings.Join(d.Reasons, ", ")
	case *events.Approved:
		o.By = principalIDs(d.Approvers)
	case *events.Denied:
		o.By, o.Reason = principalIDs(d.By), d.Reason
	case *events.Expired:
		o.Reason = "no decision before the deadline, " + d.Deadline.UTC().Format(time.RFC3339)
	case *events.Rejected:
		o.Code, o.Reason = d.Code, d.Reason
	case *events.Revoked:
		o.By, o.Reason = []string{d.By.ID()}, d.Reason
	case *events.Alerted:
		o.Code, o.Reason = d.Alert, d.Reason
	case *events.Refused:
		o.Code, o.Reason = d.Code, d.Reason
	case *events.Granted:
		nb, exp := d.NotBefore, d.ExpiresAt
		o.TokenHash, o.NotBefore, o.ExpiresAt, o.BreakGlass = d.TokenHash, &nb, &exp, d.BreakGlass
	default:
		return n
	}
	n.Outcome = o
	return n
}

// waiting adds what approvers (or a break-glass grant's reviewers) need to
// answer a request that collects votes: its open stages, the deadline and
// how to answer. Nothing for a request that collects none.
func (n *Notification) waiting(st request.State) {
	ev := st.Evaluation
	if ev == nil || !st.Collecting() {
		return
	}
	n.Review = st.ReviewOpen()
	n.Deadline = ev.ExpiresAt
	if d := st.Deadline(); !d.IsZero() {
		n.Deadline = &d
	}
	for _, p := range st.Progress() {
		if p.Done() {
			continue
		}
		s, extra := p.Flow.Stages[p.Stage], p.Extra[p.Stage]
		n.Stages = append(n.Stages, NoticeStage{
			Flow: p.Flow.Name, Stage: s.Name, Index: p.Stage, Of: len(p.Flow.Stages),
			Groups: slices.Concat(s.Groups, extra.Groups), Principals: slices.Concat(s.Principals, extra.Principals),
			Required: s.Required, AllGroups: s.AllGroups, Approved: principalNames(slices.Concat(p.Approvals[:p.Stage+1]...)),
		})
	}
	n.ApproveHint = "writ approve " + st.ID + " --creds <your.creds>"
	n.DenyHint = "writ deny " + st.ID + " --creds <your.creds> --reason <why>"
}

// heading is the notification's Title.
func (n *Notification) heading() string {
	r := n.Request
	who := r.Requester
	if who == "" {
		who = "someone"
	}
	what := r.Action + " " + r.Resource
	switch n.Type {
	case NoticeApprovalNeeded:
		if n.Review {
			return fmt.Sprintf("Review needed: %s used break-glass to %s in %s", who, what, r.Domain)
		}
		return fmt.Sprintf("Approval needed: %s asks to %s in %s", who, what, r.Domain)
	case NoticeEscalated:
		return fmt.Sprintf("Escalated, approval needed: %s asks to %s in %s", who, what, r.Domain)
	case NoticeAlert:
		alert := ""
		if n.Outcome != nil {
			alert = n.Outcome.Code
		}
		switch alert {
		case events.AlertBreakGlass:
			h := fmt.Sprintf("Break-glass used: %s was granted %s in %s at once", who, what, r.Domain)
			if n.Review {
				h += "; review needed"
			}
			return h
		case events.AlertReviewDenied:
			return fmt.Sprintf("Review denied: %s's break-glass %s in %s was denied by its reviewers", who, what, r.Domain)
		case events.AlertReviewOverdue:
			return fmt.Sprintf("Review overdue: nobody reviewed %s's break-glass %s in %s in time", who, what, r.Domain)
		case events.AlertWeakened:
			return fmt.Sprintf("Writ weakened in %s: issuance stopped", r.Domain)
		case events.AlertRestored:
			return fmt.Sprintf("Writ restored in %s: issuance resumed", r.Domain)
		}
		if r.Action == "" {
			return fmt.Sprintf("Alert (%s) in %s", alert, r.Domain)
		}
		return fmt.Sprintf("Alert (%s): %s by %s in %s", alert, what, who, r.Domain)
	}
	return fmt.Sprintf("Request %s: %s (%s by %s in %s)", n.Status, r.ID, what, who, r.Domain)
}

func principalNames(ps []identity.Principal) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID())
	}
	return out
}

func principalIDs(ps []events.PrincipalRef) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID()
	}
	return out
}

// render is the body a target of format f receives.
func render(f WebhookFormat, n *Notification) ([]byte, error) {
	switch f {
	case FormatJSON:
		return json.Marshal(n)
	case FormatSlack:
		return json.Marshal(slackPayload(n))
	}
	return nil, fmt.Errorf("%w: unknown format %s", ErrNotifierConfig, f)
}

// Slack payload types: the subset of Block Kit the notifier writes.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string       `json:"type"`
	Text     *slackText   `json:"text,omitempty"`
	Fields   []*slackText `json:"fields,omitempty"`
	Elements []*slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"` // plain_text | mrkdwn
	Text string `json:"text"`
}

// slackEscape escapes the characters Slack's mrkdwn gives meaning to, and
// bounds the length.
func slackEscape(s string) string {
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slackPayload(n *Notification) slackMessage {
	r := n.Request
	headline := n.Title
	if headline == "" {
		headline = n.heading()
	}
	var fields []*slackText
	field := func(name, value string) {
		if value != "" {
			fields = append(fields, &slackText{Type: "mrkdwn", Text: "*" + name + "*\n" + slackEscape(value)})
		}
	}
	if o := n.Outcome; o != nil && n.Type == NoticeAlert {
		field("Alert", o.Code)
	}
	field("Requester", r.Requester)
	field("Origin domain", r.OriginDomain)
	field("Action", r.Action)
	if r.Resource != "" {
		field("Resource", r.Domain+"/"+r.Resource)
	}
	field("Params", events.FormatParams(r.Params))
	field("Reason", r.Reason)
	field("Ticket", r.Ticket)
	field("Urgency", r.Urgency)
	if r.TTLSeconds > 0 {
		field("TTL", (time.Duration(r.TTLSeconds) * time.Second).String())
	}
	var stages []string
	for _, s := range n.Stages {
		label := fmt.Sprintf("%s / %s (%d of %s)", s.Flow, s.Stage, s.Required, strings.Join(slices.Concat(s.Groups, s.Principals), ", "))
		if s.Of > 1 {
			label += fmt.Sprintf(", stage %d of %d", s.Index+1, s.Of)
		}
		if len(s.Approved) > 0 {
			label += ", approved by " + strings.Join(s.Approved, ", ")
		}
		stages = append(stages, label)
	}
	field("Flow / stage", strings.Join(stages, "; "))
	if n.Deadline != nil {
		field("Deadline", n.Deadline.UTC().Format(time.RFC3339))
	}
	field("Request ID", r.ID)
	field("Digest", r.Digest)
	field("Status", n.Status)
	if o := n.Outcome; o != nil {
		field("By", strings.Join(o.By, ", "))
		field("Why", o.Reason)
		field("Token hash", o.TokenHash)
		if o.ExpiresAt != nil {
			field("Expires", o.ExpiresAt.UTC().Format(time.RFC3339))
		}
		if o.BreakGlass {
			field("Break-glass", "yes")
		}
	}
	header := headline
	if len(header) > 150 { // Slack's bound on a header's text
		header = header[:149] + "…"
	}
	m := slackMessage{Text: headline, Blocks: []slackBlock{{Type: "header", Text: &slackText{Type: "plain_text", Text: header}}}}
	for chunk := range slices.Chunk(fields, 10) { // Slack's bound on a section's fields
		m.Blocks = append(m.Blocks, slackBlock{Type: "section", Fields: chunk})
	}
	if n.ApproveHint != "" {
		m.Blocks = append(m.Blocks, slackBlock{Type: "context", Elements: []*slackText{
			{Type: "mrkdwn", Text: "`" + slackEscape(n.ApproveHint) + "`  or  `" + slackEscape(n.DenyHint) + "`"},
		}})
	}
	return m
}

// Sign returns the HeaderSignature value for body sent at ts.
func Sign(secret []byte, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrSignature is returned by VerifyWebhook for a delivery that does not
// verify: missing or malformed headers, a wrong MAC, or a stale timestamp.
var ErrSignature = errors.New("notify: webhook signature does not verify")

// VerifyWebhook checks a delivery's signature over its exact body and that
// its timestamp is within tolerance of now (a replay defence).
func VerifyWebhook(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no timestamp", ErrSignature)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %s is outside the tolerance", ErrSignature, ts.UTC().Format(time.RFC3339))
	}
	if !hmac.Equal([]byte(h.Get(HeaderSignature)), []byte(Sign(secret, ts, body))) {
		return fmt.Errorf("%w: wrong MAC", ErrSignature)
	}
	return nil
}

// handleDelivery makes one try of a queued webhook call.
func (n *Notifier) handleDelivery(ctx context.Context, m jetstream.Msg) error {
	var d delivery
	if err := json.Unmarshal(m.Data(), &d); err != nil {
		n.log.Warn("dropped a malformed delivery", "subject", m.Subject(), "err", err)
		return consumers.Terminate("malformed delivery")
	}
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	w, ok := n.targets[d.Target]
	if !ok {
		return n.deadLetter(ctx, d, Webhook{}, attempt, 0, errors.New("the target is no longer configured"))
	}
	status, err := n.post(ctx, w, d)
	if err == nil {
		n.log.Debug("delivered", consumers.AttrRequest, d.RequestID, consumers.AttrKind, d.Kind, "target", w.redacted(), "attempt", attempt)
		return nil
	}
	delay := min(n.cfg.Backoff<<min(attempt-1, 30), n.cfg.MaxBackoff)
	permanent := status >= 300 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
	if permanent || attempt > n.cfg.Retries || n.env.Clock().Add(delay).Sub(d.Queued) > n.cfg.MaxElapsed {
		return n.deadLetter(ctx, d, w, attempt, status, err)
	}
	return consumers.RetryAfter(delay, fmt.Errorf("webhook %s, try %d: %w", w.redacted(), attempt, err))
}

// post makes one try; status is the answer's, 0 when there was none.
func (n *Notifier) post(ctx context.Context, w Webhook, d delivery) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, errors.New("cannot make the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "writ-notifier/1")
	req.Header.Set(HeaderDelivery, d.ID)
	req.Header.Set(HeaderEvent, d.Kind)
	if len(n.cfg.Secret) > 0 {
		ts := n.env.Clock()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(HeaderSignature, Sign(n.cfg.Secret, ts, d.Body))
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		// The error text of a failed call names the URL: keep the cause only.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// deadLetter records a delivery given up on, so that it can be acked.
func (n *Notifier) deadLetter(ctx context.Context, d delivery, w Webhook, attempts, status int, cause error) error {
	dl := DeadLetter{
		Version: DeadLetterVersion, Delivery: d.ID, Domain: d.Domain, RequestID: d.RequestID,
		EventKind: d.Kind, EventSeq: d.Seq, Target: "#" + d.Target, Format: w.Format.String(),
		Attempts: attempts, QueuedAt: d.Queued, LastTry: n.env.Clock(), LastStatus: status,
		LastError: cause.Error(), Payload: d.Body,
	}
	if w.URL != "" {
		dl.Target = w.redacted()
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: DeadLetterSubject(d.Domain, d.RequestID), Data: b, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, d.ID+".dead")
	if _, err := n.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(n.cfg.DeadLetter)); err != nil {
		return consumers.RetryAfter(time.Second, fmt.Errorf("dead letter: %w", err))
	}
	n.log.Warn("gave up on a notification", consumers.AttrRequest, d.RequestID, consumers.AttrKind, d.Kind, "target", dl.Target,
		"attempts", attempts, "err", cause)
	return nil
}

// NotifySubjects matches a domain's subjects in the notifier's delivery
// queue.
func NotifySubjects(domain string) string { return notifyPrefix + "." + domain + ".>" }
