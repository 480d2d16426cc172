package callout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/callout"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

const (
	holderName = "deploy-bot"
	action     = "deploy"
	resource   = "staging/web"
	allowed    = "act.acme.deploy.staging.web"
)

// fixture is the Writ installation of domain acme (writtest: its own
// embedded server with the audit stream, the pipeline and the KV buckets)
// beside a second embedded server, the target, configured for auth
// callout, with a Responder answering it. Its trust bundle also lists a
// domain "other" with its own issuer.
type fixture struct {
	e         *writtest.Env
	target    *server.Server
	resp      *callout.Responder
	bundle    *identity.Bundle
	js        jetstream.JetStream
	acmeIss   *issuer.Issuer
	otherIss  *issuer.Issuer
	holder    nkeys.KeyPair
	holderPub string
	svc       *nats.Conn // a service in the APP account, listening on act.>
	heard     chan *nats.Msg
	codes     *codes
	authUser  nkeys.KeyPair // the responder's auth_users user
	sysUser   nkeys.KeyPair // the responder's system-account user (callout-system)
	sysReader nkeys.KeyPair // a system-account user with the reader's rights instead
	svcUser   nkeys.KeyPair
	signer    nkeys.KeyPair
	xkey      nkeys.KeyPair
	stopResp  func() // stops the first responder
	stopPipe  func() // stops the pipeline
	lastID    string // the request of the last grant
}

func start(t *testing.T, sealed bool) *fixture {
	t.Helper()
	return startWith(t, sealed, writtest.Options{})
}

// startWith is start with a setup of o's policies and flows.
func startWith(t *testing.T, sealed bool, o writtest.Options) *fixture {
	t.Helper()
	o.NoServe = true
	e := writtest.Start(t, o)
	f := &fixture{e: e, holder: e.Identity(holderName).Key, codes: &codes{}, stopPipe: e.Serve("")}
	f.holderPub, _ = f.holder.PublicKey()
	var err error
	f.js, err = jetstream.New(e.NC)
	require.NoError(t, err)
	f.acmeIss, err = issuer.New(e.Runtime.IssuerKey, e.Runtime.IssuerXKey)
	require.NoError(t, err)
	otherKey := mustKey(t, nkeys.CreateServer)
	otherPub, _ := otherKey.PublicKey()
	f.otherIss, err = issuer.New(otherKey, mustKey(t, nkeys.CreateCurveKeys))
	require.NoError(t, err)
	f.bundle = cloneBundle(t, e.Runtime.Bundle)
	f.bundle.Domains["other"] = &identity.Domain{Components: map[identity.Role][]string{identity.RoleIssuer: {otherPub}}}
	require.NoError(t, f.bundle.Validate())

	f.signer = mustKey(t, nkeys.CreateAccount)
	f.authUser = mustKey(t, nkeys.CreateUser)
	f.sysUser = mustKey(t, nkeys.CreateUser)
	f.sysReader = mustKey(t, nkeys.CreateUser)
	f.svcUser = mustKey(t, nkeys.CreateUser)
	if sealed {
		f.xkey = mustKey(t, nkeys.CreateCurveKeys)
	}
	f.target = startTarget(t, f.signer, f.authUser, f.svcUser, f.xkey, f.sysUser, f.sysReader)

	f.svc = connectNkey(t, f.target.ClientURL(), f.svcUser)
	f.heard = make(chan *nats.Msg, 16)
	_, err = f.svc.ChanSubscribe("act.>", f.heard)
	require.NoError(t, err)
	require.NoError(t, f.svc.Flush())
	f.resp, f.stopResp = f.respondStop(t)
	return f
}

// respond starts a Responder (they share the requests: a queue group) and
// waits until it answers; it stops when the test ends, or with stop.
func (f *fixture) respond(t *testing.T) *callout.Responder {
	t.Helper()
	r, _ := f.respondStop(t)
	return r
}

func (f *fixture) respondStop(t *testing.T) (*callout.Responder, func()) {
	t.Helper()
	resp := f.responder(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- resp.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, resp.WaitReady(wctx))
	return resp, stop
}

