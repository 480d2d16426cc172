package audit_test

import (
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// kit is what the tamperings work with: the run, a bundle that also trusts
// a second domain, globex, with that domain's component keys, and dave, a
// third SRE lead the run's own account key issued, who never took part.
type kit struct {
	r      *keyed
	bundle *identity.Bundle
	globex map[identity.Role]nkeys.KeyPair
	dave   *identity.Identity
}

func newKit(t testing.TB, r *keyed) *kit {
	t.Helper()
	account, err := nkeys.CreateAccount()
	require.NoError(t, err)
	accountPub, _ := account.PublicKey()
	k := &kit{r: r, globex: map[identity.Role]nkeys.KeyPair{}, dave: newPrincipal(t, r, "dave", "sre-leads")}
	d := &identity.Domain{Accounts: []string{accountPub}, Components: map[identity.Role][]string{}}
	for _, role := range identity.Roles {
		kp, err := nkeys.CreateServer()
		require.NoError(t, err)
		pub, _ := kp.PublicKey()
		k.globex[role], d.Components[role] = kp, []string{pub}
	}
	k.bundle = &identity.Bundle{Domains: maps.Clone(r.env.Runtime.Bundle.Domains)}
	k.bundle.Domains["globex"] = d
	require.NoError(t, k.bundle.Validate())
	return k
}

func (k *kit) options(heads ...audit.Head) audit.Options {
	return audit.Options{Bundle: k.bundle, Stream: "WRIT", Heads: heads}
}

// vote seals who's vote with the answer of the vote like, on its request,
// at its sequence and stored time, chained to prev.
func (k *kit) vote(t testing.TB, like events.Message, who *identity.Identity, prev string) events.Message {
	t.Helper()
	rec := inspect(k.r, like)
	require.NoError(t, rec.Err)
	d := *rec.Data.(*events.Voted)
	d.Prev, d.Voter, d.Identity = prev, events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name}, who.JWT
	out, err := events.Seal(events.Draft{
		Domain: rec.Domain, RequestID: rec.RequestID, Kind: events.KindVoted, Time: rec.Envelope.Time, Data: &d,
		Source: "writ://" + who.Principal.Domain + "/principals/" + who.Principal.Name,
	}, who.Key)
	require.NoError(t, err)
	return events.Message{Subject: out.Subject, Seq: like.Seq, Time: like.Time, Header: out.Header(), Body: out.Body}
}

// replaceVote puts dave's approval where name's vote on the request named
// req was, at its sequence and stored time, and returns its index.
func (k *kit) replaceVote(t testing.TB, msgs []events.Message, req, name string) int {
	t.Helper()
	i := voteBy(t, k.r, msgs, req, name)
	msgs[i] = k.vote(t, msgs[i], k.dave, events.Prev(inspect(k.r, msgs[i]).Data))
	return i
}

// rewriteVote replaces bob's approval of "two" with dave's and re-seals the
// rest of that history with the real keys, the approval naming dave: a
// rewrite by someone holding the components' keys, with a trusted
// principal's help.
func (k *kit) rewriteVote(t testing.TB, msgs []events.Message) []events.Message {
	t.Helper()
	ring := keyring(t, k.r, k.dave)
	rechain(t, msgs, k.replaceVote(t, msgs, "two", "bob"), ring)
	i := locate(t, k.r, msgs, "two", events.KindApproved, nil)
	msgs[i] = reseal(t, msgs[i], k.r.env.Runtime.ApprovalKey, func(d *events.Draft) {
		approvers := d.Data.(*events.Approved).Approvers
		for j := range approvers {
			if approvers[j].Name == "bob" {
				approvers[j].Name = "dave"
			}
		}
	})
	rechain(t, msgs, i, ring)
	return msgs
}

