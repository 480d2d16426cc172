package redeem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/restart"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// Bounds on how far a proof's time may be from the redeemer's clock.
const (
	DefaultProofWindow = 30 * time.Second
	MaxProofWindow     = 2 * time.Minute
)

// Log attribute keys.
const (
	attrRequest   = "request_id"
	attrDomain    = "domain"
	attrTokenHash = "token_hash"
	attrCode      = "code"
	attrSeq       = "stream_seq"
)

// Config configures a Redeemer.
type Config struct {
	NC      *nats.Conn
	Domain  string           // the target domain: this service's
	Bundle  *identity.Bundle // trust bundle: issuer keys per domain, this domain's redeemer keys
	Key     nkeys.KeyPair    // a redeemer key of Domain, listed in the bundle; signs redeemed events
	Service string           // this service's name, recorded in events
	Stream  string           // audit stream; default "WRIT"
	// Leeway is the clock skew tolerated on a grant's nbf and exp; default
	// issuer.DefaultLeeway, at most issuer.MaxLeeway.
	Leeway time.Duration
	// ProofWindow is how far a holder proof's time may be from now, either
	// way; default DefaultProofWindow, at most MaxProofWindow.
	ProofWindow time.Duration
	Replicas    int // replicas of the KV buckets Run creates; default 1
	MaxBody     int // largest event body read from the stream; default events.DefaultMaxBody
	Clock       func() time.Time
	Logger      *slog.Logger
}

// ErrInvalidConfig is what an error of Validate (and New) matches: a
// Redeemer cannot run with the configuration.
var ErrInvalidConfig = errors.New("invalid redeemer configuration")

// Validate checks the configuration and changes nothing: a zero value
// means its default, which New fills in (withDefaults).
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	if c.NC == nil {
		errs = append(errs, errors.New("no NATS connection"))
	}
	if !identity.ValidDomainName(c.Domain) {
		errs = append(errs, fmt.Errorf("invalid domain %q", c.Domain))
	}
	if c.Bundle == nil || c.Bundle.Domains[c.Domain] == nil {
		errs = append(errs, fmt.Errorf("the trust bundle does not list domain %q", c.Domain))
	}
	if c.Key == nil {
		errs = append(errs, errors.New("no redeemer key"))
	} else if pub, err := c.Key.PublicKey(); err != nil {
		errs = append(errs, fmt.Errorf("redeemer key: %w", err))
	} else if c.Bundle != nil && !c.Bundle.Entitled(c.Domain, identity.RoleRedeemer, pub) {
		errs = append(errs, fmt.Errorf("key %s is not a redeemer of %q in the trust bundle", pub, c.Domain))
	}
	if c.Service == "" || len(c.Service) > 128 {
		errs = append(errs, errors.New("a service name of 1 to 128 bytes is required"))
	}
	if d.Leeway < 0 || d.Leeway > issuer.MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway %s outside (0, %s]", d.Leeway, issuer.MaxLeeway))
	}
	if d.ProofWindow < time.Second || d.ProofWindow > MaxProofWindow {
		errs = append(errs, fmt.Errorf("proof window %s outside [1s, %s]", d.ProofWindow, MaxProofWindow))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// withDefaults returns the configuration with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = "WRIT"
	}
	if c.Leeway == 0 {
		c.Leeway = issuer.DefaultLeeway
	}
	if c.ProofWindow == 0 {
		c.ProofWindow = DefaultProofWindow
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxBody <= 0 {
		c.MaxBody = events.DefaultMaxBody
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Redeemer redeems grants for one target domain. Run must be running for
// Redeem to succeed.
type Redeemer struct {
	cfg     Config
	js      jetstream.JetStream
	trail   *history.Log
	author  history.Author
	log     *slog.Logger
	running atomic.Bool

	mu         sync.RWMutex
	ready      bool
	reconnects uint64 // the connection's reconnect count when the watcher synced
	revoked    map[string]string
	used       jetstream.KeyValue
	nonces     jetstream.KeyValue
	locks      *locks.List
	changed    func(requestID string)
}

// New returns a Redeemer. It does no I/O: Run creates the buckets and
// starts the revocation watcher.
func New(cfg Config) (*Redeemer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(cfg.NC)
	if err != nil {
		return nil, err
	}
	trail := history.New(history.Options{
		JS: js, Stream: cfg.Stream, Clock: cfg.Clock,
		Checker: events.Checker{Bundle: cfg.Bundle, MaxBody: cfg.MaxBody},
	})
	r := &Redeemer{
		cfg:     cfg,
		js:      js,
		trail:   trail,
		author:  history.Author{Key: cfg.Key, Source: events.RedeemerSource(cfg.Domain, cfg.Service)},
		log:     cfg.Logger.With("component", "redeemer", attrDomain, cfg.Domain, "service", cfg.Service),
		revoked: map[string]string{},
	}
	r.locks = locks.NewList(cfg.NC, js, trail.Reader(cfg.Domain), trail.Checker(), r.log)
	return r, nil
}

// OnChange makes the Redeemer call fn each time its revocation list or its
// lock list changes, after the change is in (Revoked and CheckLocked see
// it): with the request id when a request's revocation arrived, with ""
// for anything else (a token's revocation, a lock's bucket entry, the list
// read again after a reconnect). fn must not block. Call it before Run.
// The NATS callout uses it to end the connections revoked or locked grants
// opened.
func (r *Redeemer) OnChange(fn func(requestID string)) {
	r.changed = fn
	r.locks.OnChange(func() { fn("") })
}

func (r *Redeemer) notify(key string) {
	if r.changed == nil {
		return
	}
	id, _ := strings.CutPrefix(key, requestKey(""))
	if id == key {
		id = ""
	}
	r.changed(id)
}

// Run creates the KV buckets if they are missing and watches revocations
// until ctx ends; it then returns nil. Redeem refuses with ErrNotReady
// until the watcher has caught up, and again after the connection
// reconnects until it has caught up anew. When the buckets cannot be
// opened or made (ErrUnavailable, ErrBucketTooShort), Run returns that
// error at once: its caller, not a watcher left running, decides.
func (r *Redeemer) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("Run is already running")
	}
	defer r.running.Store(false)
	defer r.setReady(false, nil, 0)
	// Run's goroutines end with it, however it returns (deferred calls
	// run last first: stop them, then wait for them).
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// The lock list, pushed like revocations: a locked holder redeems
	// nothing. Its watcher restarts like the revocation watcher does.
	wg.Go(func() { restart.Loop(ctx, r.log, "lock watcher", r.locks.Run) })
	used, err := ensureBucket(ctx, r.js, bucketConfig(BucketUsed, UsedTTL, r.cfg.Replicas))
	if err != nil {
		return fmt.Errorf("redeem: cannot start: %w", err)
	}
	nonces, err := ensureBucket(ctx, r.js, bucketConfig(BucketNonces, NonceTTL, r.cfg.Replicas))
	if err != nil {
		return fmt.Errorf("redeem: cannot start: %w", err)
	}
	revs, err := ensureBucket(ctx, r.js, bucketConfig(BucketRevocations, RevocationTTL, r.cfg.Replicas))
	if err != nil {
		return fmt.Errorf("redeem: cannot start: %w", err)
	}
	r.mu.Lock()
	r.used, r.nonces = used, nonces
	r.mu.Unlock()
	restart.Loop(ctx, r.log, "revocation watcher", func(ctx context.Context) error { return r.watch(ctx, revs) })
	return nil
}

