package consumers_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

// TestBadInputIsRejected publishes requests that must never be evaluated,
// one per reason, on one running pipeline: each gets a rejected event with
// its own code, and after each the pipeline still grants a good request.
func TestBadInputIsRejected(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	bot := e.Identity("deploy-bot")
	account, err := identity.LoadSeed(filepath.Join(e.Dir, "keys", "account.nk"))
	require.NoError(t, err)

	// A principal of an account the bundle does not list, claiming acme.
	stranger := issue(t, mustAccount(t), identity.UserSpec{Domain: writtest.Domain, Name: "deploy-bot", Groups: []string{"bots"}})
	// A principal of a domain the bundle does not know at all.
	foreigner := issue(t, mustAccount(t), identity.UserSpec{Domain: "evil", Name: "deploy-bot", Groups: []string{"bots"}})
	// The domain's own account, but an identity that expired an hour ago.
	expired := issue(t, account, identity.UserSpec{
		Domain: writtest.Domain, Name: "deploy-bot", Groups: []string{"bots"},
		TTL: time.Minute, Now: time.Now().Add(-time.Hour),
	})

	deploy := client.Spec{Action: "deploy", Resource: "staging/web"}
	cases := []struct {
		name string
		code string
		msg  func(t *testing.T, id string) events.Outgoing
	}{
		{"malformed JSON", "malformed", func(t *testing.T, id string) events.Outgoing {
			out := sealRequest(t, bot, id, deploy, nil)
			// Cut the body in half, and sign what is left: only the JSON is wrong.
			return resign(t, bot.Key, out, out.Body[:len(out.Body)/2])
		}},
		{"wrong schema", "schema", func(t *testing.T, id string) events.Outgoing {
			out, err := events.Seal(events.Draft{
				Domain: writtest.Domain, RequestID: id, Kind: events.KindRequested,
				Source: "writ://acme/principals/deploy-bot", Time: time.Now(),
				Data: map[string]any{"prev": "", "action": "deploy", "resource": "staging/web", "colour": "blue"},
			}, bot.Key)
			require.NoError(t, err)
			return out
		}},
		{"oversized body", "oversized", func(t *testing.T, id string) events.Outgoing {
			out := sealRequest(t, bot, id, deploy, func(d *events.Requested) {
				d.Reason = strings.Repeat("x", events.DefaultMaxBody+1024)
			})
			require.Greater(t, len(out.Body), events.DefaultMaxBody)
			require.Less(t, len(out.Body), 1<<20, "must fit the server's max payload to reach the checker")
			return out
		}},
		{"unsigned", "unsigned", func(t *testing.T, id string) events.Outgoing {
			out := sealRequest(t, bot, id, deploy, nil)
			out.Signature = ""
			return out
		}},
		{"body altered after signing", "bad-signature", func(t *testing.T, id string) events.Outgoing {
			out := sealRequest(t, bot, id, deploy, nil)
			altered := strings.Replace(string(out.Body), `"staging/web"`, `"staging/wex"`, 1)
			require.NotEqual(t, string(out.Body), altered)
			out.Body = []byte(altered)
			return out
		}},
		{"identity from an untrusted account key", "untrusted-key", func(t *testing.T, id string) events.Outgoing {
			return sealRequest(t, stranger, id, deploy, nil)
		}},
		{"identity of an unknown domain", "unknown-domain", func(t *testing.T, id string) events.Outgoing {
			return sealRequest(t, foreigner, id, deploy, nil)
		}},
		{"expired identity", "identity-expired", func(t *testing.T, id string) events.Outgoing {
			return sealRequest(t, expired, id, deploy, nil)
		}},
		{"signed for another domain, replayed here", "wrong-domain", func(t *testing.T, id string) events.Outgoing {
			return sealRequest(t, bot, id, deploy, func(d *events.Requested) { d.Domain = "beta" })
		}},
		{"a resource with a .. segment", "schema", func(t *testing.T, id string) events.Outgoing {
			return sealRequest(t, bot, id, deploy, func(d *events.Requested) { d.Resource = "staging/../prod/db" })
		}},
		{"a holder key with a bad checksum", "bad-holder-key", func(t *testing.T, id string) events.Outgoing {
			return sealRequest(t, bot, id, deploy, func(d *events.Requested) { d.HolderXKey = "X" + strings.Repeat("A", 55) })
		}},
	}
	var bad []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := newID(t)
			bad = append(bad, id)
			seq := publish(t, e, tc.msg(t, id))

			r := waitFor(t, e, id, func(s request.State) bool { return s.Status.IsTerminal() })
			require.Equal(t, request.StatusRejected, r.State.Status)
			assert.Equal(t, []string{"requested", "rejected"}, writtest.Kinds(r))
			rej := r.Records[1].Data.(*events.Rejected)
			assert.Equal(t, tc.code, rej.Code)
			assert.Equal(t, seq, rej.RefSeq)
			assert.Equal(t, r.Records[0].Digest, rej.RefDigest)
			assert.NotEmpty(t, rej.Reason)
			assert.Equal(t, identity.RolePolicy, r.Records[1].Role, "the policy rejects")

			assertStillServes(t, e, bot)
			// The good request went the whole way through after the bad one;
			// the bad one's history must not have moved since.
			r = load(t, e, id)
			assert.Equal(t, []string{"requested", "rejected"}, writtest.Kinds(r))
		})
	}

	forgers := []struct {
		name string
		key  nkeys.KeyPair
	}{
		{"by the policy key", e.Runtime.PolicyKey},
		{"by an unknown server key", mustServerKey(t)},
	}
	for _, tc := range forgers {
		t.Run("forged approved "+tc.name, func(t *testing.T) {
			id := submit(t, e, e.Identity("carol"), client.Spec{Action: "restart", Resource: "prod/db"})
			r := waitFor(t, e, id, func(s request.State) bool { return s.Status.IsPending() })

			forged, err := events.Seal(events.Draft{
				Domain: writtest.Domain, RequestID: id, Kind: events.KindApproved,
				Source: "writ://acme/approval", Time: time.Now(),
				Data: &events.Approved{Prev: r.State.LastDigest, Approvers: []events.PrincipalRef{
					{Domain: writtest.Domain, Name: "alice"}, {Domain: writtest.Domain, Name: "bob"},
				}},
			}, tc.key)
			require.NoError(t, err)
			// A message id of the forger's own: squatting the approval's
			// id is TestForgedEventSquatsMessageID.
			forged.MsgID += ".forged"
			seq := publish(t, e, forged)

			r = waitFor(t, e, id, func(s request.State) bool { return s.Answered[seq] != "" })
			assert.Equal(t, "signer-not-entitled", r.State.Answered[seq])
			assert.Equal(t, request.StatusPending, r.State.Status, "a forged decision changes nothing")
			require.Equal(t, []string{"requested", "evaluated", "approved", "refused"}, writtest.Kinds(r))
			ref := r.Records[3].Data.(*events.Refused)
			assert.Equal(t, seq, ref.RefSeq)
			assert.Equal(t, "approved", ref.RefKind)
			assert.Equal(t, forged.Signer, ref.RefSigner)

			assertStillServes(t, e, bot)
			r = load(t, e, id)
			require.Equal(t, request.StatusPending, r.State.Status, "still waiting for real approvers")

			first := vote(t, e, e.Identity("alice"), id, true)
			waitFor(t, e, id, func(s request.State) bool { return s.VoteAnswered(first) })
			vote(t, e, e.Identity("bob"), id, true)
			r = waitFor(t, e, id, client.Settled)
			require.Equal(t, request.StatusGranted, r.State.Status)
			assert.Equal(t, []string{"requested", "evaluated", "approved", "refused", "voted", "counted", "voted", "approved", "granted"}, writtest.Kinds(r))
			assert.Equal(t, r.Records[7].Digest, r.State.Grant.Evidence, "the grant rests on the real approval")
			assert.Equal(t, identity.RoleApproval, r.Records[7].Role)
		})
	}

	// Whatever happened above, the stream holds no grant for a bad request.
	granted := grantedIDs(t, e)
	for _, id := range bad {
		assert.NotContains(t, granted, id)
	}
}

