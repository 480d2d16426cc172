package notify_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/notify"
	"github.com/writ-dev/writ/request"
)

const (
	secretEnv     = "WRIT_TEST_WEBHOOK_SECRET"
	webhookSecret = "test-webhook-secret-0123456789"
)

// hit is one call a test webhook received.
type hit struct {
	header http.Header
	body   []byte
	at     time.Time
	status int
}

// hook is a loopback webhook that records every call and answers with
// what answer says for the nth call (counting from 1).
type hook struct {
	srv   *httptest.Server
	calls atomic.Int64
	hits  chan hit
}

func newHook(t *testing.T, answer func(n int, r *http.Request) int) *hook {
	t.Helper()
	h := &hook{hits: make(chan hit, 1024)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		at := time.Now()
		n := int(h.calls.Add(1))
		status := http.StatusOK
		if answer != nil {
			status = answer(n, r)
		}
		w.WriteHeader(status)
		h.hits <- hit{header: r.Header.Clone(), body: body, at: at, status: status}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// next waits for the next call, for at most 10s.
func (h *hook) next(t *testing.T) hit {
	t.Helper()
	select {
	case c := <-h.hits:
		return c
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no webhook call within 10s")
		return hit{}
	}
}

// until returns the first call for which ok holds, skipping others.
func (h *hook) until(t *testing.T, ok func(hit) bool) hit {
	t.Helper()
	for {
		if c := h.next(t); ok(c) {
			return c
		}
	}
}

func notice(t *testing.T, c hit) notify.Notification {
	t.Helper()
	var n notify.Notification
	require.NoError(t, json.Unmarshal(c.body, &n), "%s", c.body)
	return n
}

func of(kind, id string) func(hit) bool {
	return func(c hit) bool {
		return c.header.Get(notify.HeaderEvent) == kind && bytes.Contains(c.body, []byte(id))
	}
}

// notify is a notify section for tests: short backoffs, signed payloads.
func notifySection(t *testing.T, groups map[string][]config.Webhook, requesters ...config.Webhook) *config.Notify {
	t.Helper()
	t.Setenv(secretEnv, webhookSecret)
	return &config.Notify{
		SecretEnv: secretEnv, Groups: groups, Requesters: requesters,
		Retries: 2, Backoff: config.Duration(20 * time.Millisecond), MaxBackoff: config.Duration(100 * time.Millisecond),
		MaxElapsed: config.Duration(time.Minute), Timeout: config.Duration(3 * time.Second),
	}
}

func TestNotifierApproversPayloads(t *testing.T) {
	slack, plain := newHook(t, nil), newHook(t, nil)
	e := writtest.Start(t, writtest.Options{Notify: notifySection(t, map[string][]config.Webhook{
		"sre-leads": {{URL: slack.srv.URL + "/services/T0/B0/x", Format: config.FormatSlack}, {URL: plain.srv.URL, Format: config.FormatJSON}},
	})})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "stuck replication", Urgency: "high"})
	r := e.Pending(id)
	require.Equal(t, request.StatusPending, r.State.Status)

	t.Run("json", func(t *testing.T) {
		c := plain.until(t, of("evaluated", id))
		assert.Equal(t, "application/json", c.header.Get("Content-Type"))
		assert.NotEmpty(t, c.header.Get(notify.HeaderDelivery))
		n := notice(t, c)
		assert.Equal(t, notify.NotificationVersion, n.Version)
		assert.Equal(t, notify.NoticeApprovalNeeded, n.Type)
		assert.Equal(t, "pending", n.Status)
		assert.Equal(t, notify.NoticeRequest{
			ID: id, Domain: "acme", Requester: "acme/carol", OriginDomain: "acme", Action: "restart", Resource: "prod/db",
			Reason: "stuck replication", Urgency: "high", RequestedAt: n.Request.RequestedAt, Digest: r.State.RequestDigest,
		}, n.Request)
		assert.Equal(t, []notify.NoticeStage{{Flow: "two-sre-leads", Stage: "leads", Of: 1, Groups: []string{"sre-leads"}, Required: 2}}, n.Stages)
		require.NotNil(t, n.Deadline)
		assert.True(t, n.Deadline.Equal(*r.State.Evaluation.ExpiresAt))
		assert.Equal(t, "writ approve "+id+" --creds <your.creds>", n.ApproveHint)
		assert.Equal(t, "evaluated", n.Event.Kind)
		assert.Nil(t, n.Outcome)

		// The signature covers the timestamp and the exact body.
		now := time.Now()
		secret := []byte(webhookSecret)
		require.NoError(t, notify.VerifyWebhook(secret, c.header, c.body, now, 5*time.Minute))
		tampered := bytes.Replace(c.body, []byte("restart"), []byte("destroy"), 1)
		assert.ErrorIs(t, notify.VerifyWebhook(secret, c.header, tampered, now, 5*time.Minute), notify.ErrSignature)
		assert.ErrorIs(t, notify.VerifyWebhook([]byte("another-secret-0123456789"), c.header, c.body, now, 5*time.Minute), notify.ErrSignature)
		assert.ErrorIs(t, notify.VerifyWebhook(secret, c.header, c.body, now.Add(time.Hour), 5*time.Minute), notify.ErrSignature, "replayed later")
		moved := c.header.Clone()
		moved.Set(notify.HeaderTimestamp, fmt.Sprint(now.Unix()+1))
		assert.ErrorIs(t, notify.VerifyWebhook(secret, moved, c.body, now, 5*time.Minute), notify.ErrSignature, "the timestamp is in the MAC")
	})

	t.Run("slack", func(t *testing.T) {
		c := slack.until(t, of("evaluated", id))
		require.NoError(t, notify.VerifyWebhook([]byte(webhookSecret), c.header, c.body, time.Now(), time.Minute))
		var m struct {
			Text   string `json:"text"`
			Blocks []struct {
				Type     string `json:"type"`
				Text     *struct{ Type, Text string }
				Fields   []struct{ Type, Text string }
				Elements []struct{ Type, Text string }
			} `json:"blocks"`
		}
		require.NoError(t, json.Unmarshal(c.body, &m))
		assert.Equal(t, "Approval needed: acme/carol asks to restart prod/db in acme", m.Text)
		require.GreaterOrEqual(t, len(m.Blocks), 3)
		assert.Equal(t, "header", m.Blocks[0].Type)
		assert.Equal(t, "plain_text", m.Blocks[0].Text.Type)
		var fields []string
		for _, b := range m.Blocks {
			if b.Type == "section" {
				assert.LessOrEqual(t, len(b.Fields), 10, "Slack takes 10 fields a section")
				for _, f := range b.Fields {
					assert.Equal(t, "mrkdwn", f.Type)
					fields = append(fields, f.Text)
				}
			}
		}
		deadline := r.State.Evaluation.ExpiresAt.UTC().Format(time.RFC3339)
		for _, want := range []string{"*Requester*\nacme/carol", "*Origin domain*\nacme", "*Action*\nrestart",
			"*Resource*\nacme/prod/db", "*Reason*\nstuck replication", "*Urgency*\nhigh",
			"*Flow / stage*\ntwo-sre-leads / leads (2 of sre-leads)", "*Deadline*\n" + deadline, "*Request ID*\n" + id} {
			assert.Contains(t, fields, want)
		}
		last := m.Blocks[len(m.Blocks)-1]
		require.Equal(t, "context", last.Type)
		require.Len(t, last.Elements, 1)
		assert.Contains(t, last.Elements[0].Text, "`writ approve "+id+" --creds &lt;your.creds&gt;`")
	})
}

