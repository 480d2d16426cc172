package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	idconnect "github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/callout"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
)

// The red-team suite (issue 12): every role tries, on a real hub and
// spoke, what an attacker with natscli would, and the server must refuse
// each attempt its role does not need, with nothing changed.

const (
	hubDomain   = "acme"
	spokeDomain = "globex"
	// An expected-last-subject-sequence no subject reaches: a publish the
	// server lets through is then refused by JetStream and stores nothing,
	// so that what a role may publish is learnt without junk in the trail.
	// The server decides permissions by subject alone, before JetStream
	// reads any header.
	neverSeq = "999999999"
	probeKey = "redteam.probe"
)

var buckets = []string{locks.Bucket, state.Bucket, redeem.BucketUsed, redeem.BucketNonces, redeem.BucketRevocations}

// fixture is a hub (domain acme, pipeline running) and a spoke (globex)
// linked to it by a leafnode.
type fixture struct {
	hub, spoke *writtest.Env
	js         jetstream.JetStream // the hub operator's
	id         string              // a request of carol's, pending in the hub
	issuer     string              // the issuer's durable consumer on WRIT
	account    *config.Config
	// victim is carol's connection to the hub, which the system's KICK
	// is tried on: only a callout-system user may end it.
	victim   *nats.Conn
	victimID string // its server's id
}

// role is a connection an attacker could hold.
type role struct {
	name string
	// kind is the access role whose rights the connection carries ("" for
	// the spoke's operator, whose limits are the hub's leaf creds).
	kind access.Role
	dial func(t *testing.T, opts ...nats.Option) *nats.Conn
	api  string // the JetStream API prefix that reaches the hub
	// viaLeaf: the hub, not the connection's own server, refuses: it
	// drops what the leaf link may not carry, silently (the client hears
	// no error), so a refusal shows as no answer.
	viaLeaf bool
	victim  string // the inbox prefix of another principal, in the hub
	onSpoke bool   // connected to the spoke's server
}

// attempt is one thing an attacker tries.
type attempt struct {
	name string
	// do sends the attempt on c and returns where its answer comes, if
	// it has one.
	do func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription
	// look reads, with the hub operator's rights, what the attempt would
	// change: it must read the same after a refusal.
	look func(t *testing.T, f *fixture) string
	// may lists the roles the table lets do this.
	may func(r *role) bool
	// spoke: tried also by the spoke's operator through the leaf link.
	spoke bool
}

// probe is a fresh connection for one attempt, with the errors the server
// reported on it.
type probe struct {
	nc   *nats.Conn
	errs chan error
}

func connect(t *testing.T, r *role) *probe {
	t.Helper()
	p := &probe{errs: make(chan error, 16)}
	p.nc = r.dial(t, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case p.errs <- err:
		default:
		}
	}))
	t.Cleanup(p.nc.Close)
	return p
}

// refused reports whether the server refused what p sent, with a
// permissions error. The server writes its -ERR for a refused publish or
// subscription before the PONG that answers the flush's PING, and the
// client records it as the connection's last error before it reads the
// PONG: once Flush returns, LastError holds the answer. The async error
// handler hears the same error; it is checked too, since that is how a
// long-running client learns of it.
func (p *probe) refused(t *testing.T) bool {
	t.Helper()
	require.NoError(t, p.nc.FlushTimeout(5*time.Second))
	err := p.nc.LastError()
	if err == nil {
		return false
	}
	require.ErrorIs(t, err, nats.ErrPermissionViolation, "the server closed or refused the connection for another reason")
	select {
	case got := <-p.errs:
		require.ErrorIs(t, got, nats.ErrPermissionViolation)
	case <-time.After(5 * time.Second):
		t.Fatal("the error handler did not hear the permissions violation")
	}
	return true
}

// request sends a request with an expected-sequence header that stops
// JetStream from storing a publish the server lets through.
func request(t *testing.T, c *probe, subject string, body []byte, hdr nats.Header) *nats.Subscription {
	t.Helper()
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	require.NoError(t, err)
	require.NoError(t, c.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: inbox, Data: body, Header: hdr}))
	return sub
}

func guarded() nats.Header {
	return nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{neverSeq}}
}

func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func startFixture(t *testing.T) *fixture {
	envs := writtest.Federation(t, map[string]writtest.Options{spokeDomain: {NoServe: true}}, hubDomain, spokeDomain)
	f := &fixture{hub: envs[hubDomain], spoke: envs[spokeDomain]}
	var err error
	f.js, err = jetstream.New(f.hub.NC)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Every bucket exists, with an entry to try to overwrite and delete.
	require.NoError(t, locks.Ensure(ctx, f.js, 1))
	require.NoError(t, state.Ensure(ctx, f.js, 1))
	require.NoError(t, redeem.EnsureBuckets(ctx, f.js, 1))
	// The resource-state entry, recorded (bob is an SRE lead).
	_, err = f.hub.Client.SetState(ctx, f.hub.Identity("bob"), hubDomain, client.StateChange{Path: stateProbePath, Attrs: map[string]string{"probe": "yes"}})
	require.NoError(t, err)
	// A pending request: the trail holds events, the timers a deadline.
	f.id = f.hub.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "red team"})
	f.hub.Pending(f.id)
	f.issuer = "writ-issuer-" + hubDomain
	_, err = f.js.Consumer(ctx, "WRIT", f.issuer)
	require.NoError(t, err, "the issuer's durable consumer")
	f.account = f.hub.Runtime.Config
	f.victim = f.dial(t, "creds/carol.creds", nats.NoReconnect())
	f.victimID = f.victim.ConnectedServerId()
	return f
}

