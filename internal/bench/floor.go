package bench

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
)

// The floor is the relay (relay.go) with, at each message, the
// cryptography Writ cannot do without at that hop: the honest limit for a
// design that signs and checks every event. What it costs beyond the bare
// relay is what security costs; what Writ costs beyond the floor is its
// design (JSON CloudEvents and their schemas, history reads and folds,
// Cedar, locks and state), which is what can be made faster.
//
// Writ's automatic path, as `writ bench` times it (requested, evaluated,
// granted), does this cryptography:
//
//   - requester (client.Request): derives the holder's X25519 key for the
//     request, an HMAC-SHA256 of its seed and the request id, and its
//     public key, one X25519 scalar base multiplication
//     (issuer.HolderXKey); seals `requested` (events.Seal): a SHA-256
//     digest of the data, an HMAC-SHA256 keyed message id
//     (events.KeyedTag), one Ed25519 signature over the body.
//   - policy: inspects `requested` (events.Checker.Inspect): its SHA-256
//     digest and one Ed25519 verification of the requester's signature;
//     the requester's identity JWT (an Ed25519 signature by its account)
//     is verified once per process and token (identity.VerifyUser's
//     cache), nothing per request when one requester asks again and
//     again. Seals `evaluated`, which chains to the request's digest
//     (Prev): digest, keyed id, one Ed25519 signature.
//   - approval: reads `evaluated` and, for an allow, writes nothing: not
//     on the path.
//   - issuer: reads `evaluated`. In one Writ replica the policy's own
//     event is remembered (Checker.Remember) and not verified again; a
//     component in a process of its own verifies it: one Ed25519
//     verification. Mints the grant (issuer.Mint): a JWT with one Ed25519
//     signature. Seals it to the holder's key (issuer.Seal): a NaCl box,
//     one X25519 key agreement (scalar multiplication) and
//     XSalsa20-Poly1305, under a random nonce. Hashes the token
//     (issuer.TokenHash, SHA-256). Seals `granted`: digest, keyed id, one
//     Ed25519 signature.
//   - requester (client.Wait, client.OpenGrant): inspects the history it
//     reads, each event once per client (requested, evaluated, granted:
//     three Ed25519 verifications), derives the holder key again (HMAC),
//     opens the box (one X25519 key agreement, XSalsa20-Poly1305) and
//     checks the token's SHA-256 against the `granted` event's token
//     hash. It does not verify the grant's own signature: the issuer's
//     signature on `granted` covers the token's hash. Verifying the grant,
//     and the holder's proof of its key, are the redeemer's, after the
//     path the bench times.
//
// The review path adds, between evaluation and grant: each approver
// (client.Load, client.Vote) inspects the request and its evaluation and
// signs a vote (Ed25519; its identity JWT verified once per process); the
// approval component verifies each vote (two Ed25519 verifications),
// answers the first (`counted`, signed) unless the second came first,
// and seals `approved`; the issuer reads `approved` (remembered, as
// `evaluated` above) and grants as above.
//
// The floor does the minimum of that, at the same hops: every event
// signed by its producer (Ed25519, with the keyed message id), and every
// event a hop acts on verified by it once (its signers entitled to it,
// their signatures, and that it is the message its subject names), with
// no re-reads:
//
//	automatic: requester  holder X25519 key; sign request
//	           policy     verify request; sign evaluation (chained)
//	           issuer     verify evaluation; mint and sign the grant JWT; seal it (NaCl box); sign grant
//	           requester  verify grant; open the box; check the token's hash
//	review:    requester, policy as above; then
//	           approvers  each verifies the evaluation and signs its vote, side by side
//	           approval   verify both votes; sign approval
//	           issuer     verify approval; mint, seal, sign grant
//	           requester  as above
//
// That is, per automatic request, four Ed25519 signatures, three Ed25519
// verifications (Writ makes four in one replica: the requester reads the
// whole history), three X25519 operations and two XSalsa20-Poly1305
// passes; per reviewed request seven signatures and seven verifications.
// Left out as Writ's design, not its security: JSON encoding and schema
// validation of events, history reads and folds, Cedar, the `counted`
// answer to a vote, identity JWTs (verified once per process). The grant
// is Writ's own: issuer.Mint and issuer.Seal, with keys of the same kinds
// (identity.Fast signing keys, an nkeys curve key).

