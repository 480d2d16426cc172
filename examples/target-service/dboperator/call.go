package dboperator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/redeem"
)

// DefaultCallTimeout bounds a call whose context has no deadline.
const DefaultCallTimeout = 15 * time.Second

// NewCommand makes a call's body: holder (the grant holder's user key,
// identity.Identity.Key) proves possession of token for action on
// resource with params, at now. A proof is single-use and short-lived: make
// a new command for every call.
func NewCommand(holder nkeys.KeyPair, token, action, resource string, params map[string]string, now time.Time) (Command, error) {
	p, err := redeem.Prove(holder, token, redeem.Want{Action: action, Resource: resource, Params: params}, now)
	if err != nil {
		return Command{}, err
	}
	return Command{Grant: token, Proof: p.Encode(), Resource: resource, Params: params}, nil
}

// Call sends cmd to the endpoint of action of the service named name and
// returns what was done, or a *Refusal. Without a deadline on ctx, it
// waits DefaultCallTimeout for the answer.
func Call(ctx context.Context, nc *nats.Conn, name, action string, cmd Command) (Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, err
	}
	msg, err := nc.RequestWithContext(ctx, Subject(name, action), body)
	if err != nil {
		return Result{}, fmt.Errorf("dboperator: call %s: %w", Subject(name, action), err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		r := &Refusal{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}
		_ = json.Unmarshal(msg.Data, r) // the body, when it parses, has the message unabridged
		return Result{}, r
	}
	var res Result
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return Result{}, fmt.Errorf("dboperator: answer of %s: %w", Subject(name, action), err)
	}
	if res.RequestID == "" {
		return Result{}, errors.New("dboperator: the answer names no request")
	}
	return res, nil
}
