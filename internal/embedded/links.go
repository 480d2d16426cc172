package embedded

import (
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// LinkPoll is how often a federated server looks at its leafnode links, so
// that a link coming up or going down is logged (and counted) even when
// nobody asks; each look costs the server a Leafz, so it is not often.
// LeafLinks itself always looks afresh.
const LinkPoll = time.Second

// LeafLink is one leafnode link as this server sees it.
type LeafLink struct {
	// Peer names the other side. On a spoke: its hub, as the remote's
	// host:port (no credentials), listed from the start, linked or not. On
	// a hub: the spoke's server name, listed once it has linked.
	Peer string
	// Hub: the peer is this server's hub (this server dials it); otherwise
	// the peer is a spoke that dialled this server.
	Hub bool
	Up  bool
	// Since is when the link last came up or went down, as this server
	// noticed; zero for a hub's link not linked since the server started.
	Since time.Time
	// Reconnects counts the times the link was established again after
	// its first time (a new connection where there had been one).
	Reconnects int
	Server     string // the peer's server name, as it announced itself; "" while not linked
	Account    string // the account the link is bound to on this server
	// What crossed the link since it was last established: messages and
	// bytes from the peer (In) and to it (Out).
	InMsgs, OutMsgs, InBytes, OutBytes int64
	// Subs is how many subscriptions the peer holds on this server over
	// the link: its interest, which decides what crosses to it.
	Subs int
}

// LeafLinks is the state of the server's leafnode links now: a spoke's
// hubs first, in the order configured, then the spokes linked to a hub
// (or once linked since it started), by name. Nil for a server that does
// not federate.
func (s *Server) LeafLinks() []LeafLink {
	if s.links == nil {
		return nil
	}
	// One look at a time: two looks folded out of order would see a
	// connection gone and back, a reconnect that never was.
	s.links.mu.Lock()
	defer s.links.mu.Unlock()
	lz, err := s.ns.Leafz(&server.LeafzOptions{})
	if err != nil {
		return nil // Leafz has no error to return; a server shutting down has no links
	}
	return s.links.observeLocked(lz.Leafs, time.Now())
}

// links tracks a server's leafnode links between looks: which connection
// each link had, to count reconnects and to log changes.
type links struct {
	log     *slog.Logger
	remotes []remote

	mu    sync.Mutex
	state map[linkKey]*linkState
}

type linkKey struct {
	hub  bool
	peer string
}

// remote is a hub a spoke dials, as its URL says.
type remote struct {
	hostport string // the URL's host:port: the link's Peer
	ip       net.IP // nil when the URL names a host
	port     int
}

type linkState struct {
	up         bool
	since      time.Time
	conns      []uint64 // the server's connection ids the link has now
	ever       bool     // it was established at least once
	reconnects int
}

func newLinks(l *Leaf, log *slog.Logger) *links {
	ls := &links{log: log, state: map[linkKey]*linkState{}}
	for _, r := range l.Remotes {
		u, err := url.Parse(r) // checked by Leaf.options
		if err != nil {
			continue
		}
		p, _ := strconv.Atoi(u.Port())
		ls.remotes = append(ls.remotes, remote{hostport: u.Host, ip: net.ParseIP(u.Hostname()), port: p})
		ls.state[linkKey{hub: true, peer: u.Host}] = &linkState{}
	}
	return ls
}

// hubOf is the configured hub a link this server dialled goes to. The
// server reports the address it reached, so a remote naming a host is
// matched by port; failing that, the first remote not linked yet.
func (ls *links) hubOf(li *server.LeafInfo, taken map[string]bool) string {
	for _, r := range ls.remotes {
		if r.port == li.Port && r.ip != nil && r.ip.Equal(net.ParseIP(li.IP)) {
			return r.hostport
		}
	}
	for _, r := range ls.remotes {
		if r.port == li.Port && r.ip == nil && !taken[r.hostport] {
			return r.hostport
		}
	}
	for _, r := range ls.remotes {
		if !taken[r.hostport] {
			return r.hostport
		}
	}
	return net.JoinHostPort(li.IP, strconv.Itoa(li.Port))
}

// observeLocked folds what the server reports now into the links' state,
// logs what changed, and returns every link.
func (ls *links) observeLocked(infos []*server.LeafInfo, now time.Time) []LeafLink {
	cur := map[linkKey]*LeafLink{}
	conns := map[linkKey][]uint64{}
	taken := map[string]bool{}
	for _, li := range infos {
		// IsSpoke: this server plays the spoke on the link, so the peer
		// is its hub.
		k := linkKey{hub: li.IsSpoke, peer: li.Name}
		if li.IsSpoke {
			k.peer = ls.hubOf(li, taken)
			taken[k.peer] = true
		}
		l := cur[k]
		if l == nil {
			l = &LeafLink{Peer: k.peer, Hub: k.hub, Server: li.Name, Account: li.Account}
			cur[k] = l
		}
		// Two connections under one name (a spoke restarted before the
		// hub noticed the old one gone) are one link.
		l.InMsgs += li.InMsgs
		l.OutMsgs += li.OutMsgs
		l.InBytes += li.InBytes
		l.OutBytes += li.OutBytes
		l.Subs += int(li.NumSubs)
		conns[k] = append(conns[k], li.ID)
	}

	for k := range cur {
		if ls.state[k] == nil {
			ls.state[k] = &linkState{}
		}
	}
	out := make([]LeafLink, 0, len(ls.state))
	var changed []linkKey
	for k, st := range ls.state {
		ids := conns[k]
		for _, id := range ids {
			if slices.Contains(st.conns, id) {
				continue
			}
			if st.ever {
				st.reconnects++
			} else {
				st.ever = true
			}
		}
		st.conns = ids
		if up := len(ids) > 0; up != st.up {
			st.up, st.since = up, now
			changed = append(changed, k)
		}
		l := cur[k]
		if l == nil {
			l = &LeafLink{Peer: k.peer, Hub: k.hub}
		}
		l.Up, l.Since, l.Reconnects = st.up, st.since, st.reconnects
		out = append(out, *l)
	}
	for _, k := range changed {
		ls.logChange(k, ls.state[k], cur[k])
	}
	slices.SortFunc(out, func(a, b LeafLink) int {
		if a.Hub != b.Hub {
			if a.Hub {
				return -1
			}
			return 1
		}
		if a.Hub {
			return ls.remoteIndex(a.Peer) - ls.remoteIndex(b.Peer)
		}
		switch {
		case a.Peer < b.Peer:
			return -1
		case a.Peer > b.Peer:
			return 1
		}
		return 0
	})
	return out
}

func (ls *links) remoteIndex(hostport string) int {
	for i, r := range ls.remotes {
		if r.hostport == hostport {
			return i
		}
	}
	return len(ls.remotes)
}

// logChange says, at info level, that a link came up or went down; a
// spoke losing its hub is a warning: requests to and from other domains
// wait until it is back.
func (ls *links) logChange(k linkKey, st *linkState, l *LeafLink) {
	switch {
	case k.hub && st.up:
		ls.log.Info("federation: linked to hub", "component", "federation", "hub", k.peer, "server", l.Server, "reconnects", st.reconnects)
	case k.hub:
		ls.log.Warn("federation: link to hub lost; retrying", "component", "federation", "hub", k.peer)
	case st.up:
		ls.log.Info("federation: spoke linked", "component", "federation", "spoke", k.peer, "spokes_linked", ls.spokesUpLocked())
	default:
		ls.log.Info("federation: spoke unlinked", "component", "federation", "spoke", k.peer, "spokes_linked", ls.spokesUpLocked())
	}
}

// spokesUpLocked counts the spokes linked.
func (ls *links) spokesUpLocked() int {
	n := 0
	for k, st := range ls.state {
		if !k.hub && st.up {
			n++
		}
	}
	return n
}

// watch looks at the links every LinkPoll until stop is closed.
func (s *Server) watch(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(LinkPoll)
	defer t.Stop()
	for {
		s.LeafLinks()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
