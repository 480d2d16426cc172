package client

import (
	"context"
	"errors"
	"time"

	"github.com/writ-dev/writ/request"
)

// EvaluationWait bounds how long an answer to a request the pipeline has
// not evaluated yet waits for the evaluation: it takes milliseconds, so an
// approver who votes right after the request was made is early by that.
const EvaluationWait = 5 * time.Second

// AwaitEvaluation returns r as it is once evaluated: at once when it is
// past evaluation, else after following the request (Wait: its notices,
// not a timer) until the pipeline has evaluated it, or EvaluationWait has
// passed — then as it stands, still requested, for the caller to refuse.
func (c *Client) AwaitEvaluation(ctx context.Context, r *Request) (*Request, error) {
	if r.State.Status != request.StatusRequested {
		return r, nil
	}
	wctx, cancel := context.WithTimeout(ctx, EvaluationWait)
	defer cancel()
	w, err := c.Wait(wctx, r.State.Domain, r.State.ID, func(s request.State) bool { return s.Status != request.StatusRequested })
	switch {
	case err == nil:
		return w, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		if w == nil {
			w = r
		}
		return w, nil
	}
	return nil, err
}