// floorStep is what a floor message is: the event it stands for.
type floorStep int

const (
	floorRequest floorStep = iota
	floorEvaluation
	floorVotes
	floorApproval
	floorGrant
)

// The floor's paths: the events of Writ's automatic and review paths on
// their critical path, one floor message each.
var (
	floorAuto   = []floorStep{floorRequest, floorEvaluation, floorGrant}
	floorReview = []floorStep{floorRequest, floorEvaluation, floorVotes, floorApproval, floorGrant}
)

// Why a floor message is refused; with events.ErrUnsigned,
// events.ErrBadSignature and events.ErrNotEntitled.
var (
	ErrFloorMismatch = errors.New("bench floor: the message is not the one its subject names")
	ErrFloorGrant    = errors.New("bench floor: the sealed grant does not match the grant's token hash")
)

// floor is the cryptography of one path: the keys of its signers, and
// whom a reader of each message accepts as its signers. It is read-only
// once made, shared by the requesters and every replica of the floor's
// relay.
type floor struct {
	path     []floorStep
	domain   string
	spec     client.Spec   // what the grant allows
	holder   nkeys.KeyPair // the requester's user key
	signers  [][]nkeys.KeyPair
	entitled [][]string // the signers' public keys, in order: what a reader accepts
	minter   *issuer.Issuer
	xkey     string // the issuer's curve key, which seals grants
	body     int    // a message's body and signature headers, in bytes, at least
	// refused counts the messages the hops refused.
	refused atomic.Int64
}

// newFloor makes the keys of a path: a user key for the requester and for
// each approver, a server key for each component, a curve key to seal
// grants. payload is the size a message has, with its signature, when its
// fields leave room (the mean size of Writ's events).
func newFloor(path []floorStep, domain string, spec client.Spec, payload int) (*floor, error) {
	user := func() (nkeys.KeyPair, error) {
		kp, err := nkeys.CreateUser()
		return identity.Fast(kp), err
	}
	server := func() (nkeys.KeyPair, error) {
		kp, err := nkeys.CreateServer()
		return identity.Fast(kp), err
	}
	f := &floor{path: path, domain: domain, spec: spec, body: payload}
	var err error
	if f.holder, err = user(); err != nil {
		return nil, err
	}
	for _, s := range path {
		var keys []nkeys.KeyPair
		switch s {
		case floorRequest:
			keys = []nkeys.KeyPair{f.holder}
		case floorVotes:
			for range 2 {
				kp, err := user()
				if err != nil {
					return nil, err
				}
				keys = append(keys, kp)
			}
		default:
			kp, err := server()
			if err != nil {
				return nil, err
			}
			keys = []nkeys.KeyPair{kp}
			if s == floorGrant {
				xkey, err := nkeys.CreateCurveKeys()
				if err != nil {
					return nil, err
				}
				if f.minter, err = issuer.New(kp, xkey); err != nil {
					return nil, err
				}
				f.xkey = f.minter.XKey()
			}
		}
		pubs := make([]string, len(keys))
		for k, kp := range keys {
			if pubs[k], err = kp.PublicKey(); err != nil {
				return nil, err
			}
		}
		f.signers, f.entitled = append(f.signers, keys), append(f.entitled, pubs)
	}
	return f, nil
}

// hops is how many hops the floor's relay has: one for each message
// but the first.
func (f *floor) hops() int { return len(f.path) - 1 }

// floorMsg is a floor message's body: its producer signs all of it (the
// padding too, as Writ's signature covers a whole event). Each field is a
// line; the padding is the rest.
type floorMsg struct {
	ID        string // the request's
	Index     int    // its place in the path
	Holder    string // the requester's user key
	HolderX   string // the curve key the grant is sealed to
	Prev      string // the digest of the message before, as Writ's events chain
	Sealed    string // the grant, sealed: on a grant
	SealedBy  string
	TokenHash string
}