var errReconnected = errors.New("the connection reconnected")

// watch follows the revocation bucket until ctx ends or the connection
// reconnects (when updates may have been missed: the caller starts over).
func (r *Redeemer) watch(ctx context.Context, revs jetstream.KeyValue) error {
	reconnects := r.cfg.NC.Stats().Reconnects
	w, err := revs.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	pending := map[string]string{}
	synced := false
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if r.cfg.NC.Stats().Reconnects != reconnects {
				r.setReady(false, nil, 0)
				return errReconnected
			}
		case e, ok := <-w.Updates():
			if !ok {
				r.setReady(false, nil, 0)
				return errors.New("revocation watcher closed")
			}
			if e == nil {
				if !synced {
					synced = true
					r.setReady(true, pending, reconnects)
					r.log.Info("revocation list in sync", "revocations", len(pending))
					r.notify("")
				}
				continue
			}
			if !synced {
				apply(pending, e)
				continue
			}
			r.mu.Lock()
			apply(r.revoked, e)
			r.mu.Unlock()
			if e.Operation() == jetstream.KeyValuePut {
				r.log.Info("revocation", "key", e.Key())
				r.notify(e.Key())
			}
		}
	}
}

func apply(m map[string]string, e jetstream.KeyValueEntry) {
	if e.Operation() == jetstream.KeyValuePut {
		m[e.Key()] = string(e.Value())
	} else {
		delete(m, e.Key())
	}
}

func (r *Redeemer) setReady(ready bool, revoked map[string]string, reconnects uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready, r.reconnects = ready, reconnects
	if ready {
		r.revoked = maps.Clone(revoked)
	}
}