// TestForgedEventSquatsMessageID publishes a forged event under the
// readable message id of the event the entitled component is about to emit
// (<request-id>.<kind>, events.MsgID), before the component emits it. The
// forgery must be refused and change nothing; the real event must still be
// appended and the request must still complete.
func TestForgedEventSquatsMessageID(t *testing.T) {
	cases := []struct {
		kind  events.Kind
		who   string
		spec  client.Spec
		votes bool
	}{
		// Squatted before an approver answers: her vote is swallowed, the
		// client reports success, and the request stays "pending".
		{events.KindVoted, "carol", client.Spec{Action: "restart", Resource: "prod/db"}, true},
		// Squatted before the policy evaluates: the request stays "requested".
		{events.KindEvaluated, "deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}, false},
		// Squatted before the approvers answer: it stays "pending" until it expires.
		{events.KindApproved, "carol", client.Spec{Action: "restart", Resource: "prod/db"}, true},
		// Squatted before the issuer mints: it stays "allowed", with no timer to end it.
		{events.KindGranted, "deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			e := writtest.Start(t, writtest.Options{NoServe: true})
			id := submit(t, e, e.Identity(tc.who), tc.spec)
			ordinal := ""
			if tc.kind == events.KindVoted {
				// Votes are keyed by the voter's public key, which is no secret.
				e.Serve("")
				waitFor(t, e, id, func(s request.State) bool { return s.Status.IsPending() })
				ordinal = e.Identity("alice").Principal.Key
			}
			r := load(t, e, id)
			// Data does not matter: the signer is entitled to nothing.
			forged, err := events.Seal(events.Draft{
				Domain: writtest.Domain, RequestID: id, Kind: tc.kind, Ordinal: ordinal,
				Source: "writ://acme/forger", Time: time.Now(),
				Data: map[string]any{"prev": r.State.LastDigest},
			}, mustServerKey(t))
			require.NoError(t, err)
			// The squatter takes the readable id; the tag after it needs
			// the entitled producer's key, which the squatter lacks.
			forged.MsgID = events.MsgID(id, tc.kind, ordinal)
			seq := publish(t, e, forged)
			if tc.kind != events.KindVoted {
				e.Serve("")
			}

			if tc.votes {
				waitFor(t, e, id, func(s request.State) bool { return s.Status.IsPending() })
				vote(t, e, e.Identity("alice"), id, true)
				vote(t, e, e.Identity("bob"), id, true)
			}
			r = waitFor(t, e, id, client.Settled)
			assert.Equal(t, request.StatusGranted, r.State.Status)
			assert.NotContains(t, r.Errs, r.State.LastSeq, "the last event counted")
			assert.NotEqual(t, seq, r.State.LastSeq)
		})
	}
}

