package callout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/request"
)

// Wire names of the target server's system services the Responder uses to
// end the connections of revoked or locked grants.
const (
	// ConnzPing asks every server of the target for its connections.
	ConnzPing = "$SYS.REQ.SERVER.PING.CONNZ"
	// connzServer and kickServer are one server's (by its id).
	connzServer = "$SYS.REQ.SERVER.%s.CONNZ"
	kickServer  = "$SYS.REQ.SERVER.%s.KICK"
	// UserPrefix names the users the Responder authorizes: UserPrefix and
	// the grant's request id. nats-server reports it as the connection's
	// user, which is how a connection is found again after a restart.
	UserPrefix = "writ-grant-"
)

// SystemSubjects are all the Responder's system-account user publishes:
// the connection lists of the target's servers (CONNZ, to find the
// connections grants opened) and the disconnection of one client (KICK).
// Its role is access.CalloutSystem.
var SystemSubjects = []string{"$SYS.REQ.SERVER.*.CONNZ", "$SYS.REQ.SERVER.*.KICK"}

// Timing of the enforcement.
const (
	// CheckEvery is how often every live connection is held against the
	// revocation and lock lists, besides when they change.
	CheckEvery = time.Second
	// DefaultSweepEvery is how often the target's connections are listed
	// again, to find those another responder authorized.
	DefaultSweepEvery = 10 * time.Second
	// listWait bounds a connection list: the wait for the first server's
	// answer, and the quiet after the last one when not every known
	// server has answered.
	listWait  = 2 * time.Second
	listQuiet = 250 * time.Millisecond
	// trailTries bounds the re-reads of a history whose revoked event was
	// announced before the stream served it.
	trailTries = 20
)

// ErrCannotEnd is the Responder's system-account connection failing: it
// could not end a connection whose grant is revoked. A connection is then
// refused (its grant is not used), and Run ends when that connection
// cannot list and end connections at all.
var ErrCannotEnd = errors.New("callout: the responder cannot end connections")

// live is what the Responder knows of the connections grants opened: those
// it authorized, and those it found listed on the target's servers.
type live struct {
	mu      sync.Mutex
	conns   map[connKey]*liveConn
	servers map[string]bool // the target's server ids seen
	news    map[string]int  // request ids whose revocation was heard: re-reads left
	sweep   bool            // list every connection again (a lock, a resync)
	wake    chan struct{}
}

type connKey struct {
	server string
	cid    uint64
}

// liveConn is one connection a grant opened.
type liveConn struct {
	connKey
	id        string // the grant's request id
	hash      string // the grant's token hash
	expires   time.Time
	since     time.Time           // when the Responder learnt of it
	requester *identity.Principal // from the history; nil until read
	revoked   bool                // the history says revoked
	reload    bool                // read the history again
}

func newLive() *live {
	return &live{conns: map[connKey]*liveConn{}, servers: map[string]bool{}, news: map[string]int{}, wake: make(chan struct{}, 1)}
}

func (l *live) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// track remembers a connection, as authorized or as found listed.
func (l *live) track(c *liveConn) {
	l.mu.Lock()
	if old, ok := l.conns[c.connKey]; !ok || old.id != c.id {
		l.conns[c.connKey] = c
	}
	l.servers[c.server] = true
	l.mu.Unlock()
	l.poke()
}

// heard notes a revocation of request id (the revocation list's or the
// trail's), or, for "", that the lock list changed.
func (l *live) heard(id string) {
	l.mu.Lock()
	if id == "" {
		l.sweep = true
	} else {
		l.news[id] = trailTries
	}
	l.mu.Unlock()
	l.poke()
}

func (l *live) tracks(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c.id == id {
			return true
		}
	}
	return false
}

func (l *live) snapshot() []*liveConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*liveConn, 0, len(l.conns))
	for _, c := range l.conns {
		cp := *c
		out = append(out, &cp)
	}
	return out
}