// inSync reports whether the revocation list is known to be complete.
func (r *Redeemer) inSync() bool {
	r.mu.RLock()
	ready, reconnects := r.ready, r.reconnects
	r.mu.RUnlock()
	return ready && r.locks.Ready() && r.cfg.NC.IsConnected() && r.cfg.NC.Stats().Reconnects == reconnects
}

// Locked returns the lock on a principal, its key or its domain, as this
// Redeemer last heard of the lock list (locks.ErrLocked), or nil.
func (r *Redeemer) Locked(p identity.Principal) error { return r.locks.Cached(p) }

// CheckLocked is Locked after reading the trail when the lock list has
// news of it (locks.List.Check): locks.ErrLocked, locks.ErrNotReady while
// the list cannot be trusted, or nil.
func (r *Redeemer) CheckLocked(ctx context.Context, p identity.Principal) error {
	return r.locks.Check(ctx, p)
}

// Request reads a request's history from the audit stream and returns it
// folded, as Redeem judges it: only events genuine for their kind count.
func (r *Redeemer) Request(ctx context.Context, id string) (request.State, error) {
	h, err := r.load(ctx, id)
	if err != nil {
		return request.State{}, err
	}
	return h.State, nil
}

// WaitReady waits until Run has caught up with the revocation and lock lists.
func (r *Redeemer) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !r.inSync() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Revoked reports whether the revocation list, as this Redeemer last heard
// of it, names the request or the token hash.
func (r *Redeemer) Revoked(requestID, tokenHash string) bool {
	_, ok := r.revocation(requestID, tokenHash)
	return ok
}

func (r *Redeemer) revocation(requestID, tokenHash string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if reason, ok := r.revoked[tokenKey(tokenHash)]; ok {
		return reason, true
	}
	reason, ok := r.revoked[requestKey(requestID)]
	return reason, ok
}

// attempt is one call of Redeem.
type attempt struct {
	token  string
	hash   string
	holder string // who proved possession: the proof's key, or one the caller vouches for
	proof  Proof
	want   Want
	now    time.Time
	claims issuer.Claims // as far as the token could be read
	// proven: the caller checked possession of holder itself (RedeemAsHolder):
	// there is no Proof, and the grant's own scope is redeemed.
	proven bool
	accept func(issuer.Claims) error
	// genuine: the token is signed by an issuer trusted for this domain.
	// Only a genuine grant's refusals go on the request's record: anyone
	// can sign a token naming a request, and must not be able to write to
	// its history.
	genuine bool
}

// Redeem checks that token allows want for the holder who made proof,
// consumes it, and records the redemption in the audit stream. Only when
// it returns no error may the caller act. Every refusal is an *Error whose
// cause is one of this package's sentinels or one of the issuer's; it is
// recorded in the request's history when the token names a request of this
// domain that the stream holds.
func (r *Redeemer) Redeem(ctx context.Context, token string, proof Proof, want Want) (issuer.Claims, error) {
	return r.run(ctx, &attempt{token: token, hash: issuer.TokenHash(token), holder: proof.Holder, proof: proof, want: want, now: r.cfg.Clock()})
}

// RedeemAsHolder redeems token for a holder whose possession of its user
// key the caller has checked itself — as the NATS auth callout does, with
// the signature of the server's nonce — instead of with a Proof. It redeems
// the grant's own scope (its action, resource and parameters, which the
// caller then enforces), after every other check Redeem makes: signature,
// issuer, audience, type, validity window, holder, revocation, the audit
// stream's grant, single use. accept, when not nil, is asked last, before
// the grant is consumed; a refusal by it wraps ErrNotAccepted (and keeps
// the code of an error of this package or the issuer's that it wraps).
// Refusals are recorded as Redeem's are.
func (r *Redeemer) RedeemAsHolder(ctx context.Context, token, holder string, accept func(issuer.Claims) error) (issuer.Claims, error) {
	return r.run(ctx, &attempt{token: token, hash: issuer.TokenHash(token), holder: holder, now: r.cfg.Clock(), proven: true, accept: accept})
}

func (r *Redeemer) run(ctx context.Context, a *attempt) (issuer.Claims, error) {
	claims, err := r.redeem(ctx, a)
	if err == nil {
		r.log.Info("redeemed", attrRequest, claims.RequestID, attrTokenHash, a.hash)
		return claims, nil
	}
	e := &Error{Code: Code(err), TokenHash: a.hash, Err: err}
	if a.genuine && a.claims.Audience == r.cfg.Domain {
		e.RequestID = a.claims.RequestID
	}
	r.refuse(ctx, a, e)
	return issuer.Claims{}, e
}