// forgedApproval is an approval of the request named req, chained to the
// message at msgs[after], signed by kp, stored at seq a moment after it.
func (k *kit) forgedApproval(t testing.TB, msgs []events.Message, req string, after int, kp nkeys.KeyPair, seq uint64) events.Message {
	t.Helper()
	at := msgs[after].Time.Add(time.Microsecond)
	out, err := events.Seal(events.Draft{
		Domain: k.r.env.Domain, RequestID: k.r.ids[req], Kind: events.KindApproved, Source: "writ://acme/approval",
		Time: at, Data: &events.Approved{Prev: events.Digest(msgs[after].Body),
			Approvers: []events.PrincipalRef{{Domain: "acme", Name: "alice"}, {Domain: "acme", Name: "bob"}}},
	}, kp)
	require.NoError(t, err)
	return events.Message{Subject: out.Subject, Seq: seq, Time: at, Header: out.Header(), Body: out.Body}
}

// appendApproval appends a forged approval of the named request, chained
// to its last message, stored after the trail's last.
func (k *kit) appendApproval(t testing.TB, msgs []events.Message, req string, kp nkeys.KeyPair) []events.Message {
	t.Helper()
	last := -1
	for i, m := range msgs {
		if inspect(k.r, m).RequestID == k.r.ids[req] {
			last = i
		}
	}
	m := k.forgedApproval(t, msgs, req, last, kp, msgs[len(msgs)-1].Seq+1)
	m.Time = msgs[len(msgs)-1].Time.Add(time.Millisecond)
	return append(msgs, m)
}

// insertApproval inserts a forged approval just before the named
// request's event of kind, chained to the message of the request before it.
func (k *kit) insertApproval(t testing.TB, msgs []events.Message, req string, before events.Kind, kp nkeys.KeyPair) []events.Message {
	t.Helper()
	i := locate(t, k.r, msgs, req, before, nil)
	prev := i - 1
	for prev >= 0 && inspect(k.r, msgs[prev]).RequestID != k.r.ids[req] {
		prev--
	}
	require.GreaterOrEqual(t, prev, 0)
	m := k.forgedApproval(t, msgs, req, prev, kp, msgs[i].Seq)
	m.Time = msgs[i-1].Time.Add(time.Microsecond)
	return insertAt(msgs, i, m)
}

// insertAt inserts m at index i, its sequence taking the place of the one
// there and every later message's moving up by one.
func insertAt(msgs []events.Message, i int, m events.Message) []events.Message {
	for j := i; j < len(msgs); j++ {
		msgs[j].Seq++
	}
	return slices.Insert(msgs, i, m)
}

// swap exchanges two messages; renumber keeps each position's sequence
// and stored time, so that only the order of the events changes.
func swap(msgs []events.Message, i, j int, renumber bool) []events.Message {
	msgs[i], msgs[j] = msgs[j], msgs[i]
	if renumber {
		msgs[i].Seq, msgs[j].Seq = msgs[j].Seq, msgs[i].Seq
		msgs[i].Time, msgs[j].Time = msgs[j].Time, msgs[i].Time
	}
	return msgs
}

// flip flips one bit of a message's body.
func flip(m events.Message, bit int) events.Message {
	m.Body[bit/8%len(m.Body)] ^= 1 << (bit % 8)
	return m
}

func newKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	return kp
}

// withoutCheckpoints drops every checkpoint, renumbering nothing: a trail
// that no checkpoint covers, its checkpoints' sequences missing.
func withoutCheckpoints(msgs []events.Message) []events.Message {
	return slices.DeleteFunc(msgs, isCheckpoint)
}

// newErrors returns rep's error findings that base does not have.
func newErrors(base, rep *audit.Report) []audit.Finding {
	type key struct {
		check, problem string
		seq            uint64
	}
	seen := map[key]bool{}
	for _, f := range errorsOf(base) {
		seen[key{f.Check, f.Problem, f.Seq}] = true
	}
	return slices.DeleteFunc(errorsOf(rep), func(f audit.Finding) bool { return seen[key{f.Check, f.Problem, f.Seq}] })
}