func TestNotifierTellsRequesterOutcomes(t *testing.T) {
	h := newHook(t, nil)
	e := writtest.Start(t, writtest.Options{Notify: notifySection(t, nil, config.Webhook{URL: h.srv.URL, Format: config.FormatJSON})})

	t.Run("granted", func(t *testing.T) {
		id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web", TTL: 5 * time.Minute})
		r := e.Settle(id)
		require.Equal(t, request.StatusGranted, r.State.Status)
		c := h.until(t, of("granted", id))
		n := notice(t, c)
		assert.Equal(t, notify.NoticeOutcome, n.Type)
		assert.Equal(t, "granted", n.Status)
		assert.Equal(t, "acme/deploy-bot", n.Request.Requester)
		require.NotNil(t, n.Outcome)
		assert.Equal(t, r.State.Grant.TokenHash, n.Outcome.TokenHash)
		require.NotNil(t, n.Outcome.ExpiresAt)
		assert.True(t, n.Outcome.ExpiresAt.Equal(r.State.Grant.ExpiresAt))
		token, err := client.OpenGrant(r.State, e.Identity("deploy-bot"))
		require.NoError(t, err)
		assert.NotContains(t, string(c.body), token, "never the token")
		assert.NotContains(t, string(c.body), r.State.Grant.Sealed, "nor its sealed form")
		assert.NotContains(t, string(c.body), webhookSecret)
	})

	t.Run("denied by an approver", func(t *testing.T) {
		id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/api"})
		e.Pending(id)
		e.Vote("alice", id, false, "release freeze")
		require.Equal(t, request.StatusDenied, e.Settle(id).State.Status)
		n := notice(t, h.until(t, of("denied", id)))
		assert.Equal(t, "denied", n.Status)
		assert.Equal(t, []string{"acme/alice"}, n.Outcome.By)
		assert.Equal(t, "release freeze", n.Outcome.Reason)
	})

	t.Run("denied by policy", func(t *testing.T) {
		id := e.Request("carol", client.Spec{Action: "drop-database", Resource: "prod/db"})
		require.Equal(t, request.StatusDenied, e.Settle(id).State.Status)
		n := notice(t, h.until(t, of("evaluated", id)))
		assert.Equal(t, notify.NoticeOutcome, n.Type)
		assert.Equal(t, "denied", n.Status)
		assert.Equal(t, "no-prod-database-drop", n.Outcome.Reason)
	})

	t.Run("refused by the issuer", func(t *testing.T) {
		// Last, as it locks carol. Approved after the requester was
		// locked, the grant is refused by the issuer, which ends the
		// request: the requester hears why.
		id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/api"})
		e.Pending(id)
		locked := lock(t, e, "bob", events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, false)
		require.NotNil(t, locked.Series.Lock().Done)
		e.Vote("alice", id, true, "")
		e.Vote("bob", id, true, "")
		require.Equal(t, request.StatusRefused, e.Settle(id).State.Status)
		n := notice(t, h.until(t, of("refused", id)))
		assert.Equal(t, notify.NoticeOutcome, n.Type)
		assert.Equal(t, "refused", n.Status)
		require.NotNil(t, n.Outcome)
		assert.Equal(t, "locked", n.Outcome.Code)
		assert.Contains(t, n.Outcome.Reason, "acme/carol")
	})
}