// TestIdentityExpiryAfterTheFact lets identities expire after they signed:
// a request and the votes on it were valid when the stream stored them, so
// what they decided must not change when the JWTs run out later.
func TestIdentityExpiryAfterTheFact(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	account, err := identity.LoadSeed(filepath.Join(e.Dir, "keys", "account.nk"))
	require.NoError(t, err)
	now := time.Now()
	short := func(name string, groups ...string) *identity.Identity {
		return issue(t, account, identity.UserSpec{Domain: writtest.Domain, Name: name, Groups: groups, TTL: 3 * time.Second, Now: now})
	}
	bot, carol := short("deploy-bot", "bots"), short("carol", "developers")

	granted := submit(t, e, bot, client.Spec{Action: "deploy", Resource: "staging/web"})
	require.Equal(t, request.StatusGranted, waitFor(t, e, granted, client.Settled).State.Status)
	pending := submit(t, e, carol, client.Spec{Action: "restart", Resource: "prod/db"})
	require.Equal(t, request.StatusPending, waitFor(t, e, pending, func(s request.State) bool { return s.Status.IsPending() }).State.Status)

	time.Sleep(time.Until(bot.Principal.Expires) + 200*time.Millisecond)

	r := load(t, e, granted)
	assert.Equal(t, request.StatusGranted, r.State.Status, "the audit trail reads the same after the requester's JWT expired: %v", r.Errs)

	vote(t, e, e.Identity("alice"), pending, true)
	vote(t, e, e.Identity("bob"), pending, true)
	r = waitFor(t, e, pending, client.Settled)
	assert.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
}

// assertStillServes checks that a good request is still granted.
func assertStillServes(t *testing.T, e *writtest.Env, bot *identity.Identity) {
	t.Helper()
	id := submit(t, e, bot, client.Spec{Action: "deploy", Resource: "staging/web"})
	r := waitFor(t, e, id, client.Settled)
	assert.Equal(t, request.StatusGranted, r.State.Status, "the pipeline keeps serving")
}