// Every tampering of a copy of a real run's trail is flagged, by the
// checks named; the untouched copy passes. Each is tried again on the copy
// without its checkpoints, to show what the other checks catch alone:
// where they catch nothing (bare is nil) only a checkpoint does — a
// rewrite the signatures, chains and invariants cannot see.
func TestTamperingIsFlagged(t *testing.T) {
	r := keyedShared(t)
	k := newKit(t, r)
	before := fingerprint(r.msgs)

	base := verify(cloneTrail(r.msgs), k.options())
	logFindings(t, base)
	require.True(t, base.OK(), "the untouched copy passes, with a bundle trusting globex too")
	bareBase := verify(withoutCheckpoints(cloneTrail(r.msgs)), k.options())
	for _, f := range errorsOf(bareBase) {
		require.Equal(t, audit.CheckOrder, f.Check, "without checkpoints, only their sequences are missing: %s", f)
	}

	const (
		chain      = audit.CheckChain
		checkpoint = audit.CheckCheckpoint
		invariant  = audit.CheckInvariant
		order      = audit.CheckOrder
		signature  = audit.CheckSignature
	)
	for _, tc := range []struct {
		name  string
		apply func(t *testing.T, msgs []events.Message) []events.Message
		want  []string // the checks of the error findings
		bare  []string // the checks of the new error findings once no checkpoint covers the trail
		// onCheckpoint: the tampering is of a checkpoint, which a trail
		// without checkpoints does not have.
		onCheckpoint bool
	}{{
		name: "delete one event",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := voteBy(t, r, msgs, "two", "alice")
			return slices.Delete(msgs, i, i+1)
		},
		// The gap, and without alice's vote the approval and the grant are
		// unjustified; the request's next event, carol's vote, now names
		// a message that is gone, though the pipeline refused it for
		// another reason (see TestRefusalForAnotherReason).
		want: []string{chain, checkpoint, invariant, order}, bare: []string{chain, invariant, order},
	}, {
		name: "delete a whole request",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return slices.DeleteFunc(msgs, func(m events.Message) bool { return inspect(r, m).RequestID == r.ids["denied"] })
		},
		want: []string{checkpoint, order}, bare: []string{order},
	}, {
		name: "reorder two events, their sequences kept",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return swap(msgs, voteBy(t, r, msgs, "two", "alice"), voteBy(t, r, msgs, "two", "bob"), false)
		},
		// Out of order, and neither vote chains where it now stands.
		want: []string{chain, checkpoint, invariant, order}, bare: []string{chain, invariant, order},
	}, {
		name: "reorder two events of a request, renumbered",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return swap(msgs, locate(t, r, msgs, "two", events.KindApproved, nil), locate(t, r, msgs, "two", events.KindGranted, nil), true)
		},
		want: []string{chain, checkpoint}, bare: []string{chain},
	}, {
		// Two requests' events trade places, each taking the other's
		// sequence and stored time: every history stays the same.
		name: "reorder two requests' events, renumbered",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return swap(msgs, locate(t, r, msgs, "auto", events.KindRequested, nil), locate(t, r, msgs, "denied-by-policy", events.KindRequested, nil), true)
		},
		want: []string{checkpoint}, bare: nil,
	}, {
		name: "flip a bit in a decision's body",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := locate(t, r, msgs, "two", events.KindEvaluated, nil)
			msgs[i] = flip(msgs[i], 4*len(msgs[i].Body))
			return msgs
		},
		// The body no longer verifies, and nothing after it stands without
		// the decision. (Alice's vote, naming what it was, is input never
		// answered: a warning while in flight.)
		want: []string{checkpoint, invariant, signature}, bare: []string{invariant, signature},
	}, {
		name: "flip a bit in a vote's body",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := voteBy(t, r, msgs, "two", "alice")
			msgs[i] = flip(msgs[i], 4*len(msgs[i].Body))
			return msgs
		},
		// A broken vote is input the pipeline would refuse (a warning
		// while in flight); the approval it counted towards no longer holds,
		// and the next vote's chain names the body as it was.
		want: []string{chain, checkpoint, invariant}, bare: []string{chain, invariant},
	}, {
		name: "re-sign a grant with an untrusted key",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := locate(t, r, msgs, "two", events.KindGranted, nil)
			msgs[i] = resign(t, msgs[i], newKey(t, nkeys.CreateServer))
			return msgs
		},
		want: []string{checkpoint, signature}, bare: []string{signature},
	}, {
		name: "re-sign a vote with an untrusted key",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := voteBy(t, r, msgs, "two", "alice")
			msgs[i] = resign(t, msgs[i], newKey(t, nkeys.CreateUser))
			return msgs
		},
		// The vote no longer counts, so the approval is unjustified.
		want: []string{checkpoint, invariant}, bare: []string{invariant},
	}, {
		name: "re-sign a decision with another domain's key of the same role",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := locate(t, r, msgs, "auto", events.KindEvaluated, nil)
			msgs[i] = resign(t, msgs[i], k.globex[identity.RolePolicy])
			return msgs
		},
		// Not acme's policy key; the grant and redemption lose their decision.
		want: []string{checkpoint, invariant, signature}, bare: []string{invariant, signature},
	}, {
		name: "re-seal a checkpoint with another domain's auditor key",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := lastCheckpoint(t, msgs)
			msgs[i] = reseal(t, msgs[i], k.globex[identity.RoleAuditor], func(*events.Draft) {})
			return msgs
		},
		want: []string{signature}, onCheckpoint: true,
	}, {
		// A genuine vote by another eligible approver in place of alice's,
		// and the votes still make two. The request's next event, carol's
		// vote, still names alice's: its chain is broken now, yet the
		// pipeline refused it as a self-approval, so the history before it
		// changed; see TestRefusalForAnotherReason.
		name: "replace a vote",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			k.replaceVote(t, msgs, "two", "alice")
			return msgs
		},
		// The approval names alice, whose vote is no longer there.
		want: []string{chain, checkpoint, invariant}, bare: []string{chain, invariant},
	}, {
		// Every signature and chain holds, and the votes still make two:
		// only the checkpoint over the rewrite shows it (and once the
		// checkpoints are made again too, only a witness: see below).
		name:  "replace a vote and re-seal the rest of its history with the real keys",
		apply: func(t *testing.T, msgs []events.Message) []events.Message { return k.rewriteVote(t, msgs) },
		want:  []string{checkpoint}, bare: nil,
	}, {
		name: "insert a forged approval signed by an unknown key, at the end",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return k.appendApproval(t, msgs, "denied", newKey(t, nkeys.CreateServer))
		},
		want: []string{signature}, bare: []string{signature},
	}, {
		name: "insert an approval signed by the real approval key on a denied request, at the end",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return k.appendApproval(t, msgs, "denied", r.env.Runtime.ApprovalKey)
		},
		want: []string{invariant}, bare: []string{invariant},
	}, {
		// Just before the denied event, after bob's denial: the approval
		// is unjustified, and the denied event no longer chains.
		name: "insert an approval signed by the real approval key in the middle, shifting sequences",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return k.insertApproval(t, msgs, "denied", events.KindDenied, r.env.Runtime.ApprovalKey)
		},
		want: []string{chain, checkpoint, invariant}, bare: []string{chain, invariant},
	}, {
		name: "insert an approval signed by an unknown key in the middle, shifting sequences",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			return k.insertApproval(t, msgs, "two", events.KindApproved, newKey(t, nkeys.CreateServer))
		},
		// The real approval no longer chains, so the grant has none.
		want: []string{chain, checkpoint, invariant, signature}, bare: []string{chain, invariant, signature},
	}, {
		name: "repeat an event",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := locate(t, r, msgs, "two", events.KindGranted, nil)
			return slices.Insert(msgs, i+1, msgs[i])
		},
		want: []string{chain, checkpoint, order}, bare: []string{chain, order},
	}, {
		// The grant again, at a fresh sequence: it names the event before it.
		name: "replay an event at the end",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			m := msgs[locate(t, r, msgs, "two", events.KindGranted, nil)]
			m.Seq, m.Time = msgs[len(msgs)-1].Seq+1, msgs[len(msgs)-1].Time.Add(time.Millisecond)
			return append(msgs, m)
		},
		want: []string{chain}, bare: []string{chain},
	}, {
		name: "restamp a vote past the request's deadline",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := voteBy(t, r, msgs, "two", "alice")
			msgs[i].Time = msgs[i].Time.Add(31 * time.Minute)
			return msgs
		},
		// A vote after the deadline does not count: the approval is unjustified.
		want: []string{checkpoint, invariant}, bare: []string{invariant},
	}, {
		// Stored times are in the leaves; nothing else judges this one.
		name: "restamp an event within what its history allows",
		apply: func(t *testing.T, msgs []events.Message) []events.Message {
			i := locate(t, r, msgs, "two", events.KindGranted, nil)
			msgs[i].Time = msgs[i].Time.Add(time.Second)
			return msgs
		},
		want: []string{checkpoint}, bare: nil,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := verify(tc.apply(t, cloneTrail(r.msgs)), k.options())
			logFindings(t, rep)
			assert.False(t, rep.OK(), "the tampering is flagged")
			assert.Equal(t, tc.want, checksOf(errorsOf(rep)))

			if tc.onCheckpoint {
				return
			}
			bare := verify(tc.apply(t, withoutCheckpoints(cloneTrail(r.msgs))), k.options())
			added := newErrors(bareBase, bare)
			for _, f := range added {
				t.Log("without checkpoints:", f)
			}
			assert.Equal(t, tc.bare, checksOf(added), "without checkpoints")
		})
	}
	assert.Equal(t, before, fingerprint(r.msgs), "no tampering reached the shared run")
}

