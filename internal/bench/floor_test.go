package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/issuer"
)

// floorSubject is message i of request id on a test's floor.
func floorSubject(id string, i int) string { return "writbench.test.f." + id + ".h" + strconv.Itoa(i) }

// floorMessages takes request id through every hop of f, as the relay's
// requester and consumers would, and returns each message and the
// requester's hold.
func floorMessages(t testing.TB, f *floor, id string) ([]*nats.Msg, *floorHold) {
	t.Helper()
	m, _, hold, err := f.request(id, floorSubject(id, 0))
	require.NoError(t, err)
	msgs := []*nats.Msg{m}
	for i := range f.hops() {
		next, _, err := f.forward(i, id, floorSubject(id, i+1), m.Data, m.Header)
		require.NoError(t, err, "hop %d", i)
		msgs, m = append(msgs, next), next
	}
	return msgs, hold
}

func newTestFloor(t testing.TB, path []floorStep) *floor {
	t.Helper()
	spec := autoSpec
	if len(path) == len(floorReview) {
		spec = reviewSpec
	}
	f, err := newFloor(path, "bench-test", spec, 1500)
	require.NoError(t, err)
	return f
}

// TestBenchFloorPath takes a request through both paths' hops: each
// message is signed by the keys entitled to it, chained to the one
// before, and the requester opens the grant the issuer hop minted for it.
func TestBenchFloorPath(t *testing.T) {
	for name, path := range map[string][]floorStep{"auto": floorAuto, "review": floorReview} {
		t.Run(name, func(t *testing.T) {
			f := newTestFloor(t, path)
			const id = "r1"
			msgs, hold := floorMessages(t, f, id)
			require.Len(t, msgs, len(path))
			for i, m := range msgs {
				assert.Equal(t, f.entitled[i], m.Header.Values(events.HeaderSigner), "message %d", i)
				body, err := decodeFloor(m.Data)
				require.NoError(t, err)
				assert.Equal(t, i, body.Index)
				assert.Equal(t, id, body.ID)
				if i > 0 {
					assert.Equal(t, events.Digest(msgs[i-1].Data), body.Prev, "message %d chains to the one before", i)
				}
				// Padded to Writ's size with its signature headers.
				assert.GreaterOrEqual(t, len(m.Data)+floorSignature, 1500)
				assert.Equal(t, len(m.Data)+floorSignature, len(m.Data)+len(events.HeaderSigner)+len(m.Header.Get(events.HeaderSigner))+
					len(events.HeaderSignature)+len(m.Header.Get(events.HeaderSignature)), "what a signature adds")
			}
			assert.Len(t, msgs[2].Header.Values(events.HeaderSignature), map[string]int{"auto": 1, "review": 2}[name],
				"the review's third message is both approvers' votes")
			last := msgs[len(msgs)-1]
			require.NoError(t, f.finish(id, hold, last.Data, last.Header))

			// The grant is Writ's: its token opens with the holder's key and
			// verifies as a grant of the issuer's for the request.
			g, err := decodeFloor(last.Data)
			require.NoError(t, err)
			token, err := issuer.Open(g.Sealed, g.SealedBy, hold.xkey)
			require.NoError(t, err)
			assert.Equal(t, g.TokenHash, issuer.TokenHash(token))
			assert.Contains(t, token, ".", "a JWT")
			assert.Zero(t, f.refused.Load())
		})
	}
}

// TestBenchFloorRefuses checks that every hop, and the requester at the
// end, refuses a message whose signatures do not verify, whose signer is
// not entitled to it, or that is another request's: the floor cannot
// skip its cryptography and still pass.
func TestBenchFloorRefuses(t *testing.T) {
	stranger, err := nkeys.CreateUser()
	require.NoError(t, err)
	strangerPub, err := stranger.PublicKey()
	require.NoError(t, err)
	tampers := map[string]struct {
		tamper func(f *floor, i int, m *nats.Msg) *nats.Msg
		want   error
	}{
		"body changed": {func(_ *floor, _ int, m *nats.Msg) *nats.Msg {
			c := clone(m)
			c.Data[len(c.Data)-1] ^= 1
			return c
		}, events.ErrBadSignature},
		"unsigned": {func(_ *floor, _ int, m *nats.Msg) *nats.Msg {
			c := clone(m)
			c.Header.Del(events.HeaderSigner)
			c.Header.Del(events.HeaderSignature)
			return c
		}, events.ErrUnsigned},
		"a signature by another key": {func(_ *floor, _ int, m *nats.Msg) *nats.Msg {
			c := clone(m)
			sigs := c.Header.Values(events.HeaderSignature)
			sig, err := stranger.Sign(c.Data)
			require.NoError(t, err)
			sigs[len(sigs)-1] = base64.RawURLEncoding.EncodeToString(sig)
			c.Header[events.HeaderSignature] = sigs
			return c
		}, events.ErrBadSignature},
		"signed by a key not entitled": {func(_ *floor, _ int, m *nats.Msg) *nats.Msg {
			c := clone(m)
			sig, err := stranger.Sign(c.Data)
			require.NoError(t, err)
			c.Header[events.HeaderSigner] = []string{strangerPub}
			c.Header[events.HeaderSignature] = []string{base64.RawURLEncoding.EncodeToString(sig)}
			return c
		}, events.ErrNotEntitled},
		"another request's, signed": {func(f *floor, i int, _ *nats.Msg) *nats.Msg {
			other, _ := floorMessages(t, f, "r2")
			return other[i]
		}, ErrFloorMismatch},
	}
	for name, path := range map[string][]floorStep{"auto": floorAuto, "review": floorReview} {
		f := newTestFloor(t, path)
		const id = "r1"
		msgs, hold := floorMessages(t, f, id)
		for what, tc := range tampers {
			// Each hop refuses a bad message i, and makes nothing of it.
			for i := range f.hops() {
				t.Run(name+"/hop "+strconv.Itoa(i)+"/"+what, func(t *testing.T) {
					bad := tc.tamper(f, i, msgs[i])
					before := f.refused.Load()
					out, _, err := f.forward(i, id, floorSubject(id, i+1), bad.Data, bad.Header)
					assert.ErrorIs(t, err, tc.want)
					assert.Nil(t, out, "nothing published")
					assert.Equal(t, before+1, f.refused.Load(), "counted as refused")
				})
			}
			// The requester refuses a bad grant.
			t.Run(name+"/requester/"+what, func(t *testing.T) {
				last := len(msgs) - 1
				bad := tc.tamper(f, last, msgs[last])
				assert.ErrorIs(t, f.finish(id, hold, bad.Data, bad.Header), tc.want)
			})
		}
	}
}