// responder returns a Responder for the target, not yet running.
func (f *fixture) responder(t *testing.T) *callout.Responder {
	t.Helper()
	sysPub, _ := f.sysUser.PublicKey()
	logger := slog.New(f.codes)
	resp, err := callout.New(callout.Config{
		Conn:   connectNkey(t, f.target.ClientURL(), f.authUser),
		System: connectNkey(t, f.target.ClientURL(), f.sysUser, nats.CustomInboxPrefix(access.InboxPrefix(writtest.Domain, sysPub))),
		Redeem: redeem.Config{
			NC: f.e.NC, Domain: writtest.Domain, Bundle: f.bundle, Key: f.e.Runtime.RedeemerKey, Logger: logger,
		},
		Signer: f.signer, Account: "APP", XKey: f.xkey, Logger: logger,
	})
	require.NoError(t, err)
	return resp
}

// targetConf is the target server's configuration: the responder's user in
// AUTH, a service user in APP, the responder's system-account user in SYS
// with the callout-system role's rights (all three skip the callout), every
// other client authorized by the callout and placed in APP.
const targetConf = `
listen: "127.0.0.1:-1"
accounts {
  AUTH { users: [ { nkey: %[1]s } ] }
  APP  { users: [ { nkey: %[2]s } ] }
  SYS  { users: [ %[5]s, %[7]s ] }
}
system_account: SYS
authorization {
  auth_callout {
    issuer: %[3]s
    account: AUTH
    auth_users: [ %[1]s, %[2]s, %[6]s, %[8]s ]
    %[4]s
  }
}
`