// Some rewrites leave every signature, chain and invariant intact, and
// every checkpoint the stream holds too: cutting the tail off, or
// rewriting with every key including the auditor's and making the
// checkpoints again. Like any transparency log's, the trail alone cannot
// show them, by design: only a checkpoint held elsewhere — by a witness
// domain, or in an evidence bundle — that the stream no longer holds can.
func TestOnlyAWitnessCatchesATruncationOrAFullRewrite(t *testing.T) {
	r := keyedShared(t)
	k := newKit(t, r)
	last := lastCheckpoint(t, r.msgs)
	require.Equal(t, len(r.msgs)-1, last, "the run ends with a checkpoint")
	head := headOf(t, r, r.msgs, last)

	rep := verify(cloneTrail(r.msgs), k.options(head))
	logFindings(t, rep)
	require.True(t, rep.OK(), "the untouched stream holds the head")

	for _, tc := range []struct {
		name  string
		apply func(t *testing.T, msgs []events.Message) []events.Message
	}{
		{"truncate the last checkpoint", func(t *testing.T, msgs []events.Message) []events.Message { return msgs[:len(msgs)-1] }},
		{"truncate the revocation and after", func(t *testing.T, msgs []events.Message) []events.Message {
			return msgs[:locate(t, r, msgs, "revoked", events.KindRevoke, nil)]
		}},
		{"rewrite a vote with every key, checkpoints made again", func(t *testing.T, msgs []events.Message) []events.Message {
			msgs = k.rewriteVote(t, msgs)
			recheckpoint(t, r, msgs)
			return msgs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := tc.apply(t, cloneTrail(r.msgs))
			require.NotEqual(t, fingerprint(r.msgs), fingerprint(msgs))
			rep := verify(msgs, k.options())
			logFindings(t, rep)
			assert.True(t, rep.OK(), "the designed limit: without a head held elsewhere, nothing shows")

			rep = verify(msgs, k.options(head))
			logFindings(t, rep)
			errs := errorsOf(rep)
			if assert.Len(t, errs, 1) {
				assert.Equal(t, audit.CheckWitness, errs[0].Check)
				assert.Equal(t, head.Seq, errs[0].Seq)
			}
		})
	}
}