// dial connects to the hub with the creds at rel.
func (f *fixture) dial(t *testing.T, rel string, more ...nats.Option) *nats.Conn {
	t.Helper()
	opts, err := idconnect.Creds(filepath.Join(f.hub.Dir, rel))
	require.NoError(t, err)
	nc, err := f.hub.Server.Connect(append(opts, more...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// calloutSystem signs a user of the hub's system account with the
// callout-system role, as the server writ callout answers for would hold
// one, and returns its connection options.
func (f *fixture) calloutSystem(t *testing.T) []nats.Option {
	t.Helper()
	sys, err := identity.LoadSeed(f.account.Path(config.NATSSystemSeed))
	require.NoError(t, err)
	token, user, err := identity.SignUser(sys, identity.UserSpec{Domain: hubDomain, Name: "callout", Permissions: func(pub string) (jwt.Permissions, error) {
		return access.Permissions(access.Scope{Domain: hubDomain, User: pub}, access.CalloutSystem)
	}})
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	pub, _ := user.PublicKey()
	return []nats.Option{nats.UserJWTAndSeed(token, string(seed)), nats.CustomInboxPrefix(access.InboxPrefix(hubDomain, pub))}
}

// roles are the connections the suite attacks with.
func (f *fixture) roles(t *testing.T) []*role {
	hubCreds := func(name, rel string) *role {
		path := filepath.Join(f.hub.Dir, rel)
		opts, err := idconnect.Creds(path)
		require.NoError(t, err)
		return &role{name: name, dial: dialer(f.hub, opts), api: "$JS.API"}
	}
	carol := hubCreds("carol (requester)", "creds/carol.creds")
	carol.kind = access.Principal
	alice := hubCreds("alice (approver)", "creds/alice.creds")
	alice.kind = access.Principal
	reader := hubCreds("reader", config.ReaderCreds)
	reader.kind = access.Reader
	redeemer := hubCreds("redeemer", config.RedeemerCreds)
	redeemer.kind = access.Redeemer
	aliceInbox, bobInbox := inboxOf(t, filepath.Join(f.hub.Dir, "creds/alice.creds")), inboxOf(t, filepath.Join(f.hub.Dir, "creds/bob.creds"))
	out := []*role{carol, alice, reader, redeemer}
	accountKey, err := identity.LoadSeed(f.account.Path(config.AccountSeed))
	require.NoError(t, err)
	for _, c := range access.Components {
		opts, err := pipeline.RoleOptions(f.account, accountKey, "", c)
		require.NoError(t, err)
		out = append(out, &role{name: string(c), kind: c, dial: dialer(f.hub, opts), api: "$JS.API"})
	}
	spokePath := filepath.Join(f.spoke.Dir, "creds/carol.creds")
	opts, err := idconnect.Creds(spokePath)
	require.NoError(t, err)
	out = append(out, &role{name: spokeDomain + "/carol (over the leafnode)", kind: access.Principal,
		dial: dialer(f.spoke, opts), api: "$JS." + hubDomain + ".API", onSpoke: true})
	opPath := filepath.Join(f.spoke.Dir, config.OperatorCreds)
	opts, err = idconnect.Creds(opPath)
	require.NoError(t, err)
	out = append(out, &role{name: spokeDomain + " operator (hub's leaf creds)", dial: dialer(f.spoke, opts),
		api: "$JS." + hubDomain + ".API", viaLeaf: true, onSpoke: true})
	// Last: its kick, allowed, ends the victim.
	out = append(out, &role{name: "callout-system (the hub's system account)", kind: access.CalloutSystem,
		dial: dialer(f.hub, f.calloutSystem(t)), api: "$JS.API"})
	for _, r := range out {
		r.victim = aliceInbox
		if r == alice {
			r.victim = bobInbox
		}
	}
	return out
}

func dialer(e *writtest.Env, opts []nats.Option) func(*testing.T, ...nats.Option) *nats.Conn {
	return func(t *testing.T, more ...nats.Option) *nats.Conn {
		t.Helper()
		nc, err := e.Server.Connect(append(slices.Clone(opts), more...)...)
		require.NoError(t, err)
		return nc
	}
}

func inboxOf(t *testing.T, creds string) string {
	t.Helper()
	id, err := identity.LoadCreds(creds)
	require.NoError(t, err)
	pub, err := id.Key.PublicKey()
	require.NoError(t, err)
	return access.InboxPrefix(id.Principal.Domain, pub)
}

// Looks: what an attempt could change, read by the hub's operator.

func (f *fixture) lookStream(name string) func(*testing.T, *fixture) string {
	return func(t *testing.T, f *fixture) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := f.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return "no stream"
		}
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		// New events may arrive (the auditor's checkpoints); what an
		// attack changes is the configuration, the first sequence and the
		// holes.
		return fmt.Sprintf("%s first=%d deleted=%d", jsonOf(t, info.Config), info.State.FirstSeq, info.State.NumDeleted)
	}
}

func lookConsumer(stream, name string) func(*testing.T, *fixture) string {
	return func(t *testing.T, f *fixture) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := f.js.Consumer(ctx, stream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return "no consumer"
		}
		require.NoError(t, err)
		info, err := c.Info(ctx)
		require.NoError(t, err)
		cfg := info.Config
		return fmt.Sprintf("%s paused=%v", jsonOf(t, cfg), info.Paused)
	}
}