// ---------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------

// restartPolicies add to the sample a quick flow, whose deadline falls while
// the pipeline is down.
const restartPolicies = `
@id("bots-deploy-staging")
@max_ttl("10m")
permit (principal in Group::"acme/bots", action == Action::"deploy", resource)
when { resource.path like "staging/*" };

@id("developers-restart-prod")
@flow("two-sre-leads")
permit (principal in Group::"acme/developers", action == Action::"restart", resource)
when { resource.path like "prod/*" };

@id("developers-flush-prod")
@flow("quick-leads")
permit (principal in Group::"acme/developers", action == Action::"flush", resource)
when { resource.path like "prod/*" };

@id("no-prod-database-drop")
forbid (principal, action == Action::"drop-database", resource)
when { resource.path like "prod/*" };

@id("approvers-may-approve")
permit (principal, action == Action::"approve", resource);
`

const restartFlows = `{"flows": {
  "two-sre-leads": {"stages": [{"name": "leads", "groups": ["sre-leads"], "required": 2, "deadline": "5m"}]},
  "quick-leads":   {"stages": [{"name": "leads", "groups": ["sre-leads"], "required": 2, "deadline": "3s"}]}
}}`

// TestRestartMidFlow stops the pipeline (and, in one case, the server) with
// requests in every stage, lets deadlines pass while it is down, restarts
// on the same store, and checks every request ends exactly once.
func TestRestartMidFlow(t *testing.T) {
	cases := []struct {
		name string
		down func(e *writtest.Env, stop func())
		up   func(e *writtest.Env)
	}{
		{"server and pipeline",
			func(e *writtest.Env, _ func()) { e.StopAll() },
			func(e *writtest.Env) { e.StartServer(); e.Serve("") }},
		{"pipeline only",
			func(_ *writtest.Env, stop func()) { stop() },
			func(e *writtest.Env) { e.Serve("") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := writtest.Start(t, writtest.Options{Policies: restartPolicies, Flows: restartFlows, NoServe: true})
			stop := e.Serve("")
			want := map[string]request.Status{}
			add := func(who string, s client.Spec, status request.Status) string {
				id := e.Request(who, s)
				want[id] = status
				return id
			}
			var review []string
			for i := range 8 {
				add("deploy-bot", client.Spec{Action: "deploy", Resource: fmt.Sprintf("staging/web-%d", i)}, request.StatusGranted)
			}
			for i := range 10 {
				review = append(review, add("carol", client.Spec{Action: "restart", Resource: fmt.Sprintf("prod/svc-%d", i)}, request.StatusGranted))
			}
			for i := range 3 {
				add("carol", client.Spec{Action: "drop-database", Resource: fmt.Sprintf("prod/db-%d", i)}, request.StatusDenied)
			}
			for _, id := range review {
				e.Pending(id)
			}
			// Alice answers six before the stop, Bob three of those: some
			// approvals and grants are in flight when the pipeline stops.
			for i, id := range review[:6] {
				e.Vote("alice", id, true, "")
				if i < 3 {
					e.Vote("bob", id, true, "")
				}
			}
			// Requests with a 3s deadline, evaluated just before the stop.
			deadlines := map[string]time.Time{}
			var quick []string
			for i := range 4 {
				quick = append(quick, add("carol", client.Spec{Action: "flush", Resource: fmt.Sprintf("prod/cache-%d", i)}, request.StatusExpired))
			}
			for _, id := range quick {
				r := e.Pending(id)
				require.Equal(t, request.StatusPending, r.State.Status)
				deadlines[id] = *r.State.Evaluation.ExpiresAt
				// Armed before the stop: only the durable timer can end it.
				awaitSchedule(t, e, id)
			}
			// In flight at the stop: submitted, not yet evaluated (probably).
			for i := range 5 {
				add("deploy-bot", client.Spec{Action: "deploy", Resource: fmt.Sprintf("staging/late-%d", i)}, request.StatusGranted)
			}
			var late []string
			for i := range 2 {
				late = append(late, add("carol", client.Spec{Action: "restart", Resource: fmt.Sprintf("prod/late-%d", i)}, request.StatusGranted))
			}

			stopAt := time.Now()
			tc.down(e, stop)
			var last time.Time
			for id, d := range deadlines {
				require.True(t, d.After(stopAt), "request %s: deadline %s passed before the stop at %s; the test ran too slowly to arrange a deadline during the downtime", id, d, stopAt)
				last = maxTime(last, d)
			}
			time.Sleep(time.Until(last) + 500*time.Millisecond)
			restartAt := time.Now()
			tc.up(e)

			for _, id := range slices.Concat(review[6:], late) {
				e.Pending(id)
				e.Vote("alice", id, true, "")
			}
			for _, id := range slices.Concat(review[3:], late) {
				e.Vote("bob", id, true, "")
			}

			for id, status := range want {
				r := e.Settle(id)
				assert.Equal(t, status, r.State.Status, "request %s: %v", id, writtest.Kinds(r))
				writtest.AssertOneEnd(t, r)
				assert.NotContains(t, writtest.Kinds(r), "refused", "request %s: no input was bad", id)
				if d, ok := deadlines[id]; ok && r.State.Status == request.StatusExpired {
					assert.True(t, d.Before(restartAt), "the deadline passed while the pipeline was down")
					exp := r.Records[len(r.Records)-1]
					require.Equal(t, events.KindExpired, exp.Kind)
					assert.False(t, exp.Envelope.Time.Before(d), "never expired early")
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Replicas
// ---------------------------------------------------------------------------

// TestTwoReplicas runs two pipelines at once, sharing the durable consumers
// (each message handled by one of them) and with independent durables
// (each message handled by both), and checks that every request is decided
// and granted exactly once.
func TestTwoReplicas(t *testing.T) {
	const autos, reviews = 200, 50
	cases := []struct{ name, suffix string }{
		{"shared durables", ""},
		{"independent durables", "-b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := writtest.Start(t, writtest.Options{})
			e.Serve(tc.suffix)
			bot, carol := e.Identity("deploy-bot"), e.Identity("carol")
			voters := []*identity.Identity{e.Identity("alice"), e.Identity("bob")}
			ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
			defer cancel()

			var mu sync.Mutex
			var auto, review []string
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(16)
			for i := range autos {
				g.Go(func() error {
					id, err := e.Client.Request(gctx, bot, client.Spec{Domain: writtest.Domain, Action: "deploy", Resource: fmt.Sprintf("staging/web-%d", i)})
					if err != nil {
						return fmt.Errorf("auto %d: %w", i, err)
					}
					mu.Lock()
					auto = append(auto, id)
					mu.Unlock()
					return nil
				})
			}
			for i := range reviews {
				g.Go(func() error {
					id, err := e.Client.Request(gctx, carol, client.Spec{Domain: writtest.Domain, Action: "restart", Resource: fmt.Sprintf("prod/svc-%d", i)})
					if err != nil {
						return fmt.Errorf("review %d: %w", i, err)
					}
					mu.Lock()
					review = append(review, id)
					mu.Unlock()
					if _, err := e.Client.Wait(gctx, writtest.Domain, id, func(s request.State) bool { return s.Status.IsPending() }); err != nil {
						return fmt.Errorf("review %s: not pending: %w", id, err)
					}
					// Both approvers answer at once.
					var vg errgroup.Group
					for _, v := range voters {
						vg.Go(func() error {
							_, err := e.Client.Vote(gctx, v, writtest.Domain, id, client.Vote{Approve: true})
							return err
						})
					}
					if err := vg.Wait(); err != nil {
						return fmt.Errorf("review %s: vote: %w", id, err)
					}
					return nil
				})
			}
			require.NoError(t, g.Wait())

			results := make(map[string]*client.Request, autos+reviews)
			g, gctx = errgroup.WithContext(ctx)
			g.SetLimit(32)
			for _, id := range slices.Concat(auto, review) {
				g.Go(func() error {
					r, err := e.Client.Wait(gctx, writtest.Domain, id, client.Settled)
					if err != nil {
						status := "no history"
						if r != nil {
							status = fmt.Sprintf("%s %v", r.State.Status, writtest.Kinds(r))
						}
						return fmt.Errorf("request %s stuck: %s: %w", id, status, err)
					}
					mu.Lock()
					results[id] = r
					mu.Unlock()
					return nil
				})
			}
			require.NoError(t, g.Wait())

			for _, id := range auto {
				r := results[id]
				assert.Equal(t, request.StatusGranted, r.State.Status, id)
				assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r), id)
				writtest.AssertOneEnd(t, r)
			}
			for _, id := range review {
				r := results[id]
				assert.Equal(t, request.StatusGranted, r.State.Status, id)
				assert.Equal(t, []string{"requested", "evaluated", "voted", "voted", "approved", "granted"}, writtest.Kinds(r, events.KindCounted), id)
				assert.LessOrEqual(t, len(writtest.Kinds(r))-len(writtest.Kinds(r, events.KindCounted)), 1, "the first vote counted at most once")
				writtest.AssertOneEnd(t, r)
			}
			// Nothing landed after the ends: give stragglers a moment and read again.
			time.Sleep(500 * time.Millisecond)
			granted := grantedIDs(t, e)
			assert.Len(t, granted, autos+reviews, "one granted event per request in the whole stream")
		})
	}
}

// ---------------------------------------------------------------------------
// Stream configuration
// ---------------------------------------------------------------------------

// TestAuditStreamIsAppendOnly reads the audit stream's configuration back
// from the server and checks the server refuses to delete or purge.
func TestAuditStreamIsAppendOnly(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	ctx := t.Context()
	s, err := js.Stream(ctx, consumers.DefaultStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	cfg := info.Config
	assert.True(t, cfg.DenyDelete, "deny delete")
	assert.True(t, cfg.DenyPurge, "deny purge")
	assert.False(t, cfg.AllowRollup, "no rollups")
	assert.Equal(t, jetstream.DiscardNew, cfg.Discard)
	assert.Equal(t, jetstream.FileStorage, cfg.Storage)
	assert.Equal(t, jetstream.LimitsPolicy, cfg.Retention)
	assert.False(t, cfg.AllowMsgTTL, "no per-message TTL")
	assert.Zero(t, cfg.SubjectDeleteMarkerTTL)
	assert.False(t, cfg.AllowMsgSchedules, "no schedules")
	assert.Zero(t, cfg.MaxAge, "events kept forever by default")
	assert.LessOrEqual(t, cfg.MaxMsgsPerSubject, int64(0), "no per-subject limit: it removes old events even with discard new")
	require.NoError(t, consumers.CheckAuditStream(cfg, consumers.AuditStreamConfig(pipeline.Streams(e.Runtime))))

	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	msgs, err := store.Reader{NC: e.NC, Stream: consumers.DefaultStream}.Load(ctx, events.RequestFilter(writtest.Domain, id), 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	seq := msgs[0].Seq

	t.Run("delete refused", func(t *testing.T) {
		assert.Error(t, s.DeleteMsg(ctx, seq))
		assert.Error(t, s.SecureDeleteMsg(ctx, seq))
	})
	t.Run("purge refused", func(t *testing.T) {
		assert.Error(t, s.Purge(ctx))
		assert.Error(t, s.Purge(ctx, jetstream.WithPurgeSubject(events.RequestFilter(writtest.Domain, id))))
	})
	t.Run("the message is still there", func(t *testing.T) {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		assert.Equal(t, msgs[0].Body, m.Data)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), info.State.Msgs)
	})
	t.Run("protections cannot be lifted", func(t *testing.T) {
		for _, weaken := range []func(*jetstream.StreamConfig){
			func(c *jetstream.StreamConfig) { c.DenyDelete = false },
			func(c *jetstream.StreamConfig) { c.DenyPurge = false },
		} {
			c := cfg
			weaken(&c)
			_, err := js.UpdateStream(ctx, c)
			assert.Error(t, err)
		}
	})
}

// weakenings are audit stream configurations that lack a protection.
var weakenings = []struct {
	name   string
	weaken func(*jetstream.StreamConfig)
}{
	{"purge allowed", func(c *jetstream.StreamConfig) { c.DenyPurge = false }},
	{"delete allowed", func(c *jetstream.StreamConfig) { c.DenyDelete = false }},
	{"rollups allowed", func(c *jetstream.StreamConfig) { c.DenyPurge, c.AllowRollup = false, true }},
	{"per-message TTL", func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true }},
	{"discard old", func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld }},
	{"memory storage", func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }},
	{"max age", func(c *jetstream.StreamConfig) { c.MaxAge = 48 * time.Hour }},
	{"no direct get", func(c *jetstream.StreamConfig) { c.AllowDirect = false }},
}

