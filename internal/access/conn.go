package access

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
)

// CredsOptions are the connection options for a .creds file: the user JWT
// and key, and the inbox prefix its permissions let it hear.
func CredsOptions(path string) ([]nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, fmt.Errorf("credentials %s: not a .creds file (%v)", path, err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("credentials %s: the user JWT does not decode (%v)", path, err)
	}
	return []nats.Option{nats.UserCredentials(path), nats.CustomInboxPrefix(InboxPrefix(tagDomain(uc), uc.Subject))}, nil
}

// tagDomain is the domain a user JWT names in its tags ("" for none).
func tagDomain(uc *jwt.UserClaims) string {
	for _, t := range uc.Tags {
		if d, ok := strings.CutPrefix(t, identity.TagDomain); ok {
			return d
		}
	}
	return ""
}

// KeyOptions are the connection options for a user JWT of domain and its
// key held in memory (a component's connection, minted at start).
func KeyOptions(domain, token string, user nkeys.KeyPair) ([]nats.Option, error) {
	pub, err := user.PublicKey()
	if err != nil {
		return nil, err
	}
	return []nats.Option{
		nats.UserJWT(func() (string, error) { return token, nil }, func(nonce []byte) ([]byte, error) { return user.Sign(nonce) }),
		nats.CustomInboxPrefix(InboxPrefix(domain, pub)),
	}, nil
}