func lookSubject(stream, subject string) func(*testing.T, *fixture) string {
	return func(t *testing.T, f *fixture) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := f.js.Stream(ctx, stream)
		require.NoError(t, err)
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return "none"
		}
		require.NoError(t, err)
		return "seq " + strconv.FormatUint(m.Sequence, 10)
	}
}

// lookEntry reads the probe entry of bucket (seeded before each attempt).
func lookEntry(bucket string) func(*testing.T, *fixture) string {
	return func(t *testing.T, f *fixture) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := f.js.KeyValue(ctx, bucket)
		require.NoError(t, err)
		e, err := kv.Get(ctx, probeKeyOf(bucket))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return "no entry"
		}
		require.NoError(t, err)
		return fmt.Sprintf("rev %d %q", e.Revision(), e.Value())
	}
}

func nobody(*role) bool { return false }

func is(kinds ...access.Role) func(*role) bool {
	return func(r *role) bool { return r.kind != "" && slices.Contains(kinds, r.kind) }
}

// streamEdit tries to update stream name with change applied to its
// configuration as it is.
func streamEdit(name, what string, change func(*jetstream.StreamConfig), via string) attempt {
	return attempt{
		name: "stream edit " + name + " " + what + via,
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := f.js.Stream(ctx, name)
			require.NoError(t, err)
			cfg := s.CachedInfo().Config
			change(&cfg)
			api := r.api
			if via != "" {
				api = "$JS." + hubDomain + ".API"
			}
			return request(t, c, api+".STREAM.UPDATE."+name, jsonOf(t, cfg), nil)
		},
		spoke: via == "",
	}
}

func api(name, suffix string, body any) attempt {
	return attempt{
		name: name,
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			var b []byte
			if body != nil {
				b = jsonOf(t, body)
			}
			return request(t, c, r.api+"."+suffix, b, nil)
		},
		spoke: true,
	}
}