func TestNotifierRetriesOn500(t *testing.T) {
	h := newHook(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	cfg := notifySection(t, nil, config.Webhook{URL: h.srv.URL, Format: config.FormatJSON})
	cfg.Retries = 3
	e := writtest.Start(t, writtest.Options{Notify: cfg})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	e.Settle(id)

	var calls []hit
	for len(calls) < 3 {
		calls = append(calls, h.next(t))
	}
	assert.Equal(t, []int{500, 500, 200}, []int{calls[0].status, calls[1].status, calls[2].status})
	for _, c := range calls[1:] {
		assert.Equal(t, calls[0].header.Get(notify.HeaderDelivery), c.header.Get(notify.HeaderDelivery), "one delivery id across tries")
		assert.Equal(t, calls[0].body, c.body)
		assert.NoError(t, notify.VerifyWebhook([]byte(webhookSecret), c.header, c.body, time.Now(), time.Minute), "each try is signed afresh")
	}
	assert.GreaterOrEqual(t, calls[2].at.Sub(calls[0].at), 60*time.Millisecond, "backoff: 20ms then 40ms")

	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	dl, err := js.Stream(t.Context(), notify.DefaultDeadLetterStream)
	require.NoError(t, err)
	info, err := dl.Info(t.Context())
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "no dead letter for a delivery that succeeded")
}