func TestCheckAuditStreamRefusesWeakened(t *testing.T) {
	want := consumers.AuditStreamConfig(consumers.StreamConfig{Domain: writtest.Domain})
	require.NoError(t, consumers.CheckAuditStream(want, want))
	for _, tc := range weakenings {
		t.Run(tc.name, func(t *testing.T) {
			got := want
			tc.weaken(&got)
			assert.ErrorIs(t, consumers.CheckAuditStream(got, want), consumers.ErrWeakened)
		})
	}
}

// TestEnsureStreamsRefusesWeakened creates a weakened WRIT stream by hand
// on a fresh server, then checks that EnsureStreams refuses to run on it.
func TestEnsureStreamsRefusesWeakened(t *testing.T) {
	for _, tc := range weakenings {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			js := bareServer(t)
			weak := consumers.AuditStreamConfig(consumers.StreamConfig{Domain: writtest.Domain})
			tc.weaken(&weak)
			_, err := js.CreateStream(ctx, weak)
			require.NoError(t, err, "the server must accept the weakened stream for the test to mean anything")

			err = consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: writtest.Domain})
			assert.ErrorIs(t, err, consumers.ErrWeakened)
		})
	}

	t.Run("a sound stream passes, twice", func(t *testing.T) {
		ctx := t.Context()
		js := bareServer(t)
		require.NoError(t, consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: writtest.Domain}))
		require.NoError(t, consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: writtest.Domain}))
	})

	t.Run("weakened in place after creation", func(t *testing.T) {
		ctx := t.Context()
		js := bareServer(t)
		require.NoError(t, consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: writtest.Domain}))
		// The server lets an administrator turn on per-message TTLs, which
		// would let a publisher make its events vanish.
		c := consumers.AuditStreamConfig(consumers.StreamConfig{Domain: writtest.Domain})
		c.AllowMsgTTL = true
		_, err := js.UpdateStream(ctx, c)
		require.NoError(t, err)
		assert.ErrorIs(t, consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: writtest.Domain}), consumers.ErrWeakened)
	})
}