func attempts(f *fixture) []attempt {
	var out []attempt
	add := func(a attempt, look func(*testing.T, *fixture) string, may func(*role) bool) {
		a.look, a.may = look, may
		out = append(out, a)
	}
	writ := f.lookStream("WRIT")
	// The table, on the audit stream.
	add(streamEdit("WRIT", "--max-msgs-per-subject=1 --discard=old", func(c *jetstream.StreamConfig) {
		c.MaxMsgsPerSubject, c.Discard = 1, jetstream.DiscardOld
	}, ""), writ, nobody)
	add(streamEdit("WRIT", "--dupe-window=1s --max-age=2s", func(c *jetstream.StreamConfig) {
		c.Duplicates, c.MaxAge = time.Second, 2*time.Second
	}, ""), writ, nobody)
	add(streamEdit("WRIT", "--max-age=2s", func(c *jetstream.StreamConfig) { c.MaxAge = 2 * time.Second }, " (through $JS.acme.API)"), writ, nobody)
	add(streamEdit("WRIT", "--retention=interest", func(c *jetstream.StreamConfig) { c.Retention = jetstream.InterestPolicy }, ""), writ, nobody)
	add(streamEdit("WRIT", "--deny-delete=false --deny-purge=false", func(c *jetstream.StreamConfig) { c.DenyDelete, c.DenyPurge = false, false }, ""), writ, nobody)
	add(streamEdit("WRIT", "seal", func(c *jetstream.StreamConfig) { c.Sealed = true }, ""), writ, nobody)
	add(api("stream rm WRIT", "STREAM.DELETE.WRIT", nil), writ, nobody)
	add(api("stream purge WRIT", "STREAM.PURGE.WRIT", map[string]any{}), writ, nobody)
	add(api("stream rmm WRIT 1 (message delete)", "STREAM.MSG.DELETE.WRIT", map[string]any{"seq": 1, "no_erase": true}), writ, nobody)
	add(api("stream add EVIL", "STREAM.CREATE.EVIL", map[string]any{"name": "EVIL", "subjects": []string{"evil.>"}}), f.lookStream("EVIL"), nobody)
	// The timer stream: only the approval component may purge it (here a
	// filter that matches nothing, so that the allowed purge changes
	// nothing either).
	timers := f.lookStream("WRIT_TIMERS")
	add(streamEdit("WRIT_TIMERS", "--max-age=1s", func(c *jetstream.StreamConfig) { c.MaxAge = time.Second }, ""), timers, nobody)
	add(api("stream purge WRIT_TIMERS --subject=<none>", "STREAM.PURGE.WRIT_TIMERS",
		map[string]any{"filter": "writ-timers." + hubDomain + ".redteam-none"}), timers, is(access.Approval))
	timerSubject := "writ-timers." + hubDomain + "." + uuid.NewString()
	out = append(out, attempt{
		name: "pub " + "writ-timers.acme.<id> (a forged deadline)",
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			return request(t, c, timerSubject, []byte("{}"), guarded())
		},
		look: lookSubject("WRIT_TIMERS", timerSubject),
		may:  is(access.Approval),
	})
	// Consumers.
	issuer := lookConsumer("WRIT", f.issuer)
	add(api("consumer pause WRIT "+f.issuer+" 10m", "CONSUMER.PAUSE.WRIT."+f.issuer,
		map[string]any{"pause_until": time.Now().Add(10 * time.Minute).UTC()}), issuer, nobody)
	add(api("consumer rm WRIT "+f.issuer, "CONSUMER.DELETE.WRIT."+f.issuer, nil), issuer, nobody)
	evil := map[string]any{"stream_name": "WRIT", "config": map[string]any{"durable_name": "evil", "ack_policy": "explicit"}}
	add(api("consumer add WRIT evil", "CONSUMER.CREATE.WRIT.evil", evil), lookConsumer("WRIT", "evil"), nobody)
	add(api("consumer add WRIT evil (legacy durable API)", "CONSUMER.DURABLE.CREATE.WRIT.evil", evil), lookConsumer("WRIT", "evil"), nobody)
	// Buckets: entries and their streams.
	for _, b := range buckets {
		writer := nobody
		switch b {
		case locks.Bucket, state.Bucket, redeem.BucketRevocations:
			writer = is(access.Approval)
		case redeem.BucketUsed, redeem.BucketNonces:
			writer = is(access.Redeemer)
		}
		for _, op := range []string{"put", "del"} {
			out = append(out, attempt{
				name: "kv " + op + " " + b + " " + probeKeyOf(b),
				do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
					h := guarded()
					if op == "del" {
						h.Set("KV-Operation", "DEL")
					}
					return request(t, c, "$KV."+b+"."+probeKeyOf(b), []byte("forged"), h)
				},
				look: lookEntry(b),
				may:  writer,
				// Not from the spoke: there $KV.<bucket> is the
				// spoke's own bucket, and the leaf link carries no
				// $KV subject to the hub.
			})
		}
		add(api("stream purge KV_"+b, "STREAM.PURGE.KV_"+b, map[string]any{}), f.lookStream("KV_"+b), nobody)
	}
	add(streamEdit("KV_"+redeem.BucketUsed, "--max-age=1s", func(c *jetstream.StreamConfig) { c.MaxAge = time.Second }, ""),
		f.lookStream("KV_"+redeem.BucketUsed), nobody)
	// Events: every kind a component (or the redeemer) signs, published
	// straight to the trail.
	for _, k := range events.Kinds() {
		if k.FromPrincipal() {
			continue
		}
		subject := events.Subject(hubDomain, uuid.NewString(), k)
		may := func(r *role) bool {
			if r.kind == "" {
				return false
			}
			if k == events.KindRefused {
				return r.kind.IsComponent() || r.kind == access.Redeemer
			}
			return string(r.kind) == string(events.RoleFor(k))
		}
		out = append(out, attempt{
			name: "pub writ.acme.<id>." + k.String(),
			do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
				return request(t, c, subject, []byte("{}"), guarded())
			},
			look:  lookSubject("WRIT", subject),
			may:   may,
			spoke: k == events.KindGranted,
		})
	}
	// Listening where one must not.
	out = append(out,
		listen("sub _INBOX.<another principal>.>", func(r *role) string { return r.victim + ".>" }, func(r *role) string { return r.victim + ".x" }),
		listen("sub _INBOX.>", func(*role) string { return "_INBOX.>" }, func(r *role) string { return r.victim + ".y" }),
		listen("sub $SYS.>", func(*role) string { return "$SYS.>" }, func(*role) string { return "$SYS.REDTEAM.probe" }),
	)
	// The trail's revocations and locks, which writ callout (as a
	// redeemer) hears to end live connections: people's roles and the
	// redeemer read the trail; the components read it through their
	// consumers, and the policy and issuer components hear locks; the
	// callout's system-account user hears neither.
	readsTrail := func(r *role) bool { return !r.kind.IsComponent() && r.kind != access.CalloutSystem }
	revoked := listen("sub writ.<domain>.*.revoked (revocations)", func(*role) string { return events.Subject(hubDomain, "*", events.KindRevoked) },
		func(*role) string { return events.Subject(hubDomain, "redteam", events.KindRevoked) })
	revoked.may = readsTrail
	locked := listen("sub writ.*.*.locked (locks)", func(*role) string { return events.KindFilter(events.KindLocked) },
		func(*role) string { return events.Subject(hubDomain, "redteam", events.KindLocked) })
	locked.may = func(r *role) bool { return readsTrail(r) || r.kind == access.Policy || r.kind == access.Issuer }
	out = append(out, revoked, locked)
	// The JetStream advisories (who changed what): the guard's, which
	// runs as the approval or issuer component, and nobody else's.
	advisories := listen("sub $JS.EVENT.ADVISORY.API", func(*role) string { return "$JS.EVENT.ADVISORY.API" },
		func(*role) string { return "$JS.EVENT.ADVISORY.API" })
	advisories.may = is(access.Approval, access.Issuer)
	out = append(out, advisories)
	// The auditor's asks (audit.Server): whoever hears them could answer
	// for the auditor. Its role alone subscribes; others only ask.
	checkpoints := listen("sub writ-audit.<domain>.checkpoint (answer as the auditor)",
		func(*role) string { return audit.CheckpointSubject(hubDomain) }, func(*role) string { return audit.CheckpointSubject(hubDomain) })
	checkpoints.may = is(access.Auditor)
	attests := listen("sub writ-audit.<domain>.attest (answer as the auditor)",
		func(*role) string { return audit.AttestSubject(hubDomain) }, func(*role) string { return audit.AttestSubject(hubDomain) })
	attests.may = is(access.Auditor)
	out = append(out, checkpoints, attests)
	out = append(out, forgeReply())
	out = append(out, attempt{
		name: "pub $SYS.REQ.SERVER.PING",
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			return request(t, c, "$SYS.REQ.SERVER.PING", nil, nil)
		},
		look: func(*testing.T, *fixture) string { return "" },
		may:  nobody,
	})
	// What writ callout's system-account user does to end a revoked
	// grant's connection (callout.SystemSubjects): its role alone.
	out = append(out, attempt{
		name: "pub $SYS.REQ.SERVER.PING.CONNZ (every connection)",
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			return request(t, c, callout.ConnzPing, []byte(`{"auth":true}`), nil)
		},
		look: func(*testing.T, *fixture) string { return "" },
		may:  is(access.CalloutSystem),
		// Not from the spoke: its own server answers its operator with
		// the spoke account's own connections (every account may list
		// its own), and the leaf link carries no $SYS subject.
	}, attempt{
		name: "pub $SYS.REQ.SERVER.<id>.KICK (carol's connection)",
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			return request(t, c, "$SYS.REQ.SERVER."+f.victimID+".KICK", jsonOf(t, map[string]uint64{"cid": victimCID(t, f)}), nil)
		},
		look: func(t *testing.T, f *fixture) string {
			// The kick is answered once the server closed the client;
			// the client hears of it moments later.
			if !f.victim.IsClosed() {
				if _, err := f.victim.GetClientID(); err == nil && f.victim.FlushTimeout(time.Second) == nil {
					return "connected"
				}
			}
			return "closed"
		},
		may:   is(access.CalloutSystem),
		spoke: true,
	})
	return out
}