// startTarget starts the target server; sysUser is a system-account user
// with the callout-system role's rights, sysReader one with the reader's.
func startTarget(t *testing.T, signer, authUser, svcUser, xkey, sysUser, sysReader nkeys.KeyPair) *server.Server {
	t.Helper()
	pub := func(kp nkeys.KeyPair) string { p, _ := kp.PublicKey(); return p }
	xline := ""
	if xkey != nil {
		xline = "xkey: " + pub(xkey)
	}
	path := filepath.Join(t.TempDir(), "target.conf")
	conf := fmt.Sprintf(targetConf, pub(authUser), pub(svcUser), pub(signer), xline,
		confUser(t, sysUser, access.CalloutSystem), pub(sysUser), confUser(t, sysReader, access.Reader), pub(sysReader))
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	opts, err := server.ProcessConfigFile(path)
	require.NoError(t, err)
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// confUser is a config-mode nkey user with role's rights, as
// internal/access computes them.
func confUser(t *testing.T, kp nkeys.KeyPair, role access.Role) string {
	t.Helper()
	pub, _ := kp.PublicKey()
	p, err := access.Permissions(access.Scope{Domain: writtest.Domain, User: pub}, role)
	require.NoError(t, err)
	list := func(l []string) string { return `["` + strings.Join(l, `", "`) + `"]` }
	return fmt.Sprintf("{ nkey: %s, permissions: { publish: { allow: %s }, subscribe: { allow: %s } } }",
		pub, list(p.Pub.Allow), list(p.Sub.Allow))
}

func connectNkey(t *testing.T, url string, kp nkeys.KeyPair, opts ...nats.Option) *nats.Conn {
	t.Helper()
	pub, _ := kp.PublicKey()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Nkey(pub, kp.Sign)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// connect connects to the target as kp, presenting grant as the token.
func (f *fixture) connect(t *testing.T, kp nkeys.KeyPair, grant string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	pub, _ := kp.PublicKey()
	nc, err := nats.Connect(f.target.ClientURL(), append([]nats.Option{
		nats.Nkey(pub, kp.Sign), nats.Token(grant), nats.NoReconnect(),
		nats.CustomInboxPrefix("_INBOX." + pub),
	}, opts...)...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// refused asserts that connecting is refused, and that the responder (or
// its redeemer) logged the refusal with code.
func (f *fixture) refused(t *testing.T, kp nkeys.KeyPair, grant, code string) {
	t.Helper()
	_, err := f.connect(t, kp, grant)
	require.ErrorIs(t, err, nats.ErrAuthorization)
	assert.Eventually(t, func() bool { return f.codes.has(code) }, 2*time.Second, 10*time.Millisecond,
		"refusal code %q; logged: %v", code, f.codes.list())
}

// grant has the pipeline grant deploy to the deploy bot.
func (f *fixture) grant(t *testing.T, ttl time.Duration) (string, string) {
	t.Helper()
	id := f.e.Request(holderName, client.Spec{Action: action, Resource: resource, Params: map[string]string{"version": "1.4.2"}, TTL: ttl})
	r := f.e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	token, err := client.OpenGrant(r.State, f.e.Identity(holderName))
	require.NoError(t, err)
	f.lastID = id
	return id, token
}

// token is a new grant's.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	_, token := f.grant(t, 5*time.Minute)
	return token
}

func (f *fixture) history(t *testing.T, id string) (request.State, []*events.Redeemed) {
	t.Helper()
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	var out []*events.Redeemed
	for _, rec := range r.Records {
		if rec.Kind == events.KindRedeemed {
			require.NoError(t, rec.Err)
			out = append(out, rec.Data.(*events.Redeemed))
		}
	}
	return r.State, out
}

func TestScopeEnforcedByServer(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "xkey"}[sealed], func(t *testing.T) {
			t.Parallel()
			f := start(t, sealed)
			id, token := f.grant(t, 5*time.Minute)

			asyncErrs := make(chan error, 8)
			nc, err := f.connect(t, f.holder, token, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				asyncErrs <- err
			}))
			require.NoError(t, err)

			require.NoError(t, nc.Publish(allowed, []byte("go")))
			require.NoError(t, nc.Flush())
			select {
			case m := <-f.heard:
				assert.Equal(t, allowed, m.Subject)
				assert.Equal(t, "go", string(m.Data))
			case <-time.After(2 * time.Second):
				t.Fatal("the service did not hear the allowed publish")
			}

			for _, subj := range []string{"act.acme.deploy.staging.api", "act.acme.rollback.staging.web", "act.acme.deploy.staging.web.x", "writ.acme.x.requested"} {
				require.NoError(t, nc.Publish(subj, []byte("no")))
				require.NoError(t, nc.Flush())
				select {
				case err := <-asyncErrs:
					assert.ErrorIs(t, err, nats.ErrPermissionViolation, subj)
				case <-time.After(2 * time.Second):
					t.Fatalf("no permissions violation for %s", subj)
				}
			}
			_, err = nc.Subscribe("act.>", func(*nats.Msg) {})
			require.NoError(t, err)
			select {
			case err := <-asyncErrs:
				assert.ErrorIs(t, err, nats.ErrPermissionViolation, "subscribe")
			case <-time.After(2 * time.Second):
				t.Fatal("no permissions violation for a subscription")
			}
			select {
			case m := <-f.heard:
				t.Fatalf("the service heard a refused publish on %s", m.Subject)
			case <-time.After(100 * time.Millisecond):
			}
			assert.True(t, nc.IsConnected(), "a violation does not close the connection")

			// Consumed as a redemption is, and recorded as one.
			st, rs := f.history(t, id)
			assert.Equal(t, request.StatusRedeemed, st.Status)
			require.Len(t, rs, 1)
			assert.Equal(t, events.RedemptionRedeemed, rs[0].Outcome)
			assert.Equal(t, callout.ServiceName, rs[0].Service)
			assert.Equal(t, f.holderPub, rs[0].Holder)
			assert.Equal(t, issuer.TokenHash(token), rs[0].TokenHash)
		})
	}
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	now := time.Now()
	stranger := mustKey(t, nkeys.CreateUser)

	t.Run("already used", func(t *testing.T) {
		id, token := f.grant(t, 5*time.Minute)
		nc, err := f.connect(t, f.holder, token)
		require.NoError(t, err)
		nc.Close()
		f.refused(t, f.holder, token, "already-used")
		_, rs := f.history(t, id)
		require.Len(t, rs, 2)
		assert.Equal(t, events.RedemptionRefused, rs[1].Outcome)
		assert.Equal(t, "already-used", rs[1].Code)
	})
	t.Run("revoked", func(t *testing.T) {
		id, token := f.grant(t, 5*time.Minute)
		require.NoError(t, redeem.Revoke(t.Context(), f.js, id, "", "compromised host"))
		require.Eventually(t, func() bool { return f.resp.Revoked(id, issuer.TokenHash(token)) }, 2*time.Second, 5*time.Millisecond)
		f.refused(t, f.holder, token, "revoked")
		st, rs := f.history(t, id)
		assert.Equal(t, request.StatusGranted, st.Status, "a refused grant is not consumed")
		require.Len(t, rs, 1)
		assert.Equal(t, "revoked", rs[0].Code)
	})
	t.Run("held by another key", func(t *testing.T) {
		id, token := f.grant(t, 5*time.Minute)
		f.refused(t, stranger, token, "wrong-holder")
		// And the holder can still use it: the refusal consumed nothing.
		_, err := f.connect(t, f.holder, token)
		require.NoError(t, err)
		st, _ := f.history(t, id)
		assert.Equal(t, request.StatusRedeemed, st.Status)
	})
	t.Run("expired", func(t *testing.T) {
		token, _, err := f.acmeIss.Mint(issuer.Constraints{
			RequestID: "0190a6c2-7a4e-7cc0-8000-000000000001", Holder: f.holderPub, Audience: writtest.Domain,
			Action: action, Resource: resource, NotBefore: now.Add(-2 * time.Minute), TTL: issuer.MinTTL,
		})
		require.NoError(t, err)
		f.refused(t, f.holder, token, "expired")
	})
	t.Run("for another domain", func(t *testing.T) {
		token, _, err := f.otherIss.Mint(issuer.Constraints{
			RequestID: "0190a6c2-7a4e-7cc0-8000-000000000002", Holder: f.holderPub, Audience: "other",
			Action: action, Resource: resource, NotBefore: now, TTL: 5 * time.Minute,
		})
		require.NoError(t, err)
		f.refused(t, f.holder, token, "wrong-audience")
	})
	t.Run("not a grant", func(t *testing.T) {
		f.refused(t, f.holder, "let me in", "malformed")
	})
	t.Run("no grant", func(t *testing.T) {
		_, err := nats.Connect(f.target.ClientURL(), nats.Nkey(f.holderPub, f.holder.Sign), nats.NoReconnect())
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})
}

