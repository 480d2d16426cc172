package callout

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
)

// Wire names of NATS auth callout.
const (
	// AuthSubject is where the server sends authorization requests.
	AuthSubject = "$SYS.REQ.USER.AUTH"
	// requestAudience is the audience of the server's request claims.
	requestAudience = "nats-authorization-request"
	// xkeyHeader carries the server's curve key when the request is sealed.
	xkeyHeader = "Nats-Server-Xkey"
	// QueueGroup lets several responders share the requests.
	QueueGroup = "writ-callout"
)

// ServiceName is the service recorded in the redeemed events of grants
// used through the callout.
const ServiceName = "nats-callout"

// MaxRequest bounds the size of an authorization request.
const MaxRequest = 64 << 10

// attrRequest is the log attribute of a request id (as the redeemer's).
const attrRequest = "request_id"

// Errors of request parsing and of the holder's proof.
var (
	ErrBadRequest = errors.New("callout: malformed authorization request")
	ErrNoGrant    = errors.New("callout: the connection presents no grant (token or password)")
	ErrBadNonce   = errors.New("callout: the connecting nkey did not sign the server's nonce")
)

// Config configures a Responder.
type Config struct {
	// Conn is the connection to the target server, as one of its
	// auth_callout auth_users; the Responder subscribes on it.
	Conn *nats.Conn
	// System is a connection to the target server as a user of its system
	// account allowed SystemSubjects alone (role access.CalloutSystem;
	// its inbox prefix set to its own): the Responder lists the
	// connections grants opened and ends those of revoked grants and
	// locked holders. Without it no connection is authorized.
	System *nats.Conn
	// Redeem configures the Redeemer that checks and consumes grants (its
	// NC reaches the domain's Writ JetStream: audit stream and KV buckets).
	// Service defaults to ServiceName.
	Redeem redeem.Config
	// Signer signs responses and user JWTs: the account nkey whose public
	// key is auth_callout's issuer.
	Signer nkeys.KeyPair
	// Account is the account granted users are placed in (config mode);
	// "" in operator mode.
	Account string
	// XKey, when set, is the curve key requests are sealed to
	// (auth_callout's xkey); responses are then sealed too.
	XKey nkeys.KeyPair
	// Prefix is the first token of action subjects; default DefaultPrefix.
	Prefix string
	// Workers is how many requests are handled at once; default 8.
	Workers int
	// SweepEvery is how often the target's connections are listed again
	// to find those another responder authorized; default
	// DefaultSweepEvery.
	SweepEvery time.Duration
	Logger     *slog.Logger
}

// ErrInvalidConfig is what an error of Validate (and New) matches: a
// Responder cannot run with the configuration.
var ErrInvalidConfig = errors.New("invalid callout configuration")

// Validate checks the configuration and changes nothing: a zero value
// means its default, which New fills in (withDefaults). The redeemer's
// configuration is redeem.New's to check.
func (c Config) Validate() error {
	var errs []error
	if c.Conn == nil {
		errs = append(errs, errors.New("no connection to the target server"))
	}
	if c.System == nil {
		errs = append(errs, errors.New("no system-account connection to the target server: revoked grants' connections could not be ended"))
	}
	if c.Signer == nil {
		errs = append(errs, errors.New("no signer key"))
	} else if pub, err := c.Signer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		errs = append(errs, errors.New("the signer must be an account nkey (auth_callout issuer)"))
	}
	if c.XKey != nil {
		if pub, err := c.XKey.PublicKey(); err != nil || !nkeys.IsValidPublicCurveKey(pub) {
			errs = append(errs, errors.New("the xkey must be a curve nkey"))
		}
	}
	if err := validPrefix(c.withDefaults().Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// withDefaults returns the configuration with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.SweepEvery <= 0 {
		c.SweepEvery = DefaultSweepEvery
	}
	if c.Redeem.Service == "" {
		c.Redeem.Service = ServiceName
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Redeem.Logger == nil {
		c.Redeem.Logger = c.Logger
	}
	return c
}

// Responder answers a NATS server's authorization requests with grants.
type Responder struct {
	cfg      Config
	redeemer *redeem.Redeemer
	log      *slog.Logger
	account  string // the account granted users are placed in, as the server names it
	live     *live
	armed    atomic.Bool // the system connection was shown to list and end connections
}

// New returns a Responder. It does no I/O: Run subscribes.
func New(cfg Config) (*Responder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r, err := redeem.New(cfg.Redeem)
	if err != nil {
		return nil, fmt.Errorf("callout: %w", err)
	}
	account := cfg.Account
	if account == "" {
		// Operator mode: the account is named by its key, the signer.
		account, _ = cfg.Signer.PublicKey()
	}
	resp := &Responder{cfg: cfg, redeemer: r, log: cfg.Logger.With("component", "callout", "domain", cfg.Redeem.Domain),
		account: account, live: newLive()}
	r.OnChange(resp.live.heard)
	return resp, nil
}