func victimCID(t *testing.T, f *fixture) uint64 {
	t.Helper()
	cid, err := f.victim.GetClientID()
	require.NoError(t, err)
	return cid
}

// listen tries to subscribe to filter; the hub's operator then sends a
// probe that the filter matches, and then a barrier to the attacker's own
// inbox. Delivery to one connection is in order: the barrier arriving
// first proves the probe was not delivered.
func listen(name string, filter, probeSubject func(*role) string) attempt {
	heard := map[string]string{}
	var mu sync.Mutex
	return attempt{
		name:  name,
		spoke: true,
		may:   nobody,
		look: func(t *testing.T, f *fixture) string {
			mu.Lock()
			defer mu.Unlock()
			out := fmt.Sprint(heard)
			clear(heard)
			return out
		},
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			barrier := c.nc.NewInbox() // under the connection's own prefix
			ch := make(chan *nats.Msg, 64)
			if r.kind == access.CalloutSystem {
				// A user of the system account, where the hub's
				// operator cannot publish a probe or a barrier: the
				// server's refusal of the subscription is the answer.
				_, err := c.nc.ChanSubscribe(filter(r), ch)
				require.NoError(t, err)
				return nil
			}
			_, err := c.nc.ChanSubscribe(barrier, ch)
			require.NoError(t, err)
			_, err = c.nc.ChanSubscribe(filter(r), ch)
			require.NoError(t, err)
			require.NoError(t, c.nc.Flush())
			if r.onSpoke {
				// The subscriptions cross the leaf link in order: once
				// the barrier's interest has reached the hub, so has the
				// filter's.
				waitInterest(t, f, barrier)
			}
			require.NoError(t, f.hub.NC.Publish(probeSubject(r), []byte("probe")))
			require.NoError(t, f.hub.NC.Publish(barrier, []byte("barrier")))
			require.NoError(t, f.hub.NC.Flush())
			for {
				select {
				case m := <-ch:
					if m.Subject == barrier {
						if string(m.Data) == "barrier" {
							return nil
						}
						continue // waitInterest's asks
					}
					mu.Lock()
					heard[m.Subject] = string(m.Data)
					mu.Unlock()
				case <-time.After(5 * time.Second):
					t.Fatal("the barrier never came")
				}
			}
		},
	}
}