// update stores what a check learnt of c, if it is still tracked.
func (l *live) update(c *liveConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.conns[c.connKey]; ok && old.id == c.id {
		old.hash, old.expires, old.requester, old.revoked = c.hash, c.expires, c.requester, c.revoked
		old.reload = old.reload && c.reload
	}
}

func (l *live) drop(k connKey) {
	l.mu.Lock()
	delete(l.conns, k)
	l.mu.Unlock()
}

// enforce ends the connections of revoked or locked grants until ctx
// ends. It first lists the target's connections (those opened before a
// restart, or by another responder), and proves that the system-account
// connection may end one; until then the Responder authorizes nothing,
// and if it cannot, enforce returns the error.
func (r *Responder) enforce(ctx context.Context) error {
	if err := r.redeemer.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := r.arm(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	revoked, err := r.cfg.Redeem.NC.Subscribe(events.Subject(r.cfg.Redeem.Domain, "*", events.KindRevoked), func(m *nats.Msg) {
		if _, id, _, err := events.ParseSubject(m.Subject); err == nil {
			r.live.heard(id)
		}
	})
	if err != nil {
		return fmt.Errorf("callout: hear revocations: %w", err)
	}
	defer func() { _ = revoked.Unsubscribe() }()
	locked, err := r.cfg.Redeem.NC.Subscribe(events.KindFilter(events.KindLocked), func(*nats.Msg) { r.live.heard("") })
	if err != nil {
		return fmt.Errorf("callout: hear locks: %w", err)
	}
	defer func() { _ = locked.Unsubscribe() }()

	tick := time.NewTicker(CheckEvery)
	defer tick.Stop()
	sweep := time.NewTicker(r.cfg.SweepEvery)
	defer sweep.Stop()
	// Revocations and locks that arrived while no responder ran: the
	// lists hold them, and the connections were just listed.
	r.check(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.live.wake:
		case <-tick.C:
		case <-sweep.C:
			r.live.heard("")
		}
		r.round(ctx)
	}
}

// arm lists the target's connections and asks a server to end a client
// that cannot exist (cid 0): a refusal by its permissions or no answer
// shows that this connection could not end a revoked grant's.
func (r *Responder) arm(ctx context.Context) error {
	servers, err := r.list(ctx, "")
	if err != nil {
		return fmt.Errorf("%w: its system-account connection cannot list the target's connections (%s; does its user have the callout-system rights?): %w", ErrCannotEnd, ConnzPing, err)
	}
	gone, err := r.kick(ctx, connKey{server: servers[0]})
	if err != nil || !gone {
		return fmt.Errorf("%w: its system-account connection cannot end one (%s; is its user in the system account, with the callout-system rights?): %v", ErrCannotEnd, fmt.Sprintf(kickServer, servers[0]), err)
	}
	r.armed.Store(true)
	r.log.Info("ending revoked and locked grants' connections", "servers", len(servers))
	return nil
}

// round handles what was heard since the last one, then checks every
// live connection.
func (r *Responder) round(ctx context.Context) {
	l := r.live
	l.mu.Lock()
	sweep := l.sweep
	l.sweep = false
	news := make(map[string]int, len(l.news))
	for id, n := range l.news {
		news[id] = n
	}
	l.mu.Unlock()
	if sweep {
		if _, err := r.list(ctx, ""); err != nil {
			r.log.Warn("cannot list the target's connections", "error", err)
			l.mu.Lock()
			l.sweep = true // again at the next tick, not at once
			l.mu.Unlock()
		}
		// And read every live grant's history again: a revoked event
		// whose notice was lost (a reconnect) is found there.
		l.mu.Lock()
		for _, c := range l.conns {
			c.reload = true
		}
		l.mu.Unlock()
	}
	for id := range news {
		if !sweep && !l.tracks(id) {
			// Another responder's connection, or one from before a
			// restart: find it by its user name.
			if _, err := r.list(ctx, UserPrefix+id); err != nil {
				r.log.Warn("cannot list the target's connections", "error", err, attrRequest, id)
			}
		}
		l.mu.Lock()
		for _, c := range l.conns {
			if c.id == id {
				c.reload = true
			}
		}
		l.mu.Unlock()
	}
	r.check(ctx)
	// A revoked event is announced as it is published, maybe before the
	// stream serves it: read again, a bounded number of times.
	again := false
	l.mu.Lock()
	for id, n := range news {
		if l.news[id] != n {
			continue // heard again meanwhile
		}
		delete(l.news, id)
		for _, c := range l.conns {
			if c.id == id && !c.revoked && n > 1 {
				l.news[id], again = n-1, true
			}
		}
	}
	l.mu.Unlock()
	if again {
		time.AfterFunc(50*time.Millisecond, l.poke)
	}
}