// WaitReady waits until the Redeemer is in sync with the revocation and
// lock lists, and the system-account connection has been shown to list and
// end connections; until then every request is refused.
func (r *Responder) WaitReady(ctx context.Context) error {
	if err := r.redeemer.WaitReady(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !r.armed.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrCannotEnd, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Revoked reports whether the Redeemer has heard of a revocation of the
// request or the token hash.
func (r *Responder) Revoked(requestID, tokenHash string) bool {
	return r.redeemer.Revoked(requestID, tokenHash)
}

// Locked returns the lock on a principal, its key or its domain, as the
// Redeemer last heard of the lock list, or nil.
func (r *Responder) Locked(p identity.Principal) error { return r.redeemer.Locked(p) }

// Run runs the Redeemer, answers requests and ends the connections of
// revoked grants and locked holders until ctx ends; it returns once its
// goroutines are done. It returns an error early when the system-account
// connection cannot list and end connections.
func (r *Responder) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	rerr := make(chan error, 1)
	wg.Go(func() {
		err := r.redeemer.Run(ctx)
		if err != nil {
			cancel()
		}
		rerr <- err
	})
	eerr := make(chan error, 1)
	wg.Go(func() {
		err := r.enforce(ctx)
		if err != nil {
			cancel()
		}
		eerr <- err
	})
	msgs := make(chan *nats.Msg, 64*r.cfg.Workers)
	sub, err := r.cfg.Conn.ChanQueueSubscribe(AuthSubject, QueueGroup, msgs)
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("callout: subscribe %s: %w", AuthSubject, err)
	}
	if err := r.cfg.Conn.Flush(); err != nil {
		r.log.Warn("flush subscription", "error", err)
	}
	r.log.Info("answering authorization requests", "subject", AuthSubject)
	for range r.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-msgs:
					r.handle(ctx, m)
				}
			}
		})
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	wg.Wait()
	return errors.Join(<-rerr, <-eerr)
}

func (r *Responder) handle(ctx context.Context, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	out := r.Respond(ctx, m.Data, m.Header.Get(xkeyHeader))
	if err := m.Respond(out); err != nil {
		r.log.Warn("respond", "error", err)
	}
}

// Respond answers one authorization request (its payload and the value of
// its Nats-Server-Xkey header) with the response payload: a response JWT
// holding a user JWT or an error, sealed when the request was. An empty
// answer, which the server takes as a refusal, is returned for a request
// that cannot be answered at all.
func (r *Responder) Respond(ctx context.Context, data []byte, serverXKey string) []byte {
	req, err := ParseRequest(data, serverXKey, r.cfg.XKey)
	if err != nil {
		r.log.Warn("unreadable authorization request", "error", err)
		return nil
	}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	user, err := r.authorize(ctx, req)
	if err != nil {
		resp.Error = err.Error()
	} else {
		resp.Jwt = user
	}
	tok, err := resp.Encode(r.cfg.Signer)
	if err != nil {
		r.log.Error("sign authorization response", "error", err)
		return nil
	}
	if serverXKey == "" {
		return []byte(tok)
	}
	sealed, err := r.cfg.XKey.Seal([]byte(tok), serverXKey)
	if err != nil {
		r.log.Error("seal authorization response", "error", err)
		return nil
	}
	return sealed
}

// ParseRequest opens (with xkey, when the server sealed it: serverXKey is
// its Nats-Server-Xkey header) and decodes an authorization request, and
// checks that it is signed by the server it names, for auth callout,
// unexpired, and for a user key. With xkey set, a plain request is refused.
func ParseRequest(data []byte, serverXKey string, xkey nkeys.KeyPair) (*jwt.AuthorizationRequestClaims, error) {
	if len(data) == 0 || len(data) > MaxRequest {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadRequest, len(data))
	}
	switch {
	case serverXKey != "" && xkey == nil:
		return nil, fmt.Errorf("%w: sealed, but no xkey is configured", ErrBadRequest)
	case serverXKey == "" && xkey != nil:
		return nil, fmt.Errorf("%w: in clear, but an xkey is configured", ErrBadRequest)
	case serverXKey != "":
		if !nkeys.IsValidPublicCurveKey(serverXKey) {
			return nil, fmt.Errorf("%w: the server xkey is not a curve key", ErrBadRequest)
		}
		pt, err := xkey.Open(data, serverXKey)
		if err != nil {
			return nil, fmt.Errorf("%w: open: %v", ErrBadRequest, err)
		}
		data = pt
	}
	req, err := jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	vr := jwt.CreateValidationResults()
	req.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, errors.Join(errs...))
	}
	if req.Audience != requestAudience {
		return nil, fmt.Errorf("%w: audience %q", ErrBadRequest, req.Audience)
	}
	if req.Issuer != req.Server.ID {
		return nil, fmt.Errorf("%w: not signed by the server it names", ErrBadRequest)
	}
	if !nkeys.IsValidPublicUserKey(req.UserNkey) {
		return nil, fmt.Errorf("%w: no user nkey to authorize", ErrBadRequest)
	}
	if serverXKey != "" && req.Server.XKey != serverXKey {
		return nil, fmt.Errorf("%w: the xkey header differs from the signed one", ErrBadRequest)
	}
	return req, nil
}