// TestEnsureStreamsRefusesPerSubjectLimit: a per-subject message limit makes
// the server remove a subject's older messages even with deny-delete and
// discard-new, so a second vote on a request would erase the first.
func TestEnsureStreamsRefusesPerSubjectLimit(t *testing.T) {
	ctx := t.Context()
	js := bareServer(t)
	weak := consumers.AuditStreamConfig(consumers.StreamConfig{Domain: writtest.Domain})
	weak.MaxMsgsPerSubject = 1
	_, err := js.CreateStream(ctx, weak)
	require.NoError(t, err)

	// What the limit does: the first of two events on one subject is gone.
	subject := events.Subject(writtest.Domain, newID(t), events.KindVoted)
	first, err := js.Publish(ctx, subject, []byte("{}"))
	require.NoError(t, err)
	_, err = js.Publish(ctx, subject, []byte("{}"))
	require.NoError(t, err)
	s, err := js.Stream(ctx, consumers.DefaultStream)
	require.NoError(t, err)
	_, err = s.GetMsg(ctx, first.Sequence)
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound, "the server dropped the first event")

	assert.ErrorIs(t, consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: writtest.Domain}), consumers.ErrWeakened)
	want := consumers.AuditStreamConfig(consumers.StreamConfig{Domain: writtest.Domain})
	got := want
	got.MaxMsgsPerSubject = 1
	assert.ErrorIs(t, consumers.CheckAuditStream(got, want), consumers.ErrWeakened)
}