func TestNotifierDeadLettersAfterLastRetry(t *testing.T) {
	h := newHook(t, func(int, *http.Request) int { return http.StatusBadGateway })
	const credential = "B0SECRETPART"
	cfg := notifySection(t, nil, config.Webhook{URL: h.srv.URL + "/services/T0/" + credential, Format: config.FormatJSON})
	cfg.Retries = 2
	e := writtest.Start(t, writtest.Options{Notify: cfg})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	e.Settle(id)

	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	var raw *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		// The notifier makes its streams as it starts, alongside the rest.
		dl, err := js.Stream(t.Context(), notify.DefaultDeadLetterStream)
		if err != nil {
			return false
		}
		raw, err = dl.GetLastMsgForSubject(t.Context(), notify.DeadLetterSubject(writtest.Domain, id))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "a dead letter after the last try")
	var d notify.DeadLetter
	require.NoError(t, json.Unmarshal(raw.Data, &d))
	assert.Equal(t, notify.DeadLetterVersion, d.Version)
	assert.Equal(t, id, d.RequestID)
	assert.Equal(t, "granted", d.EventKind)
	assert.Equal(t, 3, d.Attempts, "the first try and two retries")
	assert.Equal(t, http.StatusBadGateway, d.LastStatus)
	assert.Equal(t, "json", d.Format)
	assert.NotContains(t, string(raw.Data), credential, "a webhook URL is a credential: never recorded")
	assert.True(t, strings.HasPrefix(d.Target, h.srv.URL+"/…#"), d.Target)
	var n notify.Notification
	require.NoError(t, json.Unmarshal(d.Payload, &n), "the payload, for a replay")
	assert.Equal(t, id, n.Request.ID)

	// The delivery is acked: nothing is pending and nothing more is tried.
	cons, err := js.Consumer(t.Context(), notify.DefaultNotifyStream, notify.DurableNotifierDelivery+writtest.Domain)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, 5*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // several backoffs
	assert.EqualValues(t, 3, h.calls.Load())
}

func TestNotifierHangingWebhookDoesNotBlockPipeline(t *testing.T) {
	release := make(chan struct{})
	var inFlight atomic.Int64
	entered := make(chan struct{}, 16)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	ok := newHook(t, nil)
	cfg := notifySection(t, map[string][]config.Webhook{"sre-leads": {{URL: hang.URL, Format: config.FormatSlack}}},
		config.Webhook{URL: hang.URL, Format: config.FormatJSON}, config.Webhook{URL: ok.srv.URL, Format: config.FormatJSON})
	cfg.Timeout = config.Duration(10 * time.Second)
	e := writtest.Start(t, writtest.Options{Notify: cfg})
	t.Cleanup(func() { close(release) }) // before the pipeline stops

	// A review request: its approvers' webhook hangs.
	pending := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(pending)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the hanging webhook was never called")
	}

	// An auto-approved request is granted while that call still hangs, and
	// another webhook hears of it while both calls to the hanging one do.
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	r := e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	assert.Positive(t, inFlight.Load(), "granted while the webhook hangs")
	c := ok.until(t, of("granted", id))
	assert.Equal(t, "granted", notice(t, c).Status)
	assert.Positive(t, inFlight.Load(), "delivered elsewhere while the webhook hangs")
	select {
	case <-release:
		t.Fatal("released early")
	default:
	}
}

// TestNotifierLatency measures the time from an evaluated event (its
// envelope time, stamped by the policy component) to the approvers'
// webhook receiving it, one review request at a time.
func TestNotifierLatency(t *testing.T) {
	const n = 100
	h := newHook(t, nil)
	e := writtest.Start(t, writtest.Options{Notify: notifySection(t, map[string][]config.Webhook{
		"sre-leads": {{URL: h.srv.URL, Format: config.FormatJSON}},
	})})
	carol := e.Identity("carol")
	spec := client.Spec{Domain: writtest.Domain, Action: "restart", Resource: "prod/db"}
	lat := make([]time.Duration, 0, n)
	for range n {
		id, err := e.Client.Request(t.Context(), carol, spec)
		require.NoError(t, err)
		c := h.until(t, of("evaluated", id))
		lat = append(lat, c.at.Sub(notice(t, c).Event.Time))
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(math.Ceil(q*float64(len(lat))))-1] } // nearest rank
	t.Logf("evaluated → webhook delivery over %d requests: p50 %s, p99 %s, max %s", n, p(0.50), p(0.99), lat[len(lat)-1])
	assert.Positive(t, p(0.50))
}