// TestClosedAtExpiry uses two grants of the shortest lifetime: the server
// closes the connection made with the first when it expires; the second,
// presented just after its expiry (within the redeemer's leeway), is
// refused, since a connection cannot outlive its grant.
func TestClosedAtExpiry(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	_, first := f.grant(t, issuer.MinTTL)
	_, second := f.grant(t, issuer.MinTTL)
	c, err := issuer.Verify(first, issuer.VerifyOptions{Bundle: f.bundle, Audience: writtest.Domain})
	require.NoError(t, err)
	c2, err := issuer.Verify(second, issuer.VerifyOptions{Bundle: f.bundle, Audience: writtest.Domain})
	require.NoError(t, err)

	closed := make(chan time.Time, 1)
	asyncErrs := make(chan error, 4)
	nc, err := f.connect(t, f.holder, first,
		nats.ClosedHandler(func(*nats.Conn) { closed <- time.Now() }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs <- err }))
	require.NoError(t, err)
	require.NoError(t, nc.Publish(allowed, []byte("before expiry")))
	require.NoError(t, nc.Flush())

	select {
	case at := <-closed:
		assert.WithinDuration(t, c.Expires, at, 1500*time.Millisecond, "closed at the grant's expiry")
		select {
		case err := <-asyncErrs:
			assert.ErrorIs(t, err, nats.ErrAuthExpired)
		default:
			t.Error("no authentication-expired error from the server")
		}
	case <-time.After(time.Until(c.Expires) + 5*time.Second):
		t.Fatal("the connection outlived its grant")
	}
	time.Sleep(time.Until(c2.Expires))
	f.refused(t, f.holder, second, "expired")
}

// codes collects the "code" attribute of log records.
type codes struct {
	mu    sync.Mutex
	seen  []string
	attrs []slog.Attr
	root  *codes
}

func (c *codes) Enabled(context.Context, slog.Level) bool { return true }
func (c *codes) WithGroup(string) slog.Handler            { return c }
func (c *codes) WithAttrs(as []slog.Attr) slog.Handler {
	return &codes{attrs: append(slices.Clone(c.attrs), as...), root: c.top()}
}
func (c *codes) top() *codes {
	if c.root != nil {
		return c.root
	}
	return c
}
func (c *codes) Handle(_ context.Context, r slog.Record) error {
	add := func(a slog.Attr) {
		if a.Key == "code" {
			top := c.top()
			top.mu.Lock()
			top.seen = append(top.seen, a.Value.String())
			top.mu.Unlock()
		}
	}
	for _, a := range c.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	return nil
}
func (c *codes) list() []string {
	top := c.top()
	top.mu.Lock()
	defer top.mu.Unlock()
	return slices.Clone(top.seen)
}
func (c *codes) has(code string) bool { return slices.Contains(c.list(), code) }

func mustKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	return kp
}

func cloneBundle(t testing.TB, b *identity.Bundle) *identity.Bundle {
	t.Helper()
	raw, err := json.Marshal(b)
	require.NoError(t, err)
	var out identity.Bundle
	require.NoError(t, json.Unmarshal(raw, &out))
	return &out
}
