package embedded

import (
	"errors"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
)

// Auth runs the server in NATS operator mode (decentralized JWT
// authentication): every connection, in-process ones included, must
// present a user JWT signed by one of Accounts' keys, and the server
// enforces the permissions that JWT carries. The accounts are held by a
// memory resolver: users the account key issues later connect with no
// reload.
type Auth struct {
	Operator string   // the operator JWT (self-signed), naming the system account
	System   string   // the system account's JWT, signed by the operator
	Accounts []string // the domain accounts' JWTs, signed by the operator
}

// MaxControlLine is the longest protocol line the server reads: a CONNECT
// with a role's user JWT is several KiB. A nats-server serving Writ needs
// max_control_line at least this large.
const MaxControlLine = 32 << 10

// ErrAuth is returned for an Auth the server could not use.
var ErrAuth = errors.New("embedded: authentication setup")

func (a *Auth) options(o *server.Options) error {
	op, err := jwt.DecodeOperatorClaims(a.Operator)
	if err != nil {
		return fmt.Errorf("%w: operator JWT: %v", ErrAuth, err)
	}
	sys, err := jwt.DecodeAccountClaims(a.System)
	if err != nil {
		return fmt.Errorf("%w: system account JWT: %v", ErrAuth, err)
	}
	if op.SystemAccount != sys.Subject {
		return fmt.Errorf("%w: the operator names system account %s, not %s", ErrAuth, op.SystemAccount, sys.Subject)
	}
	res := &server.MemAccResolver{}
	for _, t := range append([]string{a.System}, a.Accounts...) {
		ac, err := jwt.DecodeAccountClaims(t)
		if err != nil {
			return fmt.Errorf("%w: account JWT: %v", ErrAuth, err)
		}
		if ac.Issuer != op.Subject && !op.SigningKeys.Contains(ac.Issuer) {
			return fmt.Errorf("%w: account %s is not signed by the operator", ErrAuth, ac.Subject)
		}
		if err := res.Store(ac.Subject, t); err != nil {
			return fmt.Errorf("%w: %v", ErrAuth, err)
		}
	}
	o.TrustedOperators = []*jwt.OperatorClaims{op}
	o.SystemAccount = sys.Subject
	o.AccountResolver = res
	return nil
}