// forgeReply tries to publish into another principal's inbox in the hub
// (a forged answer to one of its requests), where the hub's operator
// listens. The barrier is a later message of the attacker's that the same
// listener hears: the hub's operator's own flush for a connection of the
// hub (the server hands a message on before it answers the PING that
// follows it), a publish of the attacker's across the leaf link otherwise.
func forgeReply() attempt {
	heard := map[string]string{}
	var mu sync.Mutex
	return attempt{
		name:  "pub _INBOX.<another principal>.x (a forged reply)",
		spoke: true,
		// Across the leaf link a spoke may publish into the hub domain's
		// inboxes: the answers to the hub's reads of the spoke's stream go
		// there (NATS's response permission does not follow replies that
		// cross a leafnode here). It cannot hear them (sub below), so it
		// learns no live reply subject to forge into; this attempt names
		// one it was told. Whatever arrives is checked by its signature.
		may: func(r *role) bool { return r.viaLeaf },
		look: func(t *testing.T, f *fixture) string {
			mu.Lock()
			defer mu.Unlock()
			out := fmt.Sprint(heard)
			clear(heard)
			return out
		},
		do: func(t *testing.T, f *fixture, r *role, c *probe) *nats.Subscription {
			target := r.victim + ".forged"
			barrier := events.Prefix + "." + spokeDomain + ".redteam-barrier"
			ch := make(chan *nats.Msg, 64)
			for _, s := range []string{target, barrier} {
				sub, err := f.hub.NC.ChanSubscribe(s, ch)
				require.NoError(t, err)
				t.Cleanup(func() { _ = sub.Unsubscribe() })
			}
			require.NoError(t, f.hub.NC.Flush())
			if r.onSpoke {
				// Interest crosses the link in order: once the spoke
				// knows of the barrier's, it knows of the target's.
				waitSpokeKnows(t, f.spoke.NC, barrier)
			}
			require.NoError(t, c.nc.Publish(target, []byte("forged")))
			if r.onSpoke {
				// The spoke's operator may publish under writ.globex;
				// the spoke's principal may not (and hears why), so
				// its barrier is the spoke operator's.
				require.NoError(t, c.nc.FlushTimeout(5*time.Second))
				bc := c.nc
				if !r.viaLeaf {
					bc = f.spoke.NC
				}
				require.NoError(t, bc.Publish(barrier, []byte("barrier")))
				require.NoError(t, bc.Flush())
			} else {
				require.NoError(t, c.nc.FlushTimeout(5*time.Second))
				require.NoError(t, f.hub.NC.Publish(barrier, []byte("barrier")))
			}
			for {
				select {
				case m := <-ch:
					if m.Subject == barrier {
						if string(m.Data) == "barrier" {
							return nil
						}
						continue // waitSpokeKnows's asks
					}
					mu.Lock()
					heard[m.Subject] = string(m.Data)
					mu.Unlock()
				case <-time.After(5 * time.Second):
					t.Fatal("the barrier never came")
				}
			}
		},
	}
}

// waitSpokeKnows waits until the spoke has heard, across the leaf link,
// of the hub's interest in subject: until then a publish on the spoke would
// not cross, and a refusal would prove nothing.
func waitSpokeKnows(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	// A connection of the spoke sees the interest as the spoke does: a
	// request no one would hear gets no responders.
	require.Eventually(t, func() bool {
		_, err := nc.Request(subject, nil, 50*time.Millisecond)
		return !errors.Is(err, nats.ErrNoResponders)
	}, 5*time.Second, 20*time.Millisecond)
}

// waitInterest waits until the hub knows of a subscriber to subject (one
// across the leaf link).
func waitInterest(t *testing.T, f *fixture, subject string) {
	t.Helper()
	require.Eventually(t, func() bool {
		// No responders is the hub's answer while no one listens.
		_, err := f.hub.NC.Request(subject, []byte("interest?"), 100*time.Millisecond)
		return !errors.Is(err, nats.ErrNoResponders)
	}, 5*time.Second, 20*time.Millisecond)
}

// outcome is what the server did with one (role, attempt).
type outcome struct {
	role, attempt string
	refused       bool
	answer        string
}