// A revoke ask re-signed by an untrusted key is input the pipeline would
// have refused, so the revoked event that answered it answers no valid ask:
// an invariant error, with or without checkpoints; the unanswered input
// shows too, as a warning while in flight and an error once settled.
func TestForgedRevokeAsk(t *testing.T) {
	r := keyedShared(t)
	k := newKit(t, r)
	tamper := func(msgs []events.Message) []events.Message {
		i := locate(t, r, msgs, "revoked", events.KindRevoke, nil)
		msgs[i] = resign(t, msgs[i], newKey(t, nkeys.CreateUser))
		return msgs
	}
	seq := r.msgs[locate(t, r, r.msgs, "revoked", events.KindRevoke, nil)].Seq

	rep := verify(tamper(cloneTrail(r.msgs)), k.options())
	logFindings(t, rep)
	assert.Equal(t, []string{audit.CheckCheckpoint, audit.CheckInvariant}, checksOf(errorsOf(rep)))

	bare := withoutCheckpoints(tamper(cloneTrail(r.msgs)))
	rep = verify(bare, k.options())
	assert.Equal(t, []string{audit.CheckInvariant}, checksOf(newErrors(verify(withoutCheckpoints(cloneTrail(r.msgs)), k.options()), rep)))
	assert.True(t, slices.ContainsFunc(rep.Findings, func(f audit.Finding) bool {
		return f.Check == audit.CheckInput && f.Severity == audit.SeverityWarning && f.Seq == seq
	}), "the unanswered input, in flight")

	settled := k.options()
	settled.Settle = time.Nanosecond
	require.True(t, verify(cloneTrail(r.msgs), settled).OK(), "the untouched copy passes, settled")
	rep = verify(tamper(cloneTrail(r.msgs)), settled)
	logFindings(t, rep)
	assert.True(t, slices.ContainsFunc(errorsOf(rep), func(f audit.Finding) bool { return f.Check == audit.CheckInput && f.Seq == seq }),
		"settled, the forged ask is an error")
}

