package client

import (
	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/request"
)

// MayDecide is mayDecide for a wait on done.
func (c *Client) MayDecide(view *Request, m *nats.Msg, done func(request.State) bool) (*Request, bool) {
	return c.mayDecide(view, m, func(r *Request) bool { return done(r.State) })
}