func TestRedTeam(t *testing.T) {
	f := startFixture(t)
	roles := f.roles(t)
	all := attempts(f)
	var results []outcome

	t.Run("no credentials", func(t *testing.T) {
		for _, e := range []*writtest.Env{f.hub, f.spoke} {
			// Over TCP, as natscli would: the server answers the CONNECT
			// with an authorization error and closes.
			_, err := nats.Connect(e.Server.ClientURL(), nats.MaxReconnects(0), nats.Timeout(5*time.Second))
			require.ErrorIs(t, err, nats.ErrAuthorization, "%s: an anonymous connection", e.Domain)
		}
		results = append(results, outcome{role: "no credentials", attempt: "connect", refused: true})
	})

	for _, r := range roles {
		for _, a := range all {
			if r.viaLeaf && !a.spoke {
				continue
			}
			t.Run(r.name+"/"+a.name, func(t *testing.T) {
				o := outcome{role: r.name, attempt: a.name}
				defer func() { results = append(results, o) }()
				if strings.HasPrefix(a.name, "kv ") {
					seedEntry(t, f, strings.Fields(a.name)[2])
				}
				before := a.look(t, f)
				c := connect(t, r)
				sub := a.do(t, f, r, c)
				o.refused = c.refused(t)
				if !o.refused && sub != nil {
					wait := 2 * time.Second
					if r.viaLeaf {
						// The hub drops what the link may not carry and
						// says nothing: no answer is the refusal. An
						// allowed API call is answered in milliseconds.
						wait = 500 * time.Millisecond
					}
					if m, err := sub.NextMsg(wait); err == nil {
						o.answer = string(m.Data)
					} else if r.viaLeaf {
						o.refused = true
					}
				}
				after := a.look(t, f)
				if r.viaLeaf && sub == nil {
					o.refused = after == "map[]"
				}
				want := a.may(r)
				switch {
				case !want && !o.refused:
					t.Errorf("hole: %s may not %s, and the server let it (answer: %s)", r.name, a.name, o.answer)
				case want && o.refused:
					t.Errorf("%s needs to %s, and the server refused it", r.name, a.name)
				}
				if !want {
					assert.Equal(t, before, after, "the attempt changed what it targets")
				}
			})
		}
	}

	t.Run("positives", func(t *testing.T) { positives(t, f, roles) })
	logTable(t, results)
}

func seedEntry(t *testing.T, f *fixture, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := f.js.KeyValue(ctx, bucket)
	require.NoError(t, err)
	if bucket == state.Bucket {
		// Its entry is the trail's: the approval component puts it back
		// after any change (and deletes one no event records).
		require.Eventually(t, func() bool {
			e, err := kv.Get(ctx, probeKeyOf(bucket))
			return err == nil && string(e.Value()) == stateProbe
		}, 5*time.Second, 10*time.Millisecond, "the recorded state entry is in the bucket")
		return
	}
	_, err = kv.Put(ctx, probeKey, []byte("probe"))
	require.NoError(t, err)
}

// stateProbe is the resource-state entry the fixture records (through a
// signed ask: an entry no event records is deleted), at stateProbePath.
const (
	stateProbePath = "redteam/probe"
	stateProbe     = `{"probe":"yes"}`
)

// probeKeyOf is the key of bucket's entry the attempts go for.
func probeKeyOf(bucket string) string {
	if bucket == state.Bucket {
		key, err := state.Key(hubDomain, stateProbePath)
		if err != nil {
			panic(err)
		}
		return key
	}
	return probeKey
}