func TestNotifyConfig(t *testing.T) {
	hook := config.Webhook{URL: "https://hooks.example.com/x", Format: config.FormatJSON}
	for _, tc := range []struct {
		name string
		n    config.Notify
		want string // "" for valid
	}{
		{"valid", config.Notify{SecretEnv: "S", Requesters: []config.Webhook{hook}}, ""},
		{"slack needs no secret", config.Notify{Groups: map[string][]config.Webhook{"sre-leads": {{URL: "https://h/x", Format: "slack"}}}}, ""},
		{"json needs a secret", config.Notify{Requesters: []config.Webhook{hook}}, "secret_env"},
		{"unknown format", config.Notify{Requesters: []config.Webhook{{URL: "https://h/x", Format: "xml"}}}, `format "xml"`},
		{"relative url", config.Notify{Requesters: []config.Webhook{{URL: "/x", Format: "slack"}}}, "absolute http(s) URL"},
		{"bad principal", config.Notify{Principals: map[string][]config.Webhook{"alice": {{URL: "https://h", Format: "slack"}}}}, `"domain/name"`},
		{"timeout too long", config.Notify{Timeout: config.Duration(time.Minute)}, "timeout"},
		{"negative retries", config.Notify{Retries: -1}, "retries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.n.Validate()
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
		})
	}

	n := &config.Notify{SecretEnv: "S", Requesters: []config.Webhook{hook}}
	_, err := pipeline.NotifierConfig(n, func(string) string { return "" })
	assert.ErrorContains(t, err, "$S must hold the webhook secret")
	c, err := pipeline.NotifierConfig(n, func(string) string { return webhookSecret })
	require.NoError(t, err)
	assert.Equal(t, 5, c.Retries, "defaults")
	assert.Equal(t, []notify.Webhook{{URL: hook.URL, Format: notify.FormatJSON}}, c.Requesters)

	var none *config.Notify
	assert.True(t, none.Empty())
	assert.True(t, (&config.Notify{Groups: map[string][]config.Webhook{"x": nil}}).Empty())
}

// A lead, then security; the lead stage escalates to bob after 1s.
const notifierStagedFlows = `{"flows": {"two-sre-leads": {"stages": [
  {"name": "lead", "principals": ["acme/alice"], "required": 1, "deadline": "5s",
   "escalate": {"after": "1s", "principals": ["acme/bob"]}},
  {"name": "security", "principals": ["acme/bob"], "required": 1, "deadline": "5s"}
]}}}`

func TestNotifierStagesAndEscalation(t *testing.T) {
	alice, bob := newHook(t, nil), newHook(t, nil)
	cfg := notifySection(t, nil)
	cfg.Principals = map[string][]config.Webhook{
		"acme/alice": {{URL: alice.srv.URL, Format: config.FormatJSON}},
		"acme/bob":   {{URL: bob.srv.URL, Format: config.FormatJSON}},
	}
	e := writtest.Start(t, writtest.Options{Flows: notifierStagedFlows, Notify: cfg})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})

	// The first stage opens: its approver hears of it.
	n := notice(t, alice.until(t, of("evaluated", id)))
	assert.Equal(t, notify.NoticeApprovalNeeded, n.Type)
	require.Len(t, n.Stages, 1)
	assert.Equal(t, notify.NoticeStage{Flow: "two-sre-leads", Stage: "lead", Index: 0, Of: 2, Principals: []string{"acme/alice"}, Required: 1}, n.Stages[0])

	// It escalates: the added approver hears of it.
	n = notice(t, bob.until(t, of("escalated", id)))
	assert.Equal(t, notify.NoticeEscalated, n.Type)
	assert.Equal(t, []string{"acme/alice", "acme/bob"}, n.Stages[0].Principals)

	// Alice approves: the second stage opens, and its approver hears of it.
	e.Vote("alice", id, true, "")
	n = notice(t, bob.until(t, of("voted", id)))
	assert.Equal(t, notify.NoticeApprovalNeeded, n.Type)
	assert.Equal(t, "security", n.Stages[0].Stage)
	assert.Equal(t, 1, n.Stages[0].Index)
	assert.Equal(t, []string{"acme/alice"}, n.Stages[0].Approved)
	e.Vote("bob", id, true, "")
	require.Equal(t, request.StatusGranted, e.Settle(id).State.Status)
}