// bareServer starts an embedded server with no streams at all.
func bareServer(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

func newID(t *testing.T) string {
	t.Helper()
	u, err := uuid.NewV7()
	require.NoError(t, err)
	return u.String()
}

func mustAccount(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	require.NoError(t, err)
	return kp
}

func mustServerKey(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateServer()
	require.NoError(t, err)
	return kp
}

// issue mints an identity signed by account.
func issue(t *testing.T, account nkeys.KeyPair, s identity.UserSpec) *identity.Identity {
	t.Helper()
	creds, err := identity.IssueUser(account, s)
	require.NoError(t, err)
	id, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	return id
}

// sealRequest signs a request the way the client does, for target domain
// acme and request id id; mutate may change its data before signing.
func sealRequest(t *testing.T, who *identity.Identity, id string, s client.Spec, mutate func(*events.Requested)) events.Outgoing {
	t.Helper()
	xkey, err := issuer.HolderXKey(who.Key, id)
	require.NoError(t, err)
	xpub, err := xkey.PublicKey()
	require.NoError(t, err)
	data := &events.Requested{
		Domain:    writtest.Domain,
		Requester: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity:  who.JWT, Action: s.Action, Resource: s.Resource, Urgency: "normal", HolderXKey: xpub,
	}
	if mutate != nil {
		mutate(data)
	}
	out, err := events.Seal(events.Draft{
		Domain: writtest.Domain, RequestID: id, Kind: events.KindRequested,
		Source: "writ://" + who.Principal.Domain + "/principals/" + who.Principal.Name,
		Time:   time.Now(), Data: data,
	}, who.Key)
	require.NoError(t, err)
	return out
}

// resign replaces an event's body and signs the new one with kp.
func resign(t *testing.T, kp nkeys.KeyPair, out events.Outgoing, body []byte) events.Outgoing {
	t.Helper()
	sig, err := kp.Sign(body)
	require.NoError(t, err)
	out.Body, out.Signature = body, base64.RawURLEncoding.EncodeToString(sig)
	return out
}

// publish stores an event in the audit stream as is, leaving out empty
// headers, and returns its stream sequence.
func publish(t *testing.T, e *writtest.Env, out events.Outgoing) uint64 {
	t.Helper()
	h := nats.Header{}
	for k, v := range out.Header() {
		if len(v) > 0 && v[0] != "" {
			h[k] = v
		}
	}
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	ack, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: out.Subject, Data: out.Body, Header: h},
		jetstream.WithExpectStream(consumers.DefaultStream))
	require.NoError(t, err)
	require.False(t, ack.Duplicate)
	return ack.Sequence
}