// TestBenchFloorGrantMismatch: a grant the issuer signed whose sealed
// token is not the one it names is refused by the requester.
func TestBenchFloorGrantMismatch(t *testing.T) {
	f := newTestFloor(t, floorAuto)
	const id = "r1"
	msgs, hold := floorMessages(t, f, id)
	last := len(msgs) - 1
	g, err := decodeFloor(msgs[last].Data)
	require.NoError(t, err)
	g.TokenHash = events.Digest([]byte("another token"))
	m, _, err := f.sign(last, msgs[last].Subject, f.encode(g), nil)
	require.NoError(t, err)
	assert.ErrorIs(t, f.finish(id, hold, m.Data, m.Header), ErrFloorGrant)

	// And a grant sealed to another request's key does not open.
	_, _, otherHold, err := f.request("r2", floorSubject("r2", 0))
	require.NoError(t, err)
	assert.Error(t, f.finish(id, otherHold, msgs[last].Data, msgs[last].Header))
}

func clone(m *nats.Msg) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	c.Data = bytes.Clone(m.Data)
	for k, vs := range m.Header {
		c.Header[k] = append([]string(nil), vs...)
	}
	return c
}

// BenchmarkFloorRequest is the floor's cryptography for one request, on
// each path, without the bus: what the floor adds to the bare relay's
// CPU.
func BenchmarkFloorRequest(b *testing.B) {
	for name, path := range map[string][]floorStep{"auto": floorAuto, "review": floorReview} {
		b.Run(name, func(b *testing.B) {
			f := newTestFloor(b, path)
			b.ReportAllocs()
			for n := 0; b.Loop(); n++ {
				id := "r" + strconv.Itoa(n)
				msgs, hold := floorMessages(b, f, id)
				last := msgs[len(msgs)-1]
				if err := f.finish(id, hold, last.Data, last.Header); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBenchFloorRelayRefuses runs the floor's relay on an embedded server:
// a request goes through, and a forged request (signed by a key not the
// requester's) and a tampered one are refused by the first hop, which
// publishes nothing for them.
func TestBenchFloorRelayRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := open(ctx, Options{}.withDefaults(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer e.close()
	f, err := newFloor(floorAuto, e.domain, autoSpec, 1024)
	require.NoError(t, err)
	b, err := e.startBound("floor", f.hops(), 1024, 1, f)
	require.NoError(t, err)
	require.NoError(t, b.req(ctx), "a request through the floor")

	stranger, err := newFloor(floorAuto, e.domain, autoSpec, 1024)
	require.NoError(t, err)
	forged, msgID, _, err := stranger.request("forged", b.rl.subject("forged", 0))
	require.NoError(t, err)
	_, err = e.js.PublishMsg(ctx, forged, jetstream.WithMsgID(msgID))
	require.NoError(t, err)
	tampered, msgID, _, err := f.request("tampered", b.rl.subject("tampered", 0))
	require.NoError(t, err)
	tampered.Data[len(tampered.Data)-1] ^= 1
	_, err = e.js.PublishMsg(ctx, tampered, jetstream.WithMsgID(msgID))
	require.NoError(t, err)

	require.NoError(t, b.req(ctx), "a request after them")
	require.Eventually(t, func() bool { return f.refused.Load() == 2 }, 10*time.Second, 5*time.Millisecond,
		"the first hop refuses both")
	// Counted as refused only after it decided to publish nothing: the
	// stream holds no next message for either, and never will.
	s, err := e.js.Stream(ctx, e.relay)
	require.NoError(t, err)
	for _, id := range []string{"forged", "tampered"} {
		_, err := s.GetLastMsgForSubject(ctx, b.rl.subject(id, 1))
		assert.ErrorIs(t, err, jetstream.ErrMsgNotFound, id)
	}
	_, err = s.GetLastMsgForSubject(ctx, b.rl.subject("r1", 2))
	assert.NoError(t, err, "the first request's grant is in the stream")
}
