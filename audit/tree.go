package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/writ-dev/writ/events"
)

var hasher = rfc6962.DefaultHasher

var factory = &compact.RangeFactory{Hash: hasher.HashChildren}

// LeafData is what a message contributes to the tree: its stream sequence,
// the time the stream stored it, its subject, signer, signature and body,
// each length-prefixed. Anything an auditor relies on is in it: the fold
// judges votes and deadlines by stored time, and a re-signed body changes
// its signer and signature.
func LeafData(m events.Message) []byte {
	signer, sig := first(m.Header, events.HeaderSigner), first(m.Header, events.HeaderSignature)
	b := make([]byte, 0, 32+len(m.Subject)+len(signer)+len(sig)+len(m.Body)+16)
	b = append(b, "writ-leaf/v1"...)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	for _, s := range []string{m.Subject, signer, sig} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Body)))
	return append(b, m.Body...)
}

// LeafHash is the RFC 6962 leaf hash of a message.
func LeafHash(m events.Message) []byte { return hasher.HashLeaf(LeafData(m)) }

func first(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Tree is the Merkle tree over a stream's messages, kept as its compact
// range: log2(n) hashes, whatever the stream's size.
type Tree struct {
	r        *compact.Range
	firstSeq uint64
	lastSeq  uint64
	lastTime time.Time
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{r: factory.NewEmptyRange(0)} }

// Restore continues the tree a checkpoint describes from its frontier,
// after checking the frontier gives the checkpoint's root.
func Restore(c *events.Checkpoint) (*Tree, error) {
	hashes := make([][]byte, len(c.Frontier))
	for i, f := range c.Frontier {
		h, err := decodeHash(f)
		if err != nil {
			return nil, fmt.Errorf("checkpoint frontier: %w", err)
		}
		hashes[i] = h
	}
	r, err := factory.NewRange(0, c.TreeSize, hashes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint frontier: %w", err)
	}
	t := &Tree{r: r, firstSeq: c.FirstSeq, lastSeq: c.LastSeq, lastTime: c.LastTime}
	if root, err := t.Root(); err != nil || root != c.Root {
		return nil, errors.New("checkpoint frontier does not give its root")
	}
	return t, nil
}

// Append adds a message as the next leaf.
func (t *Tree) Append(m events.Message) error {
	t.lastTime = m.Time
	return t.AppendHash(m.Seq, LeafHash(m))
}

// AppendHash adds a leaf hash for stream sequence seq.
func (t *Tree) AppendHash(seq uint64, h []byte) error {
	if t.r.End() == 0 {
		t.firstSeq = seq
	}
	t.lastSeq = seq
	return t.r.Append(h, nil)
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// FirstSeq and LastSeq are the stream sequences of the first and last leaves.
func (t *Tree) FirstSeq() uint64 { return t.firstSeq }

// LastSeq is the stream sequence of the last leaf.
func (t *Tree) LastSeq() uint64 { return t.lastSeq }

// Root is the tree's root hash, as "sha256:<hex>".
func (t *Tree) Root() (string, error) {
	if t.r.End() == 0 {
		return encodeHash(hasher.EmptyRoot()), nil
	}
	h, err := t.r.GetRootHash(nil)
	if err != nil {
		return "", err
	}
	return encodeHash(h), nil
}

// Frontier is the compact range, to continue from.
func (t *Tree) Frontier() []string {
	hs := t.r.Hashes()
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = encodeHash(h)
	}
	return out
}

// clone returns an independent copy.
func (t *Tree) clone() *Tree {
	// A range appends in place into the slice it was made with: the copy
	// needs its own.
	r, _ := factory.NewRange(0, t.r.End(), slices.Clone(t.r.Hashes()))
	return &Tree{r: r, firstSeq: t.firstSeq, lastSeq: t.lastSeq, lastTime: t.lastTime}
}

func encodeHash(h []byte) string { return "sha256:" + hex.EncodeToString(h) }

func decodeHash(s string) ([]byte, error) {
	h, err := hex.DecodeString(strings.TrimPrefix(s, "sha256:"))
	if err != nil || len(h) != sha256.Size || !strings.HasPrefix(s, "sha256:") {
		return nil, fmt.Errorf("%q is not a sha256 hash", s)
	}
	return h, nil
}