const floorMagic = "writ-bench-floor/1"

// floorFields is the number of lines before the padding.
const floorFields = 9

// floorSignature is what one signature adds to a message: its headers,
// a public nkey (56 characters) and an Ed25519 signature in base64url (86).
const floorSignature = len(events.HeaderSigner) + 56 + len(events.HeaderSignature) + 86

func (f *floor) encode(m floorMsg) []byte {
	var b bytes.Buffer
	for _, s := range []string{floorMagic, m.ID, strconv.Itoa(m.Index), m.Holder, m.HolderX, m.Prev, m.Sealed, m.SealedBy, m.TokenHash} {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	// Padded to Writ's size, less the signature the message adds.
	if pad := f.body - b.Len() - floorSignature; pad > 0 {
		b.Write(bytes.Repeat([]byte{'.'}, pad))
	}
	return b.Bytes()
}

func decodeFloor(body []byte) (floorMsg, error) {
	lines := bytes.SplitN(body, []byte{'\n'}, floorFields+1)
	if len(lines) != floorFields+1 || string(lines[0]) != floorMagic {
		return floorMsg{}, fmt.Errorf("%w: not a floor message", ErrFloorMismatch)
	}
	index, err := strconv.Atoi(string(lines[2]))
	if err != nil {
		return floorMsg{}, fmt.Errorf("%w: index %q", ErrFloorMismatch, lines[2])
	}
	s := func(i int) string { return string(lines[i]) }
	return floorMsg{ID: s(1), Index: index, Holder: s(3), HolderX: s(4), Prev: s(5), Sealed: s(6), SealedBy: s(7), TokenHash: s(8)}, nil
}

// sign signs body as the signers of message i, each after its own check
// (when not nil) of what it signs for, side by side when there are
// several (the approvers); it returns the message with its signature
// headers and its message id, keyed by its first signer as events.Seal
// keys Writ's.
func (f *floor) sign(i int, subject string, body []byte, check func() error) (*nats.Msg, string, error) {
	keys := f.signers[i]
	sigs := make([]string, len(keys))
	errs := make([]error, len(keys))
	one := func(k int) {
		if check != nil {
			if errs[k] = check(); errs[k] != nil {
				return
			}
		}
		sig, err := keys[k].Sign(body)
		errs[k], sigs[k] = err, base64.RawURLEncoding.EncodeToString(sig)
	}
	if len(keys) == 1 {
		one(0)
	} else {
		var wg sync.WaitGroup
		for k := range keys {
			wg.Go(func() { one(k) })
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, "", err
	}
	tag, err := events.KeyedTag(keys[0], subject+"\x00"+events.Digest(body))
	if err != nil {
		return nil, "", err
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header[events.HeaderSigner] = slices.Clone(f.entitled[i])
	m.Header[events.HeaderSignature] = sigs
	return m, subject + "." + tag, nil
}

// check verifies message i of request id as its reader must: signed by
// exactly the keys entitled to it, every signature good, and the message
// its subject names. It returns the message's fields and its digest.
func (f *floor) check(i int, id string, body []byte, h nats.Header) (floorMsg, string, error) {
	signers, sigs := h.Values(events.HeaderSigner), h.Values(events.HeaderSignature)
	if len(signers) == 0 || len(sigs) != len(signers) {
		return floorMsg{}, "", events.ErrUnsigned
	}
	if !slices.Equal(signers, f.entitled[i]) {
		return floorMsg{}, "", fmt.Errorf("%w: message %d of the floor", events.ErrNotEntitled, i)
	}
	for k := range signers {
		if err := events.VerifySignature(signers[k], sigs[k], body); err != nil {
			return floorMsg{}, "", err
		}
	}
	m, err := decodeFloor(body)
	if err != nil {
		return floorMsg{}, "", err
	}
	if m.ID != id || m.Index != i {
		return floorMsg{}, "", fmt.Errorf("%w: message %d of %s, on the subject of message %d of %s", ErrFloorMismatch, m.Index, m.ID, i, id)
	}
	return m, events.Digest(body), nil
}

// floorHold is what a requester keeps from its request to its grant.
type floorHold struct {
	xkey nkeys.KeyPair // the holder's curve key for this request
}

// request makes message 0 of request id, on subject: the requester's
// signed request, naming the curve key its grant is to be sealed to.
func (f *floor) request(id, subject string) (*nats.Msg, string, *floorHold, error) {
	xkey, err := issuer.HolderXKey(f.holder, id)
	if err != nil {
		return nil, "", nil, err
	}
	xpub, err := xkey.PublicKey()
	if err != nil {
		return nil, "", nil, err
	}
	m, msgID, err := f.sign(0, subject, f.encode(floorMsg{ID: id, Holder: f.entitled[0][0], HolderX: xpub}), nil)
	return m, msgID, &floorHold{xkey: xkey}, err
}

// forward is hop i's work: it checks message i of request id, the one it
// acts on, and makes message i+1 on subject, signed; the hop before the
// grant mints and seals it first. An error means message i is refused.
func (f *floor) forward(i int, id, subject string, body []byte, h nats.Header) (*nats.Msg, string, error) {
	out, msgID, err := f.step(i, id, subject, body, h)
	if err != nil {
		f.refused.Add(1)
	}
	return out, msgID, err
}

func (f *floor) step(i int, id, subject string, body []byte, h nats.Header) (*nats.Msg, string, error) {
	if i < 0 || i+1 >= len(f.path) {
		return nil, "", fmt.Errorf("%w: no hop %d in a path of %d", ErrFloorMismatch, i, len(f.path))
	}
	if f.path[i+1] == floorVotes {
		// The approvers vote on the evaluation, each after checking it
		// itself, side by side (sign runs check for each).
		in, err := decodeFloor(body)
		if err != nil {
			return nil, "", err
		}
		next := floorMsg{ID: id, Index: i + 1, Holder: in.Holder, HolderX: in.HolderX, Prev: events.Digest(body)}
		return f.sign(i+1, subject, f.encode(next), func() error {
			_, _, err := f.check(i, id, body, h)
			return err
		})
	}
	in, prev, err := f.check(i, id, body, h)
	if err != nil {
		return nil, "", err
	}
	next := floorMsg{ID: id, Index: i + 1, Holder: in.Holder, HolderX: in.HolderX, Prev: prev}
	if f.path[i+1] == floorGrant {
		if err := f.grant(&next); err != nil {
			return nil, "", err
		}
	}
	return f.sign(i+1, subject, f.encode(next), nil)
}

// grant mints the grant for m's request, with Writ's issuer, and seals it
// to the holder's curve key.
func (f *floor) grant(m *floorMsg) error {
	token, _, err := f.minter.Mint(issuer.Constraints{
		RequestID: m.ID, Holder: m.Holder, Audience: f.domain, Action: f.spec.Action, Resource: f.spec.Resource,
		ParamsDigest: issuer.ParamsDigest(nil), Evidence: m.Prev,
		NotBefore: time.Now().UTC().Truncate(time.Second), TTL: floorTTL,
	})
	if err != nil {
		return err
	}
	if m.Sealed, err = f.minter.Seal(token, m.HolderX); err != nil {
		return err
	}
	m.SealedBy, m.TokenHash = f.xkey, issuer.TokenHash(token)
	return nil
}

// floorTTL is the grants' lifetime: the issuer's default.
const floorTTL = 15 * time.Minute

// finish is the requester's end of request id: it checks the last
// message, the grant, opens the sealed token with the holder key of the
// request and checks it is the token the grant names.
func (f *floor) finish(id string, hold *floorHold, body []byte, h nats.Header) error {
	m, _, err := f.check(len(f.path)-1, id, body, h)
	if err != nil {
		return err
	}
	token, err := issuer.Open(m.Sealed, m.SealedBy, hold.xkey)
	if err != nil {
		return err
	}
	if issuer.TokenHash(token) != m.TokenHash {
		return ErrFloorGrant
	}
	return nil
}