// check does the checks that need no I/O: the grant, the holder proof
// (but not its nonce) and the revocation list.
func (r *Redeemer) check(a *attempt) (issuer.Claims, error) {
	if a.proven {
		if !nkeys.IsValidPublicUserKey(a.holder) {
			return issuer.Claims{}, fmt.Errorf("%w: the holder is not a user public key", issuer.ErrWrongHolder)
		}
	} else if a.want.Action == "" || a.want.Resource == "" {
		return issuer.Claims{}, ErrNoScope
	}
	if !r.inSync() {
		return issuer.Claims{}, ErrNotReady
	}
	opts := issuer.VerifyOptions{
		Bundle: r.cfg.Bundle, Audience: r.cfg.Domain, Holder: a.holder, Now: a.now, Leeway: r.cfg.Leeway,
	}
	if !a.proven {
		opts.Action, opts.Resource, opts.Params = a.want.Action, a.want.Resource, a.want.Params
		if opts.Params == nil {
			opts.Params = map[string]string{}
		}
	}
	c, err := issuer.Verify(a.token, opts)
	a.claims = c
	a.genuine = err == nil || !(errors.Is(err, issuer.ErrMalformed) || errors.Is(err, issuer.ErrWrongType) ||
		errors.Is(err, issuer.ErrWrongAudience) || errors.Is(err, issuer.ErrUntrustedIssuer) || errors.Is(err, issuer.ErrNoAudience))
	if err != nil {
		return c, err
	}
	if c.ID == "" {
		return c, fmt.Errorf("%w: no jti", issuer.ErrMalformed)
	}
	if u, err := uuid.Parse(c.RequestID); err != nil || u.String() != c.RequestID {
		return c, fmt.Errorf("%w: the grant names no request id", ErrNotGranted)
	}
	// The used entry is written now and kept UsedTTL: it must outlive the
	// grant, whatever the skew between this clock and the server's.
	if c.Expires.Add(r.cfg.Leeway + issuer.MaxLeeway).After(a.now.Add(UsedTTL)) {
		return c, fmt.Errorf("%w: expires %s", ErrTooLong, c.Expires.Format(time.RFC3339))
	}
	if !a.proven {
		if err := a.proof.verify(c.Holder, a.hash, a.want); err != nil {
			return c, err
		}
		if d := a.now.Sub(a.proof.Time); d > r.cfg.ProofWindow || d < -r.cfg.ProofWindow {
			return c, fmt.Errorf("%w: made at %s, %s from now (window %s)", ErrStaleProof,
				a.proof.Time.Format(time.RFC3339Nano), d.Round(time.Millisecond), r.cfg.ProofWindow)
		}
	}
	if reason, ok := r.revocation(c.RequestID, a.hash); ok {
		return c, fmt.Errorf("%w: %s", ErrRevoked, reason)
	}
	if a.accept != nil {
		if err := a.accept(c); err != nil {
			return c, fmt.Errorf("%w: %w", ErrNotAccepted, err)
		}
	}
	return c, nil
}

func (r *Redeemer) redeem(ctx context.Context, a *attempt) (issuer.Claims, error) {
	c, err := r.check(a)
	if err != nil {
		return c, err
	}
	r.mu.RLock()
	used, nonces := r.used, r.nonces
	r.mu.RUnlock()
	if !a.proven {
		if _, err := nonces.Create(ctx, a.proof.Holder+"."+a.proof.Nonce, []byte(a.hash)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return c, ErrReplayedProof
			}
			return c, fmt.Errorf("%w: record proof nonce: %w", ErrUnavailable, err)
		}
	}
	h, err := r.load(ctx, c.RequestID)
	if err != nil {
		return c, err
	}
	if err := r.unlocked(ctx, h.State); err != nil {
		return c, err
	}
	if err := granted(h.State, a.hash); err != nil {
		return c, err
	}
	// Consume the grant: from here on it is used up, whatever happens next.
	if _, err := used.Create(ctx, usedKey(c.ID), []byte(a.hash)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return c, ErrAlreadyUsed
		}
		return c, fmt.Errorf("%w: consume grant: %w", ErrUnavailable, err)
	}
	if err := r.recordRedeemed(ctx, a); err != nil {
		return c, err
	}
	return c, nil
}

// unlocked refuses a grant whose requester (its holder), key or domain is
// locked, by the lock bucket or by the trail; it fails closed until the
// lock list is loaded.
func (r *Redeemer) unlocked(ctx context.Context, st request.State) error {
	err := r.locks.Check(ctx, st.Requester)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, locks.ErrNotReady):
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return fmt.Errorf("%w: %v", ErrLocked, err)
}