// Break-glass use is announced to the reviewers and to the requesters' hook.
func TestNotifierAlertsBreakGlass(t *testing.T) {
	h := newHook(t, nil)
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "1h"}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows,
		Notify: notifySection(t, nil, config.Webhook{URL: h.srv.URL, Format: config.FormatJSON})})
	id, _ := breakGlass(t, e)
	n := notice(t, h.until(t, of("alerted", id)))
	assert.Equal(t, notify.NoticeAlert, n.Type)
	require.NotNil(t, n.Outcome)
	assert.Equal(t, "break-glass", n.Outcome.Code)
	assert.Contains(t, n.Outcome.Reason, "INC-7")
}

// drain waits until the notifier has handled every event it was given and
// made every webhook call it queued: after it, the hooks have heard all
// they will hear of what came before (the barrier of the tests below).
func drain(t *testing.T, e *writtest.Env) {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	for _, c := range []struct{ stream, durable string }{
		{consumers.DefaultStream, notify.DurableNotifier + writtest.Domain},
		{notify.DefaultNotifyStream, notify.DurableNotifierDelivery + writtest.Domain},
	} {
		cons, err := js.Consumer(t.Context(), c.stream, c.durable)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			info, err := cons.Info(t.Context())
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
		}, 10*time.Second, 10*time.Millisecond, "%s drained", c.durable)
	}
}

// tally keeps every call a hook receives, by request id, and checks that
// no delivery is made twice.
type tally struct {
	h          *hook
	deliveries map[string]bool
	got        map[string][]string // request id → kinds notified
}

func (y *tally) take(t *testing.T, c hit) {
	t.Helper()
	n := notice(t, c)
	id := c.header.Get(notify.HeaderDelivery)
	assert.False(t, y.deliveries[id], "delivery %s made twice", id)
	y.deliveries[id] = true
	y.got[n.Request.ID] = append(y.got[n.Request.ID], n.Event.Kind)
}

// await takes calls until one tells of kind for request id.
func (y *tally) await(t *testing.T, kind, id string) {
	t.Helper()
	for !slices.Contains(y.got[id], kind) {
		y.take(t, y.h.next(t))
	}
}

// rest takes the calls received so far and returns all taken since the
// last reset.
func (y *tally) rest(t *testing.T) map[string][]string {
	t.Helper()
	for {
		select {
		case c := <-y.h.hits:
			y.take(t, c)
		default:
			return y.got
		}
	}
}

// Turning notifications on for a setup that has a history tells of what
// happens from then on, not of that history; stopped and started again,
// the notifier tells of what came in between, and nothing twice.
func TestNotifierStartsNowAndResumes(t *testing.T) {
	e := writtest.Start(t, writtest.Options{}) // no notify section: no notifier
	grant := func() string {
		id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
		require.Equal(t, request.StatusGranted, e.Settle(id).State.Status)
		return id
	}
	var old []string
	for range 5 {
		old = append(old, grant())
	}
	denied := e.Request("carol", client.Spec{Action: "drop-database", Resource: "prod/db"})
	require.Equal(t, request.StatusDenied, e.Settle(denied).State.Status)
	old = append(old, denied)

	// Notifications turned on: the notifier starts.
	h := newHook(t, nil)
	y := &tally{h: h, deliveries: map[string]bool{}, got: map[string][]string{}}
	e.Runtime.Config.Notify = notifySection(t, nil, config.Webhook{URL: h.srv.URL, Format: config.FormatJSON})
	stop := e.ServeOnly(pipeline.Notifier)
	first := grant()
	y.await(t, "granted", first)
	drain(t, e)
	assert.Equal(t, map[string][]string{first: {"granted"}}, y.rest(t), "only what came after it started")

	// Stopped, events come; started again, it tells of them.
	stop()
	var missed []string
	for range 3 {
		missed = append(missed, grant())
	}
	e.ServeOnly(pipeline.Notifier)
	last := grant()
	y.await(t, "granted", last)
	drain(t, e)
	want := map[string][]string{first: {"granted"}, last: {"granted"}}
	for _, id := range missed {
		want[id] = []string{"granted"}
	}
	assert.Equal(t, want, y.rest(t), "what came while it was stopped, and nothing again")
}

