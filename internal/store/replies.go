package store

import (
	"crypto/rand"
	"sync"

	"github.com/nats-io/nats.go"
)

// replies carries the answers to a connection's reads over one
// subscription: a wildcard under an inbox of the connection's own, each
// read its own last token. A subscription per read made the server add and
// drop interest for every read, and a federation's hub passes each such
// change to every spoke: domains reading their trail while idle kept every
// leafnode link busy with interest alone.
type replies struct {
	sub  *nats.Subscription
	base string // the inbox, with its trailing dot

	mu    sync.Mutex
	reads map[string]chan *nats.Msg
}

var (
	repliesMu sync.Mutex
	byConn    = map[*nats.Conn]*replies{}
)

// repliesOf returns nc's replies, subscribing on first use (and again once
// the subscription is gone). Connections closed since are forgotten then.
func repliesOf(nc *nats.Conn) (*replies, error) {
	repliesMu.Lock()
	defer repliesMu.Unlock()
	if r, ok := byConn[nc]; ok && r.sub.IsValid() {
		return r, nil
	}
	for c := range byConn {
		if c.IsClosed() {
			delete(byConn, c)
		}
	}
	r := &replies{reads: map[string]chan *nats.Msg{}}
	inbox := nc.NewInbox()
	r.base = inbox + "."
	sub, err := nc.Subscribe(inbox+".*", r.route)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	byConn[nc] = r
	return r, nil
}

// route hands a reply to the read it answers. It never blocks: a read's
// channel holds its whole answer, and a reply for a read that has ended is
// dropped, as an unsubscribed inbox's would be.
func (r *replies) route(m *nats.Msg) {
	r.mu.Lock()
	ch := r.reads[m.Subject[len(r.base):]]
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default:
	}
}

// open starts a read: the reply subject to ask with, the channel its
// answer arrives on (size messages at most), and the function that ends it.
// The token is random, not a count: whoever sees one read's reply subject
// (a spoke sees those of every read of its own stream, and may publish
// into any domain's inbox) must not be able to name the connection's next
// reads and answer them first, leaving out what it likes.
func (r *replies) open(size int) (string, <-chan *nats.Msg, func()) {
	tok := rand.Text()
	ch := make(chan *nats.Msg, size)
	r.mu.Lock()
	r.reads[tok] = ch
	r.mu.Unlock()
	return r.base + tok, ch, func() {
		r.mu.Lock()
		delete(r.reads, tok)
		r.mu.Unlock()
	}
}