// check holds every live connection against the trail, the revocation
// list and the lock list, and ends those whose grant is revoked or whose
// holder is locked.
func (r *Responder) check(ctx context.Context) {
	now := r.clock()
	for _, c := range r.live.snapshot() {
		if now.After(c.expires.Add(r.cfg.Redeem.Leeway)) {
			r.live.drop(c.connKey) // the server closed it when its user expired
			continue
		}
		if c.requester == nil || c.reload {
			st, err := r.redeemer.Request(ctx, c.id)
			if err != nil {
				r.log.Warn("cannot read a live grant's history", attrRequest, c.id, "error", err)
			} else if st.Request == nil && c.hash == "" {
				// Found listed, but no request of this domain: another
				// domain's responder's connection, not this one's to end.
				r.live.drop(c.connKey)
				continue
			} else if st.Request != nil {
				p := st.Requester
				c.requester, c.revoked, c.reload = &p, st.Status == request.StatusRevoked, false
				if st.Grant != nil {
					c.hash, c.expires = st.Grant.TokenHash, st.Grant.ExpiresAt
				}
			}
			r.live.update(c)
		}
		why := ""
		switch {
		case c.revoked || r.redeemer.Revoked(c.id, c.hash):
			why = "revoked"
		case c.requester != nil:
			if err := r.redeemer.CheckLocked(ctx, *c.requester); errors.Is(err, locks.ErrLocked) {
				why = "locked"
			}
		}
		if why == "" {
			continue
		}
		gone, err := r.kick(ctx, c.connKey)
		if err != nil {
			r.log.Warn("cannot end a connection", "code", why, attrRequest, c.id, "server", c.server, "cid", c.cid, "error", err)
			continue // the next round tries again
		}
		r.live.drop(c.connKey)
		if gone {
			r.log.Info("connection already gone", "code", why, attrRequest, c.id, "server", c.server, "cid", c.cid)
		} else {
			r.log.Info("connection ended", "code", why, attrRequest, c.id, "server", c.server, "cid", c.cid)
		}
	}
}

// apiResponse is a system service's answer.
type apiResponse struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// connzRequest is what a CONNZ request asks: open connections with their
// user names, of one account, of one user name if set.
type connzRequest struct {
	Auth    bool   `json:"auth"`
	Account string `json:"acc"`
	User    string `json:"user,omitempty"`
	Offset  int    `json:"offset"`
	Limit   int    `json:"limit"`
}

type connzPage struct {
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Conns  []struct {
		CID  uint64 `json:"cid"`
		User string `json:"authorized_user"`
	} `json:"connections"`
}

const connzLimit = 1024