// slackMsg is the part of a Slack payload the tests read.
type slackMsg struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type     string `json:"type"`
		Text     *struct{ Type, Text string }
		Fields   []struct{ Type, Text string }
		Elements []struct{ Type, Text string }
	} `json:"blocks"`
}

// fields lists a Slack payload's section fields.
func (m slackMsg) fields() []string {
	var out []string
	for _, b := range m.Blocks {
		for _, f := range b.Fields {
			out = append(out, f.Text)
		}
	}
	return out
}

func slackOf(t *testing.T, c hit) slackMsg {
	t.Helper()
	var m slackMsg
	require.NoError(t, json.Unmarshal(c.body, &m), "%s", c.body)
	return m
}

// Both payloads carry what 'writ approvals list' shows an approver: who
// asks, what, the parameters, reason, ticket, urgency, lifetime, the
// digest a vote binds to, and the deadline.
func TestNotifierMessagesCarryWhatTheCLIShows(t *testing.T) {
	slack, plain := newHook(t, nil), newHook(t, nil)
	e := writtest.Start(t, writtest.Options{Notify: notifySection(t, map[string][]config.Webhook{
		"sre-leads": {{URL: slack.srv.URL, Format: config.FormatSlack}, {URL: plain.srv.URL, Format: config.FormatJSON}},
	})})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "stuck replication", Urgency: "high",
		Ticket: "INC-42", TTL: 10 * time.Minute, Params: map[string]string{"replica": "db-2", "mode": "rolling <fast>"}})
	r := e.Pending(id)
	deadline := r.State.Deadline()
	require.False(t, deadline.IsZero())

	n := notice(t, plain.until(t, of("evaluated", id)))
	assert.Equal(t, "Approval needed: acme/carol asks to restart prod/db in acme", n.Title)
	assert.Equal(t, map[string]string{"replica": "db-2", "mode": "rolling <fast>"}, n.Request.Params)
	assert.Equal(t, "INC-42", n.Request.Ticket)
	assert.Equal(t, "high", n.Request.Urgency)
	assert.Equal(t, "stuck replication", n.Request.Reason)
	assert.EqualValues(t, 600, n.Request.TTLSeconds)
	assert.Equal(t, r.State.RequestDigest, n.Request.Digest, "the digest a vote binds to")
	require.NotNil(t, n.Deadline)
	assert.True(t, n.Deadline.Equal(deadline))

	m := slackOf(t, slack.until(t, of("evaluated", id)))
	assert.Equal(t, n.Title, m.Text)
	for _, want := range []string{
		"*Requester*\nacme/carol", "*Action*\nrestart", "*Resource*\nacme/prod/db",
		"*Params*\n" + `mode="rolling &lt;fast&gt;" replica="db-2"`, "*Reason*\nstuck replication",
		"*Ticket*\nINC-42", "*Urgency*\nhigh", "*TTL*\n10m0s", "*Digest*\n" + r.State.RequestDigest,
		"*Deadline*\n" + deadline.UTC().Format(time.RFC3339),
	} {
		assert.Contains(t, m.fields(), want)
	}
}

