package client

import (
	"context"
	"time"

	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/request"
)

// stallAfter is how long a request the pipeline moves on its own may stand
// still before Wait asks whether the audit stream has a leader: the
// pipeline takes milliseconds a step.
const stallAfter = time.Second

// stallWatch tells the Waiter in Wait's context (store.WithWaiter) when
// the request waited on stands still where the pipeline should move it
// (not yet evaluated, or awaiting its grant) and the audit stream has no
// leader, or no quorum: during a leader election nothing is appended, no read fails,
// and a requester would otherwise see nothing happen for seconds.
type stallWatch struct {
	c        *Client
	domain   string    // the request's: its stream is the one asked
	seq      uint64    // the history's last sequence seen
	since    time.Time // when it last moved
	asked    time.Time // when the stream was last asked for its leader
	answered func()    // set while the Waiter is told of the wait
}

// observe looks at the request's state as last read (nil: not found yet).
func (w *stallWatch) observe(ctx context.Context, r *Request, now time.Time) {
	var st request.State
	if r != nil {
		st = r.State
	}
	if w.since.IsZero() || st.LastSeq != w.seq {
		w.seq, w.since = st.LastSeq, now
		w.end()
		return
	}
	if st.Status != request.StatusNone && st.Status != request.StatusRequested && !st.Status.AwaitsGrant() {
		w.end() // waiting for people, or done: not the cluster's doing
		return
	}
	if now.Sub(w.since) < stallAfter || now.Sub(w.asked) < stallAfter {
		return
	}
	w.asked = now
	if why := w.c.unserved(ctx, w.domain); why == "" {
		w.end()
	} else if w.answered == nil {
		w.answered = store.Waiting(ctx, why)
	}
}

// end says the wait, if one was told of, is over.
func (w *stallWatch) end() {
	if w.answered != nil {
		w.answered()
		w.answered = nil
	}
}

// unserved says why domain's audit stream cannot take appends now
// (store.Unserved), or that its leader does not answer within a second
// (it went down, and the replicas have not noticed yet); "" when it can.
func (c *Client) unserved(ctx context.Context, domain string) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := c.trail.Reader(domain).Info(ctx)
	if err != nil {
		return "stream leader election"
	}
	return store.Unserved(info)
}