// positives: each role can do what it needs.
func positives(t *testing.T, f *fixture, roles []*role) {
	byKind := func(name string) *role {
		i := slices.IndexFunc(roles, func(r *role) bool { return r.name == name })
		require.GreaterOrEqual(t, i, 0, name)
		return roles[i]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("callout-system lists the connections and ends carol's", func(t *testing.T) {
		r := byKind("callout-system (the hub's system account)")
		c := connect(t, r)
		victim := f.dial(t, "creds/carol.creds", nats.NoReconnect())
		closed := make(chan struct{})
		victim.SetClosedHandler(func(*nats.Conn) { close(closed) })
		cid, err := victim.GetClientID()
		require.NoError(t, err)
		m, err := c.nc.Request(callout.ConnzPing, jsonOf(t, map[string]any{"auth": true, "cid": cid}), 5*time.Second)
		require.NoError(t, err)
		var connz struct {
			Data struct {
				Conns []struct {
					CID  uint64 `json:"cid"`
					User string `json:"authorized_user"`
				} `json:"connections"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(m.Data, &connz), string(m.Data))
		require.Len(t, connz.Data.Conns, 1, string(m.Data))
		m, err = c.nc.Request("$SYS.REQ.SERVER."+victim.ConnectedServerId()+".KICK", jsonOf(t, map[string]uint64{"cid": cid}), 5*time.Second)
		require.NoError(t, err)
		assert.NotContains(t, string(m.Data), `"error"`)
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the kicked connection is still open")
		}
		assert.False(t, c.refused(t))
		assert.True(t, f.victim.IsClosed() || func() bool { _, err := f.victim.GetClientID(); return err != nil }(),
			"the table's kick, by callout-system, ended the shared victim")
	})

	t.Run("carol requests and reads her request back by direct get", func(t *testing.T) {
		c := connect(t, byKind("carol (requester)"))
		cl, err := client.New(c.nc, client.Options{Bundle: f.hub.Runtime.Bundle, Home: hubDomain})
		require.NoError(t, err)
		id, err := cl.Request(ctx, f.hub.Identity("carol"), client.Spec{Domain: hubDomain, Action: "restart", Resource: "prod/api", Reason: "positive"})
		require.NoError(t, err)
		r, err := cl.Load(ctx, hubDomain, id)
		require.NoError(t, err)
		require.NotEmpty(t, r.Records)
		assert.Equal(t, events.KindRequested, r.Records[0].Kind)
		assert.False(t, c.refused(t))
	})

	t.Run("alice votes on carol's request", func(t *testing.T) {
		c := connect(t, byKind("alice (approver)"))
		cl, err := client.New(c.nc, client.Options{Bundle: f.hub.Runtime.Bundle, Home: hubDomain})
		require.NoError(t, err)
		_, err = cl.Vote(ctx, f.hub.Identity("alice"), hubDomain, f.id, client.Vote{Approve: true, Reason: "positive"})
		require.NoError(t, err)
		assert.False(t, c.refused(t))
	})

	t.Run("the redeemer writes writ-grants-used", func(t *testing.T) {
		c := connect(t, byKind("redeemer"))
		js, err := jetstream.New(c.nc)
		require.NoError(t, err)
		kv, err := js.KeyValue(ctx, redeem.BucketUsed)
		require.NoError(t, err)
		key := "request." + uuid.NewString()
		_, err = kv.Create(ctx, key, []byte("used"))
		require.NoError(t, err)
		assert.False(t, c.refused(t))
		opKV, err := f.js.KeyValue(ctx, redeem.BucketUsed)
		require.NoError(t, err)
		e, err := opKV.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, "used", string(e.Value()))
	})

	t.Run("the approval component purges WRIT_TIMERS and not WRIT", func(t *testing.T) {
		c := connect(t, byKind(string(access.Approval)))
		js, err := jetstream.New(c.nc)
		require.NoError(t, err)
		s, err := js.Stream(ctx, "WRIT_TIMERS")
		require.NoError(t, err)
		require.NoError(t, s.Purge(ctx))
		assert.False(t, c.refused(t))
		info, err := f.js.Stream(ctx, "WRIT_TIMERS")
		require.NoError(t, err)
		assert.Zero(t, info.CachedInfo().State.Msgs, "the timers are purged")

		before := f.lookStream("WRIT")(t, f)
		request(t, c, "$JS.API.STREAM.PURGE.WRIT", []byte("{}"), nil)
		assert.True(t, c.refused(t), "the approval component purged WRIT")
		assert.Equal(t, before, f.lookStream("WRIT")(t, f))
	})

	t.Run("the operator can do what no other role may", func(t *testing.T) {
		// A throwaway setup: the operator's rights are the test's own
		// connection's (writtest connects as the operator).
		e := writtest.Start(t, writtest.Options{NoServe: true})
		js, err := jetstream.New(e.NC)
		require.NoError(t, err)
		s, err := js.Stream(ctx, "WRIT")
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.MaxAge = 48 * time.Hour // above the duplicate window
		updated, err := js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
		assert.Equal(t, 48*time.Hour, updated.CachedInfo().Config.MaxAge)

		require.NoError(t, locks.Ensure(ctx, js, 1))
		kv, err := js.KeyValue(ctx, locks.Bucket)
		require.NoError(t, err)
		_, err = kv.Put(ctx, probeKey, []byte("locked"))
		require.NoError(t, err)
		require.NoError(t, kv.Delete(ctx, probeKey))
		_, err = kv.Get(ctx, probeKey)
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound)

		c, err := js.Consumer(ctx, "WRIT", "redteam")
		assert.Nil(t, c)
		assert.ErrorIs(t, err, jetstream.ErrConsumerNotFound)
		_, err = js.CreateConsumer(ctx, "WRIT", jetstream.ConsumerConfig{Durable: "redteam", AckPolicy: jetstream.AckExplicitPolicy})
		require.NoError(t, err)
		ok, err := js.PauseConsumer(ctx, "WRIT", "redteam", time.Now().Add(10*time.Minute))
		require.NoError(t, err)
		assert.True(t, ok.Paused)
		require.NoError(t, js.DeleteStream(ctx, "WRIT"))
	})
}

// logTable writes the results as a table: roles down, attempts across
// would be too wide, so one line per role with what it was allowed.
func logTable(t *testing.T, results []outcome) {
	byRole := map[string][]outcome{}
	var order []string
	for _, o := range results {
		if _, ok := byRole[o.role]; !ok {
			order = append(order, o.role)
		}
		byRole[o.role] = append(byRole[o.role], o)
	}
	var b strings.Builder
	b.WriteString("\n| role | refused | allowed |\n|---|---|---|\n")
	for _, r := range order {
		var allowed []string
		refused := 0
		for _, o := range byRole[r] {
			if o.refused {
				refused++
			} else {
				allowed = append(allowed, o.attempt)
			}
		}
		sort.Strings(allowed)
		fmt.Fprintf(&b, "| %s | %d | %s |\n", r, refused, strings.Join(allowed, "; "))
	}
	t.Log(b.String())
}