// Holder returns the connecting client's nkey and grant after checking
// that the nkey signed the nonce the server sent it.
func Holder(req *jwt.AuthorizationRequestClaims) (holder, grant string, err error) {
	co := req.ConnectOptions
	grant = co.Token
	if grant == "" {
		grant = co.Password
	}
	if grant == "" {
		return "", "", ErrNoGrant
	}
	if !nkeys.IsValidPublicUserKey(co.Nkey) {
		return "", "", fmt.Errorf("%w: no user nkey in the connect", ErrBadNonce)
	}
	nonce := req.ClientInformation.Nonce
	if nonce == "" || co.SignedNonce == "" {
		return "", "", fmt.Errorf("%w: the server sent no nonce, or the client no signature", ErrBadNonce)
	}
	sig, err := base64.RawURLEncoding.DecodeString(co.SignedNonce)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(co.SignedNonce); err != nil {
			return "", "", fmt.Errorf("%w: signature is not base64", ErrBadNonce)
		}
	}
	pub, err := nkeys.FromPublicKey(co.Nkey)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrBadNonce, err)
	}
	if err := pub.Verify([]byte(nonce), sig); err != nil {
		return "", "", ErrBadNonce
	}
	return co.Nkey, grant, nil
}

// authorize checks the holder and redeems the grant, returning the user JWT.
func (r *Responder) authorize(ctx context.Context, req *jwt.AuthorizationRequestClaims) (string, error) {
	log := r.log.With("client_id", req.ClientInformation.ID, "host", req.ClientInformation.Host)
	holder, grant, err := Holder(req)
	if err != nil {
		log.Info("refused", "code", "bad-holder", "error", err)
		return "", err
	}
	// Fail closed: a connection the Responder could not end, were its
	// grant revoked, is not opened, and its grant not used.
	if !r.armed.Load() || !r.cfg.System.IsConnected() {
		err := fmt.Errorf("%w: its system-account connection is down or not checked yet; no grant is used", ErrCannotEnd)
		log.Warn("refused", "code", "cannot-end", "error", err)
		return "", err
	}
	var subject string
	accept := func(c issuer.Claims) error {
		if now := r.clock(); !now.Before(c.Expires.Add(-time.Second)) {
			return fmt.Errorf("%w: at %s; a connection cannot outlive its grant", issuer.ErrExpired, c.Expires.Format(time.RFC3339))
		}
		s, err := Subject(r.cfg.Prefix, c.Audience, c.Action, c.Resource)
		subject = s
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := r.redeemer.RedeemAsHolder(rctx, grant, holder, accept)
	if err != nil {
		// The redeemer has logged and recorded the refusal.
		return "", err
	}
	// Tracked before the server hears the answer: a revocation from now
	// on ends it (the server holds the client from its first byte); one
	// heard before is refused here.
	hash := issuer.TokenHash(grant)
	r.live.track(&liveConn{connKey: connKey{server: req.Server.ID, cid: req.ClientInformation.ID},
		id: c.RequestID, hash: hash, expires: c.Expires, since: r.clock()})
	if r.redeemer.Revoked(c.RequestID, hash) {
		log.Info("refused", "code", "revoked", attrRequest, c.RequestID, "error", "revoked while being redeemed")
		return "", fmt.Errorf("%w: revoked while being redeemed", redeem.ErrRevoked)
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = UserPrefix + c.RequestID
	uc.Audience = r.cfg.Account
	uc.Expires = c.Expires.Unix()
	uc.Permissions.Pub.Allow.Add(subject)
	uc.Permissions.Sub.Allow.Add("_INBOX." + holder + ".>")
	user, err := uc.Encode(r.cfg.Signer)
	if err != nil {
		log.Error("sign user JWT", "error", err)
		return "", errors.New("callout: cannot sign the user JWT")
	}
	log.Info("connection authorized", "request_id", c.RequestID, "subject", subject,
		"expires", c.Expires.Format(time.RFC3339))
	return user, nil
}

func (r *Responder) clock() time.Time {
	if r.cfg.Redeem.Clock != nil {
		return r.cfg.Redeem.Clock()
	}
	return time.Now()
}