// granted says whether the history holds a live grant of this token.
func granted(st request.State, hash string) error {
	if st.Grant == nil || st.Grant.TokenHash != hash {
		return fmt.Errorf("%w: request %s has no granted event for this token", ErrNotGranted, st.ID)
	}
	switch st.Status {
	case request.StatusGranted:
		return nil
	case request.StatusRevoked:
		if st.Revocation == nil {
			return fmt.Errorf("%w: the audit stream records it revoked", ErrRevoked)
		}
		return fmt.Errorf("%w: the audit stream records it revoked by %s: %s", ErrRevoked, st.Revocation.By.ID(), st.Revocation.Reason)
	case request.StatusRedeemed:
		return fmt.Errorf("%w: redeemed at %s", ErrAlreadyUsed, st.RedeemedAt.Format(time.RFC3339))
	}
	return fmt.Errorf("%w: request %s is %s", ErrNotGranted, st.ID, st.Status)
}

// usedKey names a consumed grant in the used bucket by a digest of its
// jti, so that the jti itself is kept nowhere in clear.
func usedKey(jti string) string {
	return strings.TrimPrefix(events.Digest([]byte("writ jti\x00"+jti)), "sha256:")
}

func (r *Redeemer) load(ctx context.Context, id string) (*history.History, error) {
	h, err := r.trail.Load(ctx, r.cfg.Domain, id, history.Reach{})
	if err != nil {
		return nil, fmt.Errorf("%w: read history: %w", ErrUnavailable, err)
	}
	return h, nil
}

// recordRedeemed appends the redeemed event (history.Extend: read again
// when another writer appended first). The grant is already consumed: any
// failure here is ErrNotRecorded, unless the history now says the grant
// was revoked in the meantime.
func (r *Redeemer) recordRedeemed(ctx context.Context, a *attempt) error {
	x, err := r.trail.Extend(ctx, r.cfg.Domain, a.claims.RequestID, history.Reach{}, r.author, func(h *history.History) (*history.Event, error) {
		if err := granted(h.State, a.hash); err != nil {
			return nil, err
		}
		return &history.Event{Kind: events.KindRedeemed, Data: &events.Redeemed{
			Prev:      h.State.LastDigest,
			Outcome:   events.RedemptionRedeemed,
			TokenHash: a.hash,
			Holder:    a.claims.Holder,
			Service:   r.cfg.Service,
		}}, nil
	})
	switch {
	case errors.Is(err, ErrRevoked):
		return err
	case errors.Is(err, ErrNotGranted), errors.Is(err, ErrAlreadyUsed):
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	case err != nil:
		// The stream could not be read or written: unavailable, as before.
		r.log.Warn("append redeemed", attrRequest, a.claims.RequestID, "error", err)
		return fmt.Errorf("%w: %w: %w", ErrNotRecorded, ErrUnavailable, err)
	}
	r.log.Debug("appended", attrRequest, a.claims.RequestID, attrSeq, x.Seq)
	return nil
}

// refuse logs a refusal and records it in the request's history when the
// token names a request of this domain that the stream holds. It never
// logs the token or its jti.
func (r *Redeemer) refuse(ctx context.Context, a *attempt, e *Error) {
	log := r.log.With(attrTokenHash, a.hash, attrCode, e.Code)
	if e.RequestID != "" {
		log = log.With(attrRequest, e.RequestID)
	}
	log.Info("refused", "error", e.Err)
	if e.RequestID == "" || errors.Is(e, ErrNotReady) || errors.Is(e, ErrNotRecorded) {
		return
	}
	if u, err := uuid.Parse(e.RequestID); err != nil || u.String() != e.RequestID {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	reason := e.Err.Error()
	if len(reason) > 2000 {
		reason = reason[:2000] + "…"
	}
	holder := ""
	if nkeys.IsValidPublicUserKey(a.holder) {
		holder = a.holder
	}
	ordinal := make([]byte, 8)
	_, _ = rand.Read(ordinal)
	_, err := r.trail.Extend(ctx, r.cfg.Domain, e.RequestID, history.Reach{}, r.author, func(h *history.History) (*history.Event, error) {
		if h.State.Request == nil {
			return nil, nil // no such request here: nothing to record it in
		}
		return &history.Event{Kind: events.KindRedeemed, Ordinal: "refused-" + hex.EncodeToString(ordinal), Data: &events.Redeemed{
			Prev:      h.State.LastDigest,
			Outcome:   events.RedemptionRefused,
			Code:      e.Code,
			Reason:    reason,
			TokenHash: a.hash,
			Holder:    holder,
			Service:   r.cfg.Service,
		}}, nil
	})
	if err != nil {
		log.Warn("cannot record the refusal", "error", err)
	}
}
