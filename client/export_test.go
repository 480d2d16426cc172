package client

import (
	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// MayDecide is mayDecide for a wait on done.
func (c *Client) MayDecide(view *Request, m *nats.Msg, done func(request.State) bool) (*Request, bool) {
	return c.mayDecide(view, m, events.Digest(m.Data), func(r *Request) bool { return done(r.State) })
}