// list asks every server of the target for the connections of the
// callout's account named user (or every one), tracks those grants
// opened, and returns the servers that answered. After a full list, a
// connection known from before it that a server no longer lists is
// forgotten.
func (r *Responder) list(ctx context.Context, user string) ([]string, error) {
	began := r.clock()
	sys := r.cfg.System
	inbox := sys.NewRespInbox()
	msgs := make(chan *nats.Msg, 64)
	sub, err := sys.ChanSubscribe(inbox, msgs)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	q := connzRequest{Auth: true, Account: r.account, User: user, Limit: connzLimit}
	body, _ := json.Marshal(q)
	if err := sys.PublishRequest(ConnzPing, inbox, body); err != nil {
		return nil, err
	}
	r.live.mu.Lock()
	known := len(r.live.servers)
	r.live.mu.Unlock()
	var answered []string
	seen := map[connKey]bool{}
	deadline := time.NewTimer(listWait)
	defer deadline.Stop()
answers:
	for {
		select {
		case <-ctx.Done():
			return answered, ctx.Err()
		case <-deadline.C:
			if len(answered) == 0 {
				return nil, fmt.Errorf("no server answered within %s", listWait)
			}
			break answers
		case m := <-msgs:
			var resp apiResponse
			var page connzPage
			if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Server.ID == "" {
				continue
			}
			if resp.Error != nil {
				return answered, fmt.Errorf("server %s: %s", resp.Server.ID, resp.Error.Description)
			}
			if err := json.Unmarshal(resp.Data, &page); err != nil {
				continue
			}
			answered = append(answered, resp.Server.ID)
			r.adopt(resp.Server.ID, page, seen)
			for page.Offset+len(page.Conns) < page.Total && len(page.Conns) > 0 {
				q.Offset = page.Offset + len(page.Conns)
				body, _ := json.Marshal(q)
				rctx, cancel := context.WithTimeout(ctx, listWait)
				m, err := sys.RequestWithContext(rctx, fmt.Sprintf(connzServer, resp.Server.ID), body)
				cancel()
				if err != nil || json.Unmarshal(m.Data, &resp) != nil || resp.Error != nil || json.Unmarshal(resp.Data, &page) != nil {
					return answered, fmt.Errorf("server %s: the connection list past %d: %v", resp.Server.ID, q.Offset, err)
				}
				r.adopt(resp.Server.ID, page, seen)
			}
			if known > 0 && len(answered) >= known {
				break answers // every server known has answered; a new one is found by the next sweep
			}
			// The first list: wait for the quiet after the answers.
			deadline.Reset(listQuiet)
		}
	}
	if user == "" {
		r.forget(answered, seen, began)
	}
	return answered, nil
}

// adopt tracks the listed connections grants opened.
func (r *Responder) adopt(server string, page connzPage, seen map[connKey]bool) {
	for _, c := range page.Conns {
		id, ok := strings.CutPrefix(c.User, UserPrefix)
		if !ok {
			continue
		}
		if u, err := uuid.Parse(id); err != nil || u.String() != id {
			continue
		}
		k := connKey{server: server, cid: c.CID}
		seen[k] = true
		r.live.mu.Lock()
		_, known := r.live.conns[k]
		r.live.mu.Unlock()
		if !known {
			// Its grant's expiry comes with its history; until then it
			// is kept a grant's longest life.
			r.live.track(&liveConn{connKey: k, id: id, since: r.clock(), expires: r.clock().Add(24 * time.Hour)})
		}
	}
}

// forget drops the connections the servers that answered a full list no
// longer hold (closed by their clients), of those known before it began.
func (r *Responder) forget(answered []string, seen map[connKey]bool, began time.Time) {
	r.live.mu.Lock()
	defer r.live.mu.Unlock()
	// The servers are those that answered: one gone since is not waited for.
	r.live.servers = map[string]bool{}
	for _, s := range answered {
		r.live.servers[s] = true
	}
	for k, c := range r.live.conns {
		for _, s := range answered {
			if k.server == s && !seen[k] && c.since.Before(began) {
				delete(r.live.conns, k)
			}
		}
	}
}

// kick asks the connection's server to close it. gone: the server holds
// no such client (closed already, or, for cid 0, never one).
func (r *Responder) kick(ctx context.Context, k connKey) (gone bool, err error) {
	body, _ := json.Marshal(struct {
		CID uint64 `json:"cid"`
	}{k.cid})
	rctx, cancel := context.WithTimeout(ctx, listWait)
	defer cancel()
	m, err := r.cfg.System.RequestWithContext(rctx, fmt.Sprintf(kickServer, k.server), body)
	if err != nil {
		return false, err
	}
	var resp apiResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return false, fmt.Errorf("unreadable answer: %w", err)
	}
	// The only error the server answers a kick with is that it holds no
	// such client.
	return resp.Error != nil, nil
}
