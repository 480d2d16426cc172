package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Identity is a principal's credentials: its user JWT and its user key pair.
// It is what a requester or approver signs with.
type Identity struct {
	JWT       string
	Key       nkeys.KeyPair
	Principal Principal // as the JWT describes it; verified by the receiver, not here
}

// ErrNotCreds is returned for what is not a NATS .creds file.
var ErrNotCreds = errors.New("not a .creds file (a user JWT and an nkey seed)")

// LoadCreds reads a standard NATS .creds file. Its errors name the file.
func LoadCreds(path string) (*Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, pathCause(err))
	}
	id, err := ParseCreds(b)
	if err != nil {
		return nil, fmt.Errorf("credentials %s: %w", path, err)
	}
	return id, nil
}

// pathCause is what went wrong with a file, without the path the caller
// names anyway: "no such file or directory", not "open x: no such file or
// directory". errors.Is(…, fs.ErrNotExist) still holds.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParseCreds parses the contents of a .creds file.
func ParseCreds(b []byte) (*Identity, error) {
	token, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, ErrNotCreds
	}
	kp, err := jwt.ParseDecoratedUserNKey(b)
	if err != nil {
		return nil, ErrNotCreds
	}
	_, p, err := Claims(token)
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, ErrNotCreds
	}
	if pub != p.Key {
		return nil, fmt.Errorf("%w: its seed does not match its JWT's subject", ErrNotCreds)
	}
	return &Identity{JWT: token, Key: Fast(kp), Principal: p}, nil
}

// UserSpec describes a principal to issue.
type UserSpec struct {
	Domain string
	Name   string
	Groups []string
	TTL    time.Duration // zero: no expiry
	Now    time.Time
	// User is the user key to sign for; nil: a new one.
	User nkeys.KeyPair
	// Permissions, when set, gives the NATS permissions the JWT carries
	// for the user key (its inbox is named after it). Without them the
	// user gets the account's default permissions.
	Permissions func(user string) (jwt.Permissions, error)
	// Tags are carried besides the domain and groups (e.g. "role:issuer").
	Tags []string
	// ConnectionTypes limits how the user may connect (jwt.ConnectionType*);
	// empty: any.
	ConnectionTypes []string
}

// IssueUser creates a user key and a user JWT for it signed by account, and
// returns the .creds file contents.
func IssueUser(account nkeys.KeyPair, s UserSpec) ([]byte, error) {
	token, user, err := SignUser(account, s)
	if err != nil {
		return nil, err
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// SignUser signs a user JWT for s.User (a new user key when nil) with
// account, and returns it with the user key.
func SignUser(account nkeys.KeyPair, s UserSpec) (string, nkeys.KeyPair, error) {
	if !ValidDomainName(s.Domain) {
		return "", nil, fmt.Errorf("invalid domain name %q", s.Domain)
	}
	if s.Name == "" {
		return "", nil, errors.New("a principal needs a name")
	}
	for _, g := range s.Groups {
		// JWT tags are lower-cased on the way in; refuse what would not
		// survive, rather than issue a group no policy could name.
		if !ValidGroupName(g) {
			return "", nil, fmt.Errorf("group %q: lower case letters, digits, '.', '_' and '-'", g)
		}
	}
	user := s.User
	if user == nil {
		var err error
		if user, err = nkeys.CreateUser(); err != nil {
			return "", nil, err
		}
	}
	pub, err := user.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", nil, errors.New("the user key is not a user nkey")
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = s.Name
	uc.Tags.Add(TagDomain + s.Domain)
	groups := slices.Clone(s.Groups)
	slices.Sort(groups)
	for _, g := range groups {
		uc.Tags.Add(TagGroup + g)
	}
	if s.TTL > 0 {
		now := s.Now
		if now.IsZero() {
			now = time.Now()
		}
		uc.Expires = now.Add(s.TTL).Unix()
	}
	for _, t := range s.Tags {
		uc.Tags.Add(t)
	}
	if s.Permissions != nil {
		p, err := s.Permissions(pub)
		if err != nil {
			return "", nil, err
		}
		uc.Permissions = p
	}
	for _, t := range s.ConnectionTypes {
		uc.AllowedConnectionTypes.Add(t)
	}
	token, err := uc.Encode(account)
	if err != nil {
		return "", nil, fmt.Errorf("sign user JWT: %w", err)
	}
	return token, user, nil
}

// LoadSeed reads an nkey seed file (one seed, optional surrounding whitespace).
func LoadSeed(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, pathCause(err))
	}
	seed := bytes.TrimSpace(b)
	var kp nkeys.KeyPair
	if bytes.HasPrefix(seed, []byte("SX")) {
		kp, err = nkeys.FromCurveSeed(seed)
	} else {
		kp, err = nkeys.FromSeed(seed)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return Fast(kp), nil
}