// Break-glass use is an alert with its own heading; it opens the review,
// and the reviewers hear what to answer and by when. A review stage that
// opens later is announced to its reviewers; an overdue review is an alert
// of its own.
func TestNotifierBreakGlassReviewers(t *testing.T) {
	alice, bob, ops := newHook(t, nil), newHook(t, nil), newHook(t, nil)
	cfg := notifySection(t, nil, config.Webhook{URL: ops.srv.URL, Format: config.FormatSlack})
	cfg.Principals = map[string][]config.Webhook{
		"acme/alice": {{URL: alice.srv.URL, Format: config.FormatJSON}},
		"acme/bob":   {{URL: bob.srv.URL, Format: config.FormatJSON}},
	}
	flows := `{"flows": {"two-sre-leads": {"stages": [
	  {"name": "lead", "principals": ["acme/alice"], "required": 1, "deadline": "1h"},
	  {"name": "security", "principals": ["acme/bob"], "required": 1, "deadline": "2s"}]}}}`
	e := writtest.Start(t, writtest.Options{Policies: breakGlassPolicies, Flows: flows, Notify: cfg})
	id, r := breakGlass(t, e)
	const heading = "Break-glass used: acme/carol was granted restart prod/db in acme at once; review needed"

	// The first review stage's reviewer: the alert, with what to answer.
	n := notice(t, alice.until(t, of("alerted", id)))
	assert.Equal(t, notify.NoticeAlert, n.Type)
	assert.Equal(t, heading, n.Title)
	assert.True(t, n.Review)
	assert.Equal(t, []notify.NoticeStage{{Flow: "two-sre-leads", Stage: "lead", Of: 2, Principals: []string{"acme/alice"}, Required: 1}}, n.Stages)
	require.NotNil(t, n.Deadline)
	assert.True(t, n.Deadline.Equal(r.State.Deadline()))
	assert.Equal(t, "writ approve "+id+" --creds <your.creds>", n.ApproveHint)
	assert.Equal(t, "INC-7", n.Request.Ticket)
	assert.Equal(t, events.AlertBreakGlass, n.Outcome.Code)

	// Whoever hears outcomes hears the alert under its own heading, not
	// "Request granted".
	m := slackOf(t, ops.until(t, of("alerted", id)))
	assert.Equal(t, heading, m.Text)
	assert.Contains(t, m.fields(), "*Alert*\nbreak-glass")

	// Alice's review opens the second stage: Bob hears of it.
	e.Vote("alice", id, true, "was needed")
	n = notice(t, bob.until(t, of("voted", id)))
	assert.Equal(t, notify.NoticeApprovalNeeded, n.Type)
	assert.Equal(t, "Review needed: acme/carol used break-glass to restart prod/db in acme", n.Title)
	assert.True(t, n.Review)
	require.Len(t, n.Stages, 1)
	assert.Equal(t, "security", n.Stages[0].Stage)
	assert.Equal(t, []string{"acme/alice"}, n.Stages[0].Approved)

	// Bob does not answer in time: the overdue alert.
	n = notice(t, bob.until(t, of("alerted", id)))
	assert.Equal(t, notify.NoticeAlert, n.Type)
	assert.Equal(t, events.AlertReviewOverdue, n.Outcome.Code)
	assert.Equal(t, "Review overdue: nobody reviewed acme/carol's break-glass restart prod/db in acme in time", n.Title)
	assert.Empty(t, n.Stages, "the review is closed")
	m = slackOf(t, ops.until(t, func(c hit) bool { return bytes.Contains(c.body, []byte("Review overdue")) }))
	assert.Contains(t, m.Text, "Review overdue")
}

// Every alert kind has a heading of its own; one the notifier does not
// know (a newer pipeline's) gets a generic one, never "Request granted".
func TestNotifierAlertHeadings(t *testing.T) {
	req := notify.NoticeRequest{ID: "01", Domain: "acme", Requester: "acme/carol", Action: "restart", Resource: "prod/db"}
	for _, tc := range []struct{ alert, want string }{
		{events.AlertBreakGlass, "Break-glass used: acme/carol was granted restart prod/db in acme at once"},
		{events.AlertReviewOverdue, "Review overdue: nobody reviewed acme/carol's break-glass restart prod/db in acme in time"},
		{events.AlertReviewDenied, "Review denied: acme/carol's break-glass restart prod/db in acme was denied by its reviewers"},
		{events.AlertWeakened, "Writ weakened in acme: issuance stopped"},
		{events.AlertRestored, "Writ restored in acme: issuance resumed"},
		{"something-new", "Alert (something-new): restart prod/db by acme/carol in acme"},
	} {
		t.Run(tc.alert, func(t *testing.T) {
			n := &notify.Notification{Type: notify.NoticeAlert, Status: "granted", Request: req, Outcome: &notify.NoticeResult{Code: tc.alert}}
			assert.Equal(t, tc.want, notify.Heading(n))
			b, err := notify.Render(notify.FormatSlack, n)
			require.NoError(t, err)
			var m slackMsg
			require.NoError(t, json.Unmarshal(b, &m))
			assert.Equal(t, tc.want, m.Text)
			assert.NotContains(t, m.Text, "Request granted")
		})
	}
	guard := &notify.Notification{Type: notify.NoticeAlert, Request: notify.NoticeRequest{ID: "g", Domain: "acme"}, Outcome: &notify.NoticeResult{Code: "other"}}
	assert.Equal(t, "Alert (other) in acme", notify.Heading(guard), "no request: no action to name")
}
