package connect

import (
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
)

// Creds are the options to connect to NATS as the identity in a
// .creds file: its user JWT and key, and the inbox prefix the server lets
// it hear.
func Creds(creds string) ([]nats.Option, error) {
	b, err := os.ReadFile(creds)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, fmt.Errorf("credentials %s: not a .creds file (a user JWT and an nkey seed)", creds)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("credentials %s: the user JWT in it is damaged; issue new ones with 'writ identity issue'", creds)
	}
	domain := ""
	for _, t := range uc.Tags {
		if len(t) > len(identity.TagDomain) && t[:len(identity.TagDomain)] == identity.TagDomain {
			domain = t[len(identity.TagDomain):]
		}
	}
	if !identity.ValidDomainName(domain) {
		return nil, fmt.Errorf("credentials %s name no domain: they were not issued by Writ; issue them with 'writ identity issue'", creds)
	}
	return []nats.Option{nats.UserCredentials(creds), nats.CustomInboxPrefix(identity.InboxPrefix(domain, uc.Subject))}, nil
}

// Key are the options to connect as a user of domain whose JWT and
// key are held in memory (a component's connection, minted at start).
func Key(domain, token string, user nkeys.KeyPair) ([]nats.Option, error) {
	pub, err := user.PublicKey()
	if err != nil {
		return nil, err
	}
	return []nats.Option{
		nats.UserJWT(func() (string, error) { return token, nil }, func(nonce []byte) ([]byte, error) { return user.Sign(nonce) }),
		nats.CustomInboxPrefix(identity.InboxPrefix(domain, pub)),
	}, nil
}