// A random tampering of a random message is always flagged: a seeded loop,
// each iteration reproducible from the seed and its number. Set
// WRIT_TAMPER_SEED to try other seeds.
func TestRandomTamperingIsFlagged(t *testing.T) {
	r := keyedShared(t)
	k := newKit(t, r)
	seed := uint64(20261127)
	if s := os.Getenv("WRIT_TAMPER_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d", seed)
	n := len(r.msgs)
	require.Equal(t, n-1, lastCheckpoint(t, r.msgs), "the last checkpoint covers every other message")

	tamperings := []struct {
		name  string
		apply func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64)
	}{
		// Deleting the last message is a truncation, which only a head
		// held elsewhere shows (see above).
		{"delete", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i := rng.IntN(n - 1)
			seq := msgs[i].Seq
			return slices.Delete(msgs, i, i+1), seq
		}},
		{"swap", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i, j := distinct(rng, n)
			return swap(msgs, i, j, false), msgs[j].Seq
		}},
		{"swap and renumber", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i, j := distinct(rng, n)
			return swap(msgs, i, j, true), msgs[i].Seq
		}},
		{"flip a bit", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i := rng.IntN(n)
			msgs[i] = flip(msgs[i], rng.IntN(8*len(msgs[i].Body)))
			return msgs, msgs[i].Seq
		}},
		{"re-sign with an untrusted key", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i := rng.IntN(n)
			msgs[i] = resign(t, msgs[i], newKey(t, pick(rng, nkeys.CreateServer, nkeys.CreateUser)))
			return msgs, msgs[i].Seq
		}},
		{"re-sign with globex's key", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i := rng.IntN(n)
			msgs[i] = resign(t, msgs[i], k.globex[pick(rng, identity.Roles...)])
			return msgs, msgs[i].Seq
		}},
		// The last message's stored time is in no checkpoint, and nothing
		// else depends on it.
		{"restamp", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			i := rng.IntN(n - 1)
			msgs[i].Time = msgs[i].Time.Add(time.Duration(1 + rng.Int64N(int64(time.Hour))))
			return msgs, msgs[i].Seq
		}},
		{"insert an approval", func(rng *rand.Rand, msgs []events.Message) ([]events.Message, uint64) {
			req := pick(rng, slices.Sorted(maps.Keys(r.ids))...)
			kp := pick(rng, r.env.Runtime.ApprovalKey, k.globex[identity.RoleApproval], newKey(t, nkeys.CreateServer))
			if i := rng.IntN(n); i < n-1 {
				return insertAt(msgs, i+1, k.forgedApproval(t, msgs, req, i, kp, msgs[i+1].Seq)), msgs[i+1].Seq
			}
			msgs = k.appendApproval(t, msgs, req, kp)
			return msgs, msgs[n].Seq
		}},
	}
	iterations := 200
	if testing.Short() {
		iterations = 50
	}
	start := time.Now()
	for it := range iterations {
		rng := rand.New(rand.NewPCG(seed, uint64(it)))
		tc := tamperings[rng.IntN(len(tamperings))]
		msgs, seq := tc.apply(rng, cloneTrail(r.msgs))
		rep := verify(msgs, k.options())
		if !assert.False(t, rep.OK(), "seed %d iteration %d: %s at #%d not flagged", seed, it, tc.name, seq) {
			logFindings(t, rep)
		}
	}
	t.Logf("%d tamperings verified in %s", iterations, time.Since(start))
}