func submit(t *testing.T, e *writtest.Env, who *identity.Identity, s client.Spec) string {
	t.Helper()
	if s.Domain == "" {
		s.Domain = writtest.Domain
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	id, err := e.Client.Request(ctx, who, s)
	require.NoError(t, err)
	return id
}

func vote(t *testing.T, e *writtest.Env, who *identity.Identity, id string, approve bool) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	seq, err := e.Client.Vote(ctx, who, writtest.Domain, id, client.Vote{Approve: approve})
	require.NoError(t, err)
	return seq
}

// waitFor is Env.Await for the calling (sub)test.
func waitFor(t *testing.T, e *writtest.Env, id string, done func(request.State) bool) *client.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r, err := e.Client.Wait(ctx, writtest.Domain, id, done)
	if err != nil {
		status := "no history"
		if r != nil {
			status = fmt.Sprintf("%s %v", r.State.Status, writtest.Kinds(r))
		}
		require.NoError(t, err, "request %s still %s", id, status)
	}
	return r
}

func load(t *testing.T, e *writtest.Env, id string) *client.Request {
	t.Helper()
	r, err := e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	return r
}

// grantedIDs lists the request id of every granted event in the stream,
// trusted or not, with repeats.
func grantedIDs(t *testing.T, e *writtest.Env) []string {
	t.Helper()
	msgs, err := store.Reader{NC: e.NC, Stream: consumers.DefaultStream}.Load(t.Context(), events.KindFilter(events.KindGranted), 1)
	require.NoError(t, err)
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		_, id, _, err := events.ParseSubject(m.Subject)
		require.NoError(t, err)
		out = append(out, id)
	}
	return out
}

// awaitSchedule waits until the timer stream holds the deadline schedule
// of a request (subject writ-timers.<domain>.schedule.<id>).
func awaitSchedule(t *testing.T, e *writtest.Env, id string) {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), consumers.DefaultTimersStream)
	require.NoError(t, err)
	subject := "writ-timers." + writtest.Domain + ".schedule." + id
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := s.GetLastMsgForSubject(t.Context(), subject)
		assert.NoError(c, err)
	}, 10*time.Second, 20*time.Millisecond, "no deadline scheduled for %s", id)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