func distinct(rng *rand.Rand, n int) (int, int) {
	i := rng.IntN(n)
	return i, (i + 1 + rng.IntN(n-1)) % n
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// With Since or Until, every message still counts for the order, signature
// and checkpoint checks: a grant re-signed by an untrusted key in a request
// outside the range shows, even where no checkpoint covers it.
func TestSinceStillChecksEverySignature(t *testing.T) {
	r := keyedShared(t)
	k := newKit(t, r)
	msgs := cloneTrail(r.msgs)
	i := locate(t, r, msgs, "two", events.KindGranted, nil)
	msgs[i] = resign(t, msgs[i], newKey(t, nkeys.CreateServer))
	o := k.options()
	o.Since = msgs[len(msgs)-1].Time // after every request
	rep := verify(msgs, o)
	logFindings(t, rep)
	assert.Zero(t, rep.Requests, "every request is outside the range")
	assert.True(t, slices.ContainsFunc(errorsOf(rep), func(f audit.Finding) bool {
		return f.Check == audit.CheckSignature && f.Seq == msgs[i].Seq
	}), "the re-signed grant fails the signature check")
}

// The pipeline refuses a principal's input with the reason the fold gives
// it, the verifier's own (request.Apply over the same history). An input
// whose chain is broken now but that the pipeline refused for another
// reason was chained when the pipeline judged it: the history before it
// changed since. The approval's answer to alice's vote (counted), altered,
// breaks the chain of carol's next vote, whose refusal as a self-approval
// must not hide it.
func TestRefusalForAnotherReason(t *testing.T) {
	r := keyedShared(t)
	k := newKit(t, r)
	msgs := withoutCheckpoints(cloneTrail(r.msgs))
	i := locate(t, r, msgs, "two", events.KindCounted, nil)
	msgs[i] = reseal(t, msgs[i], r.env.Runtime.ApprovalKey, func(d *events.Draft) { d.Time = d.Time.Add(time.Millisecond) })
	j := slices.IndexFunc(msgs[i+1:], func(m events.Message) bool { return inspect(r, m).RequestID == r.ids["two"] }) + i + 1
	require.Equal(t, events.KindVoted, inspect(r, msgs[j]).Kind, "carol's self-approval follows the answer to alice's vote")
	rep := verify(msgs, k.options())
	logFindings(t, rep)
	assert.True(t, slices.ContainsFunc(newErrors(verify(withoutCheckpoints(cloneTrail(r.msgs)), k.options()), rep), func(f audit.Finding) bool {
		return f.Seq == msgs[j].Seq && f.Check == audit.CheckChain
	}), "carol's vote no longer chains, though the pipeline refused it for another reason")
}
